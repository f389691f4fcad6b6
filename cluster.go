package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/internal/timesync"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
)

// shutdownTimeout bounds the token server's drain on SIGTERM. The chart's
// terminationGracePeriodSeconds is longer.
const shutdownTimeout = 10 * time.Second

// clockSyncInterval is how often each replica measures its offset to the Redis clock. NTP
// drift is a few ppm, so a minute keeps replicas within milliseconds of each other.
const clockSyncInterval = time.Minute

// newScheme registers the Kubernetes core types and the Latchkey API.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(latchkeyv1.AddToScheme(s))
	return s
}

// runCluster runs the controller-runtime manager: the controllers (leader only) and the token
// server (every replica), both reading from one informer cache. tracing turns the server's
// OpenTelemetry spans on (internal/telemetry has set the provider).
func runCluster(ctx context.Context, cfg Config, log logr.Logger, tracing bool) error {
	ctrl.SetLogger(log)
	restCfg, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	scheme := newScheme()
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                  scheme,
		MapperProvider:          newRESTMapper,
		Cache:                   cacheOptions(cfg),
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.ProbeAddr,
		LeaderElection:          cfg.LeaderElect && cfg.Mode != modeServer,
		LeaderElectionID:        "latchkey-leader.auth.latchkey.dev",
		LeaderElectionNamespace: cfg.LeaderElectionNamespace,
		// Release the lease on shutdown so a rolling update hands over at once.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &latchkeyv1.OAuthClient{}, latchkeyv1.ClientIDIndex, controllers.IndexOAuthClientClientID); err != nil {
		return fmt.Errorf("index oauthclients by client id: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &latchkeyv1.OAuthClient{}, latchkeyv1.AudienceIndex, controllers.IndexOAuthClientAudience); err != nil {
		return fmt.Errorf("index oauthclients by audience: %w", err)
	}

	var synced atomic.Bool
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
			log.Info("Cache synced")
		}
		<-ctx.Done()
		return nil
	})); err != nil {
		return fmt.Errorf("add cache sync watcher: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add healthz: %w", err)
	}
	if err := mgr.AddReadyzCheck("cache", func(*http.Request) error {
		if !synced.Load() {
			return errors.New("cache not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("add readyz: %w", err)
	}

	if cfg.Mode == modeAll || cfg.Mode == modeController {
		if err := setupControllers(mgr, cfg); err != nil {
			return err
		}
	}
	if cfg.Mode == modeAll || cfg.Mode == modeServer {
		rdb, err := newRedisStore(cfg)
		if err != nil {
			return err
		}
		// Every replica judges expiry by the Redis clock, not its own (internal/timesync).
		clk := timesync.New(clock.RealClock{}, rdb)
		if err := mgr.Add(everyReplica(func(ctx context.Context) error {
			return clk.Run(ctx, clockSyncInterval, log.WithName("timesync"))
		})); err != nil {
			return fmt.Errorf("add clock sync: %w", err)
		}
		// The server keeps what it derives from these objects until one of their informers
		// delivers an event, instead of deep-copying them out of the cache per request.
		reader, err := revision.NewInformed(ctx, mgr.GetCache(),
			&latchkeyv1.OAuthClient{}, &latchkeyv1.SigningKey{}, &corev1.Secret{}, &corev1.ConfigMap{})
		if err != nil {
			return fmt.Errorf("watch the token server's objects: %w", err)
		}
		srv, err := server.New(server.Options{
			Issuer:         cfg.Issuer,
			Namespace:      cfg.Namespace,
			SigningKey:     cfg.SigningKey,
			UsersSecret:    cfg.UsersSecret,
			Reader:         reader,
			Store:          rdb,
			Clock:          clk,
			Log:            log.WithName("server"),
			Registerer:     ctrlmetrics.Registry,
			CacheSynced:    synced.Load,
			TrustedProxies: cfg.TrustedProxies,
			Tracing:        tracing,
		})
		if err != nil {
			return fmt.Errorf("create token server: %w", err)
		}
		timeout := shutdownTimeout
		if err := mgr.Add(&manager.Server{Name: "token", Server: srv.HTTPServer(cfg.Listen), ShutdownTimeout: &timeout}); err != nil {
			return fmt.Errorf("add token server: %w", err)
		}
	}

	log.Info("Starting Latchkey", "version", version, "mode", cfg.Mode, "namespace", cfg.Namespace, "issuer", cfg.Issuer)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

// everyReplica is a Runnable that runs on every replica, not only the leader. controller-runtime
// starts a plain RunnableFunc only once this replica wins the election, so the cache-sync
// watcher must say it needs none: otherwise a follower never marks its cache synced, and
// answers /readyz and /token with 503 for as long as it is not the leader (test/e2e,
// TestTwoManagersRacing).
type everyReplica func(context.Context) error

// Start implements manager.Runnable.
func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (everyReplica) NeedLeaderElection() bool { return false }

// setupControllers registers the two reconcilers. They run on the leader only.
func setupControllers(mgr ctrl.Manager, cfg Config) error {
	sk := &controllers.SigningKeyReconciler{
		Client:   mgr.GetClient(),
		Scheme:   mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("latchkey-signingkey"),
		Clock:    clock.RealClock{},
	}
	if err := sk.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up signingkey controller: %w", err)
	}
	oc := &controllers.OAuthClientReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Scheme:            mgr.GetScheme(),
		Recorder:          mgr.GetEventRecorder("latchkey-oauthclient"),
		Clock:             clock.RealClock{},
		Issuer:            cfg.Issuer,
		SecretGracePeriod: cfg.ClientSecretGracePeriod,
	}
	if err := oc.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up oauthclient controller: %w", err)
	}
	return nil
}

