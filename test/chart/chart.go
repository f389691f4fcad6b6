// Package chart renders the Latchkey Helm chart (charts/latchkey) with the helm binary and hands
// back the objects, so tests can check them, apply them to an API server, or start the latchkey
// binary "with the arguments the chart's Deployment would give it" (ManagerCommand).
//
// The helm binary is $HELM, or bin/helm at the repository root (`make test` installs it there).
//
// An end-to-end test runs the binary out of cluster against envtest like this:
//
//	m, err := chart.RenderManager(ctx, chart.Options{Values: map[string]any{
//		"issuer": "http://127.0.0.1:" + port, // loopback http is the one non-https issuer allowed
//		"redis":  map[string]any{"enabled": false, "url": redisURL}, // the test's redis-server
//	}})
//	// Apply chart.Find(m.Objects, "CustomResourceDefinition", "") for real, create the namespace
//	// m.Namespace, then apply chart.Find(m.Objects, "SigningKey", "") (the chart's default key).
//	args := m.Args() // exactly the Deployment's arguments
//	args = chart.WithFlag(args, "listen", "127.0.0.1:"+port) // free ports instead of the pod's
//	args = chart.WithFlag(args, "metrics-bind-address", "127.0.0.1:0")
//	args = chart.WithFlag(args, "health-probe-bind-address", "127.0.0.1:0")
//	args = chart.WithFlag(args, "kubeconfig", kubeconfigPath) // what a pod gets from its token
//	env, err := m.Environ(m.SecretData(nil)) // POD_NAMESPACE, LATCHKEY_REDIS_URL, GOMEMLIMIT
//	cmd := exec.CommandContext(ctx, latchkeyBinary, args...)
//	cmd.Env = append(os.Environ(), env...)
package chart

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// KubeVersion is the Kubernetes version charts are rendered for: the envtest API server's
// (hack/envtest-assets.sh). A helm built with `go install` would otherwise assume v1.20.
const KubeVersion = "v1.37.2"

// DefaultRelease and DefaultNamespace are used when Options leaves them empty.
const (
	DefaultRelease   = "latchkey"
	DefaultNamespace = "latchkey-system"
)

// ContainerName is the name of the Latchkey container in the chart's Deployment.
const ContainerName = "latchkey"

// RepoRoot is the repository's root directory, found from this source file so that it works
// from any working directory and any clone.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("chart: cannot locate the source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Dir is the chart's directory, charts/latchkey.
func Dir() string { return filepath.Join(RepoRoot(), "charts", "latchkey") }

// HelmBinary is $HELM, or bin/helm at the repository root. It fails with instructions when the
// binary is missing: the chart tests never skip.
func HelmBinary() (string, error) {
	path := os.Getenv("HELM")
	if path == "" {
		path = filepath.Join(RepoRoot(), "bin", "helm")
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("helm binary not found at %s (set $HELM, or run `make test`, which installs it with "+
			"`GOBIN=%s go install helm.sh/helm/v3/cmd/helm@v3.22.0`): %w", path, filepath.Join(RepoRoot(), "bin"), err)
	}
	return path, nil
}

// Options say how to render the chart.
type Options struct {
	// Release is the release name (default DefaultRelease).
	Release string
	// Namespace is the release namespace (default DefaultNamespace).
	Namespace string
	// ValuesFiles are passed with -f, in order.
	ValuesFiles []string
	// Values are passed last (as a values file, so no --set escaping applies), e.g.
	// {"issuer": "https://auth.example.com", "redis": {"enabled": false, "url": "redis://..."}}.
	Values map[string]any
	// APIVersions are extra --api-versions, e.g. "auth.latchkey.dev/v1alpha1/SigningKey" to
	// render as if the CRDs were already installed.
	APIVersions []string
}

func (o Options) release() string {
	if o.Release == "" {
		return DefaultRelease
	}
	return o.Release
}

func (o Options) namespace() string {
	if o.Namespace == "" {
		return DefaultNamespace
	}
	return o.Namespace
}

