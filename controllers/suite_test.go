package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The suite runs one kube-apiserver and etcd (envtest, KUBEBUILDER_ASSETS) for the whole
// package, as kubebuilder's suite_test.go does, with plain testing and polling helpers. Each test
// works in its own namespace, so tests do not see each other's objects.

var (
	testCfg    *rest.Config
	testScheme = runtime.NewScheme()
	// k8s is an uncached client: what the tests read is what the API server holds.
	k8s client.WithWatch
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(latchkeyv1.AddToScheme(testScheme))
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		// `make test` sets it from hack/envtest-assets.sh; a bare `go test` finds the cached build.
		if dirs, _ := filepath.Glob(filepath.Join("..", "bin", "k8s", "v*")); len(dirs) > 0 {
			slices.Sort(dirs)
			abs, _ := filepath.Abs(dirs[len(dirs)-1])
			if err := os.Setenv("KUBEBUILDER_ASSETS", abs); err != nil {
				fmt.Fprintf(os.Stderr, "set KUBEBUILDER_ASSETS: %v\n", err)
				return 1
			}
		}
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start envtest (KUBEBUILDER_ASSETS=%q; run `make test` or hack/envtest-assets.sh): %v\n",
			os.Getenv("KUBEBUILDER_ASSETS"), err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}()
	testCfg = cfg
	k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: testScheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		return 1
	}
	return m.Run()
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// eventually polls cond until it returns nil, and fails the test with its last error after
// timeout. The state of the world converges with some delay; tests wait for it, never for a
// fixed time.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordedEvent is one event a reconciler emitted.
type recordedEvent struct {
	Object, Type, Reason, Note string
}

// testRecorder is an events.EventRecorder that keeps what it is given.
type testRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

// Eventf implements events.EventRecorder.
func (r *testRecorder) Eventf(regarding runtime.Object, _ runtime.Object, eventtype, reason, _ string, note string, args ...interface{}) {
	name := ""
	if o, ok := regarding.(client.Object); ok {
		name = o.GetNamespace() + "/" + o.GetName()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recordedEvent{Object: name, Type: eventtype, Reason: reason, Note: fmt.Sprintf(note, args...)})
}

// find returns the events with the given reason (and type, when not empty).
func (r *testRecorder) find(typ, reason string) []recordedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedEvent
	for _, e := range r.events {
		if e.Reason == reason && (typ == "" || e.Type == typ) {
			out = append(out, e)
		}
	}
	return out
}

// startManager runs a manager over the given namespaces with the cache narrowed as main.go
// narrows it (only labelled Secrets and JWKS ConfigMaps), the client-ID and audience field
// indexes, and the controllers that setup registers. It stops when the test ends.
func startManager(t *testing.T, namespaces []string, setup func(ctrl.Manager) error) ctrl.Manager {
	t.Helper()
	secretLabel, err := labels.NewRequirement(latchkeyv1.LabelSecretType, selection.Exists, nil)
	if err != nil {
		t.Fatal(err)
	}
	jwksLabel, err := labels.NewRequirement(latchkeyv1.LabelJWKS, selection.Exists, nil)
	if err != nil {
		t.Fatal(err)
	}
	nsConfig := map[string]cache.Config{}
	for _, ns := range namespaces {
		nsConfig[ns] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(testCfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{
			DefaultNamespaces: nsConfig,
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}:    {Label: labels.NewSelector().Add(*secretLabel)},
				&corev1.ConfigMap{}: {Label: labels.NewSelector().Add(*jwksLabel)},
			},
		},
	})
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := mgr.GetFieldIndexer().IndexField(ctx, &latchkeyv1.OAuthClient{}, latchkeyv1.ClientIDIndex, IndexOAuthClientClientID); err != nil {
		t.Fatalf("index: %v", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &latchkeyv1.OAuthClient{}, latchkeyv1.AudienceIndex, IndexOAuthClientAudience); err != nil {
		t.Fatalf("index: %v", err)
	}
	if err := setup(mgr); err != nil {
		t.Fatalf("set up controllers: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	return mgr
}
