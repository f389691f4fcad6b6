package chart

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// startAPIServer starts an envtest API server (etcd and kube-apiserver from KUBEBUILDER_ASSETS)
// with no CRDs installed, and stops it when the test ends.
func startAPIServer(t *testing.T) *envtest.Environment {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test`, or " +
			"`export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh | tail -n 1)` (builds kube-apiserver and etcd once)")
	}
	env := &envtest.Environment{}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	return env
}

func newClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createNamespaces(t *testing.T, c client.Client, names ...string) {
	t.Helper()
	for _, ns := range names {
		obj := &unstructured.Unstructured{}
		obj.SetAPIVersion("v1")
		obj.SetKind("Namespace")
		obj.SetName(ns)
		if err := c.Create(t.Context(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
}

// crdsOf converts the CRDs among rendered objects for envtest.InstallCRDs.
func crdsOf(t *testing.T, objs []*unstructured.Unstructured) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, o := range Find(objs, "CustomResourceDefinition", "") {
		out = append(out, convert[apiextensionsv1.CustomResourceDefinition](t, o))
	}
	return out
}

// TestServerSideDryRun installs the chart's CRDs into a real API server, then applies every
// object of each render (hooks and the test pod included) with a server-side apply dry run and
// strict field validation: a misspelt field, a wrong type, an invalid enum, a CEL rule of our
// CRDs or an unknown namespace fails here.
//
// Kinds envtest does not serve: ServiceMonitor (Prometheus Operator) and HTTPRoute (Gateway API)
// get trimmed CRDs from testdata/crds, closed to unknown fields, so nothing is skipped.
func TestServerSideDryRun(t *testing.T) {
	env := startAPIServer(t)
	ctx := t.Context()
	c := newClient(t, env.Config)
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}

	// The CRDs for real: the chart's own, and stand-ins for the optional third-party kinds.
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
		CRDs:               crdsOf(t, render(t, defaultOptions)),
		Paths:              []string{filepath.Join("testdata", "crds")},
		ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	// The release namespace, the watched namespaces and the Lease's namespace of all-features.yaml.
	createNamespaces(t, c, DefaultNamespace, "team-a", "team-b", "latchkey-leases")

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v.opts)
			for _, o := range objs {
				applyDryRun(ctx, t, c, dyn, o)
			}
		})
	}
	// The kustomize install's hand-written and generated files (config/rbac, config/manager).
	t.Run("kustomize", func(t *testing.T) {
		for _, dir := range []string{"rbac", "manager"} {
			for _, o := range kustomizeObjects(t, filepath.Join(RepoRoot(), "config", dir)) {
				applyDryRun(ctx, t, c, dyn, o)
			}
		}
	})
}

func applyDryRun(ctx context.Context, t *testing.T, c client.Client, dyn dynamic.Interface, o *unstructured.Unstructured) {
	t.Helper()
	gvk := o.GroupVersionKind()
	mapping, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Errorf("%s %s: the API server does not serve this kind: %v", gvk, o.GetName(), err)
		return
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == "namespace" {
		if o.GetNamespace() == "" {
			t.Errorf("%s %s is namespaced but the chart gives it no namespace", gvk.Kind, o.GetName())
			return
		}
		ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
	} else if o.GetNamespace() != "" {
		t.Errorf("%s %s is cluster-scoped but the chart gives it namespace %s", gvk.Kind, o.GetName(), o.GetNamespace())
	}
	force := true
	if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		DryRun:          []string{metav1.DryRunAll},
		FieldManager:    "latchkey-chart-test",
		Force:           &force,
		FieldValidation: metav1.FieldValidationStrict,
	}); err != nil {
		t.Errorf("server-side apply (dry run, strict) of %s %s/%s: %v", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
}

var signingKeyGVR = schema.GroupVersionResource{Group: "auth.latchkey.dev", Version: "v1alpha1", Resource: "signingkeys"}

// TestHelmLifecycle drives the real helm binary against an API server that has never seen
// Latchkey: install (the CRDs and the SigningKey hook in one release), upgrade, upgrade after the
// SigningKey was deleted, uninstall and reinstall. It proves the choices the chart documents: the
// SigningKey is created after its CRD, never re-created or changed by an upgrade, re-created when
// missing, kept with the CRDs on uninstall, and adopted by a reinstall; the Redis password
// survives upgrades.
func TestHelmLifecycle(t *testing.T) {
	env := startAPIServer(t)
	ctx := t.Context()
	user, err := env.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, env.Config)

	const release, ns = "lk", DefaultNamespace
	helm := func(action string, values map[string]any, extra ...string) string {
		t.Helper()
		dir := t.TempDir()
		vals, err := ValuesArgs(Options{Values: values}, dir)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{action, release, Dir(), "--namespace", ns, "--kubeconfig", kcPath}, extra...)
		out, err := Helm(ctx, append(args, vals...)...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", action, err, out)
		}
		return string(out)
	}
	signingKey := func() *unstructured.Unstructured {
		t.Helper()
		sk, err := dyn.Resource(signingKeyGVR).Namespace(ns).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get the default SigningKey: %v", err)
		}
		return sk
	}
	rotation := func(sk *unstructured.Unstructured) string {
		v, _, _ := unstructured.NestedString(sk.Object, "spec", "rotationInterval")
		return v
	}
	secretData := func(name, key string) string {
		t.Helper()
		s := &unstructured.Unstructured{}
		s.SetAPIVersion("v1")
		s.SetKind("Secret")
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			t.Fatalf("get Secret %s: %v", name, err)
		}
		v, _, _ := unstructured.NestedString(s.Object, "data", key)
		return v
	}
	exists := func(obj client.Object) bool {
		t.Helper()
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	deployment := func() client.Object {
		d := &unstructured.Unstructured{}
		d.SetAPIVersion("apps/v1")
		d.SetKind("Deployment")
		d.SetNamespace(ns)
		d.SetName("lk-latchkey")
		return d
	}
	crd := func(name string) client.Object {
		o := &unstructured.Unstructured{}
		o.SetAPIVersion("apiextensions.k8s.io/v1")
		o.SetKind("CustomResourceDefinition")
		o.SetName(name)
		return o
	}

	values := map[string]any{"issuer": testIssuer}

	// 1. Install on a cluster without the CRDs.
	out := helm("install", values, "--create-namespace")
	// NOTES.txt tells the next steps with the release's real names.
	for _, want := range []string{
		"kubectl -n latchkey-system rollout status deployment/lk-latchkey",
		"kubectl -n latchkey-system get signingkey default",
		"kind: OAuthClient",
		"get secret demo-oauth-client",
		"-d grant_type=client_credentials",
		"kubectl -n latchkey-system port-forward service/lk-latchkey 8080:80",
		"helm test lk -n latchkey-system",
		"WARNING: redis.enabled runs a single Redis",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the install notes do not say %q:\n%s", want, out)
		}
	}
	t.Log(out)
	sk := signingKey()
	uid := sk.GetUID()
	if got := rotation(sk); got != "720h" {
		t.Errorf("install: rotationInterval = %q, want 720h", got)
	}
	for _, name := range []string{"oauthclients.auth.latchkey.dev", "signingkeys.auth.latchkey.dev"} {
		o := crd(name)
		if !exists(o) {
			t.Fatalf("install: CRD %s missing", name)
		}
		if o.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("install: CRD %s is not annotated keep", name)
		}
	}
	password := secretData("lk-latchkey-redis", "password")
	url := secretData("lk-latchkey-redis-url", "redis-url")

	// 2. An upgrade neither re-creates nor changes the SigningKey, and keeps the Redis password.
	values["signingKey"] = map[string]any{"rotationInterval": "100h"}
	helm("upgrade", values)
	sk = signingKey()
	if sk.GetUID() != uid {
		t.Fatal("upgrade: the SigningKey was re-created, which would have deleted every key")
	}
	if got := rotation(sk); got != "720h" {
		t.Errorf("upgrade: rotationInterval = %q; the chart must leave an existing SigningKey alone", got)
	}
	if got := secretData("lk-latchkey-redis", "password"); got != password {
		t.Error("upgrade: the Redis password changed")
	}
	if got := secretData("lk-latchkey-redis-url", "redis-url"); got != url {
		t.Error("upgrade: the Redis URL changed")
	}

	// 3. A SigningKey someone deleted comes back on the next upgrade, with the current values.
	if err := dyn.Resource(signingKeyGVR).Namespace(ns).Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	helm("upgrade", values)
	sk = signingKey()
	if sk.GetUID() == uid {
		t.Fatal("upgrade after delete: same UID")
	}
	uid = sk.GetUID()
	if got := rotation(sk); got != "100h" {
		t.Errorf("upgrade after delete: rotationInterval = %q, want 100h", got)
	}

	// 4. Uninstall keeps the CRDs and the SigningKey (its keys), and removes the rest.
	if out, err := Helm(ctx, "uninstall", release, "--namespace", ns, "--kubeconfig", kcPath); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	if exists(deployment()) {
		t.Error("uninstall: the Deployment is still there")
	}
	for _, name := range []string{"oauthclients.auth.latchkey.dev", "signingkeys.auth.latchkey.dev"} {
		if !exists(crd(name)) {
			t.Errorf("uninstall: CRD %s was deleted (crds.keep)", name)
		}
	}
	if signingKey().GetUID() != uid {
		t.Error("uninstall: the SigningKey was deleted")
	}

	// 5. A reinstall adopts the CRDs and leaves the SigningKey as it was.
	helm("install", values)
	if !exists(deployment()) {
		t.Error("reinstall: no Deployment")
	}
	if signingKey().GetUID() != uid {
		t.Error("reinstall: the SigningKey was re-created")
	}
}

// kustomizeObjects loads the files a kustomization lists under resources (files only; it does not
// run kustomize), for the dry run and the comparison with the chart.
func kustomizeObjects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatalf("%s lists %s: %v", dir, r, err)
		}
		parsed, err := Parse(data)
		if err != nil {
			t.Fatalf("%s/%s: %v", dir, r, err)
		}
		objs = append(objs, parsed...)
	}
	return objs
}