// Helm runs the helm binary with args and returns its standard output. The error carries
// standard error, where helm explains a failed template or schema check.
func Helm(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := HelmBinary()
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// Keep helm's caches and config out of the user's home directory.
	tmp, err := os.MkdirTemp("", "latchkey-helm-")
	if err != nil {
		return nil, err
	}
	defer removeTemp(tmp)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(tmp, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "data"),
	)
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// removeTemp deletes a scratch directory of helm's. It is best effort: the directory sits under
// os.TempDir and holds nothing secret, so a leftover is harmless and must not fail the render.
func removeTemp(dir string) { _ = os.RemoveAll(dir) }

// ValuesArgs turns Options into helm's -f flags. Values are written to a file in dir.
func ValuesArgs(o Options, dir string) ([]string, error) {
	var args []string
	for _, f := range o.ValuesFiles {
		args = append(args, "-f", f)
	}
	if len(o.Values) > 0 {
		data, err := json.Marshal(o.Values) // JSON is YAML.
		if err != nil {
			return nil, fmt.Errorf("encode values: %w", err)
		}
		f, err := os.CreateTemp(dir, "values-*.yaml")
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(data); err != nil {
			return nil, errors.Join(err, f.Close())
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		args = append(args, "-f", f.Name())
	}
	return args, nil
}

// Template runs `helm template` and returns the manifest, hooks and test pods included.
func Template(ctx context.Context, o Options) ([]byte, error) {
	dir, err := os.MkdirTemp("", "latchkey-values-")
	if err != nil {
		return nil, err
	}
	defer removeTemp(dir)
	vals, err := ValuesArgs(o, dir)
	if err != nil {
		return nil, err
	}
	args := []string{"template", o.release(), Dir(), "--namespace", o.namespace(), "--kube-version", KubeVersion}
	for _, v := range o.APIVersions {
		args = append(args, "--api-versions", v)
	}
	return Helm(ctx, append(args, vals...)...)
}

// Render runs `helm template` and parses every document into an object, in the order helm
// printed them. Empty documents are dropped.
func Render(ctx context.Context, o Options) ([]*unstructured.Unstructured, error) {
	out, err := Template(ctx, o)
	if err != nil {
		return nil, err
	}
	return Parse(out)
}

// Parse splits a multi-document YAML stream into objects. Duplicate keys are an error, as they
// are for the API server's strict decoding.
func Parse(manifest []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split manifest: %w", err)
		}
		var m map[string]any
		if err := yaml.UnmarshalStrict(doc, &m); err != nil {
			return nil, fmt.Errorf("parse manifest document: %w\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// Find returns the objects of a kind (and, when name is not empty, of that name).
func Find(objs []*unstructured.Unstructured, kind, name string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			out = append(out, o)
		}
	}
	return out
}

// Convert decodes an object into a typed API struct (a Deployment, a Role...), failing on any
// field the type does not have.
func Convert(obj *unstructured.Unstructured, into any) error {
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("decode %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// Deployment returns the chart's Latchkey Deployment from rendered objects.
func Deployment(objs []*unstructured.Unstructured) (*appsv1.Deployment, error) {
	deps := Find(objs, "Deployment", "")
	if len(deps) != 1 {
		return nil, fmt.Errorf("want 1 Deployment in the chart, found %d", len(deps))
	}
	var d appsv1.Deployment
	if err := Convert(deps[0], &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Manager is the Latchkey container of the chart's Deployment.
type Manager struct {
	// Namespace is the release namespace, which POD_NAMESPACE resolves to.
	Namespace string
	// Container is the whole container spec.
	Container corev1.Container
	// Objects are all the rendered objects, for the SigningKey, the users Secret and so on.
	Objects []*unstructured.Unstructured
}

// RenderManager renders the chart and returns its Latchkey container.
func RenderManager(ctx context.Context, o Options) (*Manager, error) {
	objs, err := Render(ctx, o)
	if err != nil {
		return nil, err
	}
	d, err := Deployment(objs)
	if err != nil {
		return nil, err
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == ContainerName {
			return &Manager{Namespace: o.namespace(), Container: c, Objects: objs}, nil
		}
	}
	return nil, fmt.Errorf("no container %q in Deployment %s", ContainerName, d.Name)
}

// Args are the container's arguments: what the binary's command line would be in the pod.
func (m *Manager) Args() []string { return append([]string(nil), m.Container.Args...) }

// Environ resolves the container's environment the way the kubelet would, as KEY=value
// strings for exec.Cmd.Env: fieldRef metadata.namespace is Namespace, resourceFieldRef reads the
// container's own requests and limits, and secretKeyRef asks secret(name, key), which a test
// answers with, say, the URL of its own redis-server for the chart's Redis URL Secret.
func (m *Manager) Environ(secret func(name, key string) (string, error)) ([]string, error) {
	var env []string
	for _, e := range m.Container.Env {
		value := e.Value
		if src := e.ValueFrom; src != nil {
			switch {
			case src.FieldRef != nil && src.FieldRef.FieldPath == "metadata.namespace":
				value = m.Namespace
			case src.SecretKeyRef != nil:
				v, err := secret(src.SecretKeyRef.Name, src.SecretKeyRef.Key)
				if err != nil {
					return nil, fmt.Errorf("env %s: secret %s key %s: %w", e.Name, src.SecretKeyRef.Name, src.SecretKeyRef.Key, err)
				}
				value = v
			case src.ResourceFieldRef != nil:
				q, ok := resourceValue(m.Container.Resources, src.ResourceFieldRef.Resource)
				if !ok {
					continue // the kubelet would use the node's capacity: leave it to the runtime
				}
				value = q
			default:
				return nil, fmt.Errorf("env %s: cannot resolve %+v outside a pod", e.Name, src)
			}
		}
		env = append(env, e.Name+"="+value)
	}
	return env, nil
}

func resourceValue(r corev1.ResourceRequirements, ref string) (string, bool) {
	list := r.Limits
	name, ok := strings.CutPrefix(ref, "limits.")
	if !ok {
		list = r.Requests
		name, ok = strings.CutPrefix(ref, "requests.")
		if !ok {
			return "", false
		}
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "", false
	}
	return fmt.Sprint(q.Value()), true
}

// SecretData returns a function for Environ that reads the chart's own rendered Secrets (the
// Redis URL Secret, for instance), falling back to fallback for Secrets the chart does not
// render (redis.existingSecret).
func (m *Manager) SecretData(fallback func(name, key string) (string, error)) func(name, key string) (string, error) {
	return func(name, key string) (string, error) {
		for _, o := range Find(m.Objects, "Secret", name) {
			var s corev1.Secret
			if err := Convert(o, &s); err != nil {
				return "", err
			}
			if v, ok := s.StringData[key]; ok {
				return v, nil
			}
			if v, ok := s.Data[key]; ok {
				return string(v), nil
			}
		}
		if fallback != nil {
			return fallback(name, key)
		}
		return "", fmt.Errorf("the chart renders no Secret %s with key %s", name, key)
	}
}

// Flag returns the value of --name=value in args, and whether it is there.
func Flag(args []string, name string) (string, bool) {
	prefix := "--" + name + "="
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			return v, true
		}
	}
	return "", false
}

// WithFlag returns a copy of args with --name=value replacing every --name=... (or appended).
// An out-of-cluster test uses it for what only differs outside a pod: free ports for --listen,
// --metrics-bind-address and --health-probe-bind-address, and --kubeconfig.
func WithFlag(args []string, name, value string) []string {
	prefix := "--" + name + "="
	out := make([]string, 0, len(args)+1)
	for _, a := range args {
		if !strings.HasPrefix(a, prefix) && a != "--"+name {
			out = append(out, a)
		}
	}
	return append(out, prefix+value)
}
