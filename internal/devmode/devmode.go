package devmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/memstore"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
)

// Options configure a dev-mode run. Their names follow the binary's flags.
type Options struct {
	Scheme      *runtime.Scheme
	Manifests   string
	Listen      string
	Issuer      string
	RedisURL    string
	Namespace   string
	SigningKey  string
	UsersSecret string
	// ClientSecretGracePeriod is passed to the OAuthClient reconciler.
	ClientSecretGracePeriod time.Duration
	Log                     logr.Logger
	// Out receives the banner: the issuer, the sample clients and how to try them.
	Out io.Writer
	// Registerer receives the server's metrics; nil = a private registry.
	Registerer prometheus.Registerer
	// Ready, when set, is called with the bound address once the issuer serves (tests use it).
	Ready func(addr string)
	// Tracing is server.Options.Tracing.
	Tracing bool
}

// maxRequeue is the longest the loop sleeps; the fake client has no watches, so this bounds how
// long a change nobody requeued for (there are none in --dev) would wait.
const maxRequeue = 30 * time.Second

// Run serves the issuer until ctx ends.
func Run(ctx context.Context, o Options) error {
	objs, err := LoadManifests(o.Scheme, o.Manifests, o.Namespace)
	if err != nil {
		return err
	}
	// revision.Client counts the writes of the reconcilers, so the token server keeps what it
	// read until an object changes instead of deep-copying objects through JSON per request.
	c := revision.NewClient(fake.NewClientBuilder().
		WithScheme(o.Scheme).
		WithObjects(objs...).
		WithStatusSubresource(&latchkeyv1.SigningKey{}, &latchkeyv1.OAuthClient{}).
		WithIndex(&latchkeyv1.OAuthClient{}, latchkeyv1.ClientIDIndex, controllers.IndexOAuthClientClientID).
		WithIndex(&latchkeyv1.OAuthClient{}, latchkeyv1.AudienceIndex, controllers.IndexOAuthClientAudience).
		Build())

	st, storeName, err := newStore(o.RedisURL)
	if err != nil {
		return err
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var synced atomic.Bool
	srv, err := server.New(server.Options{
		Issuer:      o.Issuer,
		Namespace:   o.Namespace,
		SigningKey:  o.SigningKey,
		UsersSecret: o.UsersSecret,
		Reader:      c,
		Store:       st,
		Clock:       clock.RealClock{},
		Log:         o.Log.WithName("server"),
		Registerer:  reg,
		CacheSynced: synced.Load,
		Tracing:     o.Tracing,
	})
	if err != nil {
		return fmt.Errorf("create token server: %w", err)
	}

	rec := logRecorder{log: o.Log.WithName("events")}
	l := &loop{
		c:   c,
		log: o.Log.WithName("reconcile"),
		sk:  &controllers.SigningKeyReconciler{Client: c, Scheme: o.Scheme, Recorder: rec, Clock: clock.RealClock{}},
		oc: &controllers.OAuthClientReconciler{
			Client: c, APIReader: c, Scheme: o.Scheme, Recorder: rec, Clock: clock.RealClock{},
			Issuer: o.Issuer, SecretGracePeriod: o.ClientSecretGracePeriod,
		},
	}
	// Converge once before serving, so the first request finds a signing key.
	next := l.converge(ctx)
	synced.Store(true)

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	httpSrv := srv.HTTPServer(o.Listen)
	if httpSrv.Handler, err = withDemo(httpSrv.Handler, o.Issuer, ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}
	if err := printBanner(ctx, o, c, storeName); err != nil {
		return err
	}
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	go l.run(ctx, next)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

func newStore(url string) (store.Store, string, error) {
	if url == "" {
		return memstore.New(), "memory (state is lost when the process exits)", nil
	}
	opts, err := redisstore.ParseURL(url)
	if err != nil {
		return nil, "", fmt.Errorf("--redis-url: %w", err)
	}
	return redisstore.New(redis.NewUniversalClient(opts)), "redis", nil
}

// loop drives the reconcilers over the object store, as the manager would over a cluster.
type loop struct {
	c   client.Client
	log logr.Logger
	sk  reconcile.Reconciler
	oc  reconcile.Reconciler
}

// converge reconciles every object until nothing asks for an immediate requeue (bounded), and
// returns how long until the next requested transition.
func (l *loop) converge(ctx context.Context) time.Duration {
	next := maxRequeue
	for range 5 {
		var again bool
		next, again = l.pass(ctx)
		if !again {
			break
		}
	}
	return next
}

func (l *loop) run(ctx context.Context, next time.Duration) {
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(l.converge(ctx))
	}
}

// pass reconciles each SigningKey, then each OAuthClient, once.
func (l *loop) pass(ctx context.Context) (time.Duration, bool) {
	next, again := maxRequeue, false
	visit := func(kind string, r reconcile.Reconciler, keys []types.NamespacedName) {
		for _, key := range keys {
			res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: key})
			switch {
			case err != nil && !errors.Is(err, reconcile.TerminalError(nil)):
				l.log.Error(err, "Reconcile failed, retrying", "kind", kind, "name", key.String())
				again = true
				next = min(next, time.Second)
			case res.RequeueAfter > 0:
				next = min(next, res.RequeueAfter)
			}
		}
	}
	var sks latchkeyv1.SigningKeyList
	if err := l.c.List(ctx, &sks); err == nil {
		visit("SigningKey", l.sk, keysOf(sks.Items, func(k latchkeyv1.SigningKey) types.NamespacedName {
			return types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
		}))
	}
	var ocs latchkeyv1.OAuthClientList
	if err := l.c.List(ctx, &ocs); err == nil {
		visit("OAuthClient", l.oc, keysOf(ocs.Items, func(k latchkeyv1.OAuthClient) types.NamespacedName {
			return types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
		}))
	}
	return max(next, 100*time.Millisecond), again
}

func keysOf[T any](items []T, key func(T) types.NamespacedName) []types.NamespacedName {
	out := make([]types.NamespacedName, 0, len(items))
	for _, it := range items {
		out = append(out, key(it))
	}
	return out
}

// logRecorder is the --dev event recorder: events become log lines.
type logRecorder struct{ log logr.Logger }

// Eventf logs the event with the object it regards.
func (r logRecorder) Eventf(regarding runtime.Object, _ runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	name := ""
	if o, ok := regarding.(client.Object); ok {
		name = o.GetNamespace() + "/" + o.GetName()
	}
	r.log.Info(fmt.Sprintf(note, args...), "type", eventtype, "reason", reason, "action", action, "object", name)
}
