package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/test/chart"
)

// The suite shares one API server (envtest) and one build of the binary. Every test installs its
// own release of the chart in its own namespaces, with its own redis-server, so tests run in
// parallel without seeing each other's objects.
var (
	// env is the shared kube-apiserver and etcd.
	env *envtest.Environment
	// admin is an uncached client with cluster-admin rights: what the tests read is what the API
	// server holds, and the tests play the cluster operator (kubectl apply, edit, delete).
	admin client.WithWatch
	// latchkeyBinary is the binary built from the repository root for this run.
	latchkeyBinary string
	scheme         = runtime.NewScheme()
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(latchkeyv1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	root := chart.RepoRoot()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		// `make test` sets it from hack/envtest-assets.sh; a bare `go test` finds the cached build.
		if dirs, _ := filepath.Glob(filepath.Join(root, "bin", "k8s", "v*")); len(dirs) > 0 {
			slices.Sort(dirs)
			if err := os.Setenv("KUBEBUILDER_ASSETS", dirs[len(dirs)-1]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	if _, err := chart.HelmBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	tmp, err := os.MkdirTemp("", "latchkey-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(tmp); err != nil {
			fmt.Fprintf(os.Stderr, "remove %s: %v\n", tmp, err)
		}
	}()

	// The binary under test is the one `make build` makes, built once for the whole run.
	latchkeyBinary = filepath.Join(tmp, "latchkey")
	build := exec.Command("go", "build", "-o", latchkeyBinary, ".")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build the latchkey binary: %v\n%s", err, out)
		return 1
	}

	env = &envtest.Environment{}
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
	admin, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		return 1
	}

	// The CRDs come from the chart, as `helm install` would create them. They are cluster-scoped,
	// so they are installed once for every release the tests make.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs, err := chart.Render(ctx, chart.Options{Values: map[string]any{"issuer": "http://127.0.0.1:1"}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "render the chart: %v\n", err)
		return 1
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, o := range chart.Find(objs, "CustomResourceDefinition", "") {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := chart.Convert(o, &crd); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		crds = append(crds, &crd)
	}
	if len(crds) != 2 {
		fmt.Fprintf(os.Stderr, "the chart rendered %d CRDs, want 2\n", len(crds))
		return 1
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{CRDs: crds}); err != nil {
		fmt.Fprintf(os.Stderr, "install the chart's CRDs: %v\n", err)
		return 1
	}
	return m.Run()
}
