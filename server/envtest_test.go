package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// startEnvtest runs kube-apiserver and etcd with the Latchkey CRDs. KUBEBUILDER_ASSETS comes
// from `make test`; a bare `go test` uses the cached build in bin/k8s.
func startEnvtest(t *testing.T) *envtest.Environment {
	t.Helper()
	logf.SetLogger(logr.Discard())
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if dirs, _ := filepath.Glob(filepath.Join("..", "bin", "k8s", "v*")); len(dirs) > 0 {
			slices.Sort(dirs)
			abs, _ := filepath.Abs(dirs[len(dirs)-1])
			t.Setenv("KUBEBUILDER_ASSETS", abs)
		}
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start envtest (KUBEBUILDER_ASSETS=%q; run `make test` or hack/envtest-assets.sh): %v",
			os.Getenv("KUBEBUILDER_ASSETS"), err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	return env
}

// cacheOptions narrows the cache as main does: labelled Secrets and JWKS ConfigMaps only.
func cacheOptions(t *testing.T) cache.Options {
	secretLabel, err := labels.NewRequirement(latchkeyv1.LabelSecretType, selection.Exists, nil)
	if err != nil {
		t.Fatal(err)
	}
	jwksLabel, err := labels.NewRequirement(latchkeyv1.LabelJWKS, selection.Exists, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:    {Label: labels.NewSelector().Add(*secretLabel)},
		&corev1.ConfigMap{}: {Label: labels.NewSelector().Add(*jwksLabel)},
	}}
}

// The token server reads clients, secrets and keys from a real manager cache.
func TestTokenServerAgainstEnvtest(t *testing.T) {
	env := startEnvtest(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	scheme := servertest.Scheme()
	k8s, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{servertest.Namespace, "apps"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cacheOptions(t),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &latchkeyv1.OAuthClient{}, latchkeyv1.ClientIDIndex, servertest.IndexClientID); err != nil {
		t.Fatal(err)
	}
	var synced atomic.Bool
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
		}
		<-ctx.Done()
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	st, _ := servertest.RedisStore(t)
	srv, err := server.New(server.Options{
		Issuer:      servertest.Issuer,
		Namespace:   servertest.Namespace,
		Reader:      mgr.GetCache(),
		Store:       st,
		Clock:       clock.RealClock{},
		Registerer:  prometheus.NewRegistry(),
		CacheSynced: synced.Load,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	get := func(path string) int {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	tokenAs := func(id, secret string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", basicHeader(id, secret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		return resp.StatusCode, string(readAll(t, resp.Body))
	}
	token := func(secret string) (int, string) { return tokenAs("svc", secret) }

	// The objects, written straight to the API server (no controllers run here).
	keys := servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, time.Now())
	for _, o := range keys.Objects() {
		if err := k8s.Create(ctx, cleanMeta(o)); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
	svc, svcSecret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"))
	secret := servertest.SecretOf(svcSecret)
	status := svc.Status
	if err := k8s.Create(ctx, cleanMeta(svc)); err != nil {
		t.Fatal(err)
	}
	svc.Status = status
	if err := k8s.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, cleanMeta(svcSecret)); err != nil {
		t.Fatal(err)
	}
	// A client whose (External) Secret lacks the secret-type label: the cache never sees it.
	ext, extSecret := servertest.ConfidentialClient("ext", "apps", servertest.WithClientID("ext"))
	ext.Spec.SecretSource = latchkeyv1.SecretSourceExternal
	extSecret.Labels = nil
	extStatus := ext.Status
	for _, o := range []client.Object{ext, extSecret} {
		if err := k8s.Create(ctx, cleanMeta(o)); err != nil {
			t.Fatal(err)
		}
	}
	ext.Status = extStatus
	if err := k8s.Status().Update(ctx, ext); err != nil {
		t.Fatal(err)
	}

	t.Run("not ready and 503 until the cache syncs", func(t *testing.T) {
		if code := get("/readyz"); code != 503 {
			t.Fatalf("readyz before start: %d", code)
		}
		if code := get("/jwks"); code != 503 {
			t.Fatalf("jwks before start: %d", code)
		}
		if code, body := token(secret); code != 503 || !strings.Contains(body, "temporarily_unavailable") {
			t.Fatalf("token before sync: %d %s", code, body)
		}
	})
	go func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	t.Run("clients are served from the cache", func(t *testing.T) {
		eventually(t, "readyz", func() bool { return get("/readyz") == 200 })
		eventually(t, "a token", func() bool { code, _ := token(secret); return code == 200 })
	})
	t.Run("a rotated client secret is accepted within seconds; the old one in its grace", func(t *testing.T) {
		var s corev1.Secret
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(svcSecret), &s); err != nil {
			t.Fatal(err)
		}
		rotated := servertest.RandomSecret()
		s.Data[latchkeyv1.ClientSecretDataPreviousSecret] = []byte(secret)
		s.Data[latchkeyv1.ClientSecretDataPreviousExpiresAt] = []byte(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		s.Data[latchkeyv1.ClientSecretDataClientSecret] = []byte(rotated)
		if err := k8s.Update(ctx, &s); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the rotated secret", func() bool { code, _ := token(rotated); return code == 200 })
		if code, body := token(secret); code != 200 {
			t.Fatalf("previous secret in its grace period: %d %s", code, body)
		}
		if code, _ := tokenAs("ext", servertest.SecretOf(extSecret)); code != 401 {
			t.Fatalf("an unlabelled Secret was used: %d", code)
		}
	})
	t.Run("a deleted client is invalid_client", func(t *testing.T) {
		if err := k8s.Delete(ctx, svc); err != nil {
			t.Fatal(err)
		}
		eventually(t, "invalid_client", func() bool {
			code, body := token(servertest.SecretOf(svcSecret))
			return code == 401 && strings.Contains(body, `"invalid_client"`)
		})
	})
}

// cleanMeta clears what the API server sets, so a fixture can be created.
func cleanMeta(o client.Object) client.Object {
	o.SetUID("")
	o.SetResourceVersion("")
	o.SetCreationTimestamp(metav1.Time{})
	return o
}