// cacheOptions narrows the informer cache to what Latchkey reads: OAuthClients in the watched
// namespaces; SigningKeys and JWKS ConfigMaps in the server's namespace; and only Secrets that
// carry the auth.latchkey.dev/secret-type label, so unrelated Secrets never enter memory.
func cacheOptions(cfg Config) cache.Options {
	secretLabel, err := labels.NewRequirement(latchkeyv1.LabelSecretType, selection.Exists, nil)
	utilruntime.Must(err)
	jwksLabel, err := labels.NewRequirement(latchkeyv1.LabelJWKS, selection.Exists, nil)
	utilruntime.Must(err)
	own := map[string]cache.Config{cfg.Namespace: {}}

	var clientNS, secretNS map[string]cache.Config
	if len(cfg.WatchNamespaces) > 0 {
		clientNS = map[string]cache.Config{}
		secretNS = map[string]cache.Config{cfg.Namespace: {}}
		for _, ns := range cfg.WatchNamespaces {
			clientNS[ns] = cache.Config{}
			secretNS[ns] = cache.Config{}
		}
	}
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&latchkeyv1.OAuthClient{}: {Namespaces: clientNS},
			&latchkeyv1.SigningKey{}:  {Namespaces: own},
			&corev1.Secret{}:          {Namespaces: secretNS, Label: labels.NewSelector().Add(*secretLabel)},
			&corev1.ConfigMap{}:       {Namespaces: own, Label: labels.NewSelector().Add(*jwksLabel)},
		},
	}
}

// newRESTMapper is the manager's RESTMapper. The kinds the cache is narrowed by (cacheOptions)
// are mapped statically, because building the cache asks whether each is namespaced: with only
// discovery, a replica that starts while the API server is unreachable (or before the CRDs are
// installed) would exit at once and crash-loop with the kubelet's growing back-off, instead of
// serving /healthz, answering /readyz and /token with 503 until its cache syncs, and becoming
// ready by itself (SECURITY-CASES 85; test/e2e, TestServerBeforeCacheSync). Every other kind is
// discovered lazily, as controller-runtime does by default.
func newRESTMapper(c *rest.Config, httpClient *http.Client) (meta.RESTMapper, error) {
	dynamic, err := apiutil.NewDynamicRESTMapper(c, httpClient)
	if err != nil {
		return nil, err
	}
	// Resource names are spelled out: meta's plural guess makes "signingkeies" of SigningKey.
	static := meta.NewDefaultRESTMapper(nil)
	for _, m := range []struct {
		gv             schema.GroupVersion
		kind, resource string
	}{
		{latchkeyv1.GroupVersion, "OAuthClient", "oauthclients"},
		{latchkeyv1.GroupVersion, "SigningKey", "signingkeys"},
		{corev1.SchemeGroupVersion, "Secret", "secrets"},
		{corev1.SchemeGroupVersion, "ConfigMap", "configmaps"},
	} {
		static.AddSpecific(m.gv.WithKind(m.kind), m.gv.WithResource(m.resource),
			m.gv.WithResource(strings.ToLower(m.kind)), meta.RESTScopeNamespace)
	}
	return meta.FirstHitRESTMapper{MultiRESTMapper: meta.MultiRESTMapper{static, dynamic}}, nil
}

// restConfig loads --kubeconfig, or the usual chain (in-cluster, $KUBECONFIG, ~/.kube/config).
func restConfig(path string) (*rest.Config, error) {
	var (
		c   *rest.Config
		err error
	)
	if path != "" {
		c, err = clientcmd.BuildConfigFromFlags("", path)
	} else {
		c, err = config.GetConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	c.UserAgent = "latchkey/" + version
	return c, nil
}

// newRedisStore connects to --redis-url. The connection is lazy: an unreachable Redis makes
// /readyz fail and token requests answer 503, and the server recovers by itself.
func newRedisStore(cfg Config) (*redisstore.Store, error) {
	opts, err := redisstore.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	var storeOpts []redisstore.Option
	if cfg.RedisWaitReplicas > 0 {
		storeOpts = append(storeOpts, redisstore.WithWaitReplicas(cfg.RedisWaitReplicas, cfg.RedisWaitTimeout))
	}
	return redisstore.New(redis.NewUniversalClient(opts), storeOpts...), nil
}
