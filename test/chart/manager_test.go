package chart

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestManagerCommand checks what an out-of-cluster test gets from RenderManager: the chart's
// arguments, and an environment resolved as the kubelet would resolve it.
func TestManagerCommand(t *testing.T) {
	m, err := RenderManager(t.Context(), Options{Values: map[string]any{"issuer": "http://127.0.0.1:18080"}})
	if err != nil {
		t.Fatal(err)
	}
	args := m.Args()
	for flag, want := range map[string]string{
		"issuer":       "http://127.0.0.1:18080",
		"leader-elect": "true",
		"mode":         "all",
		"signing-key":  "default",
		"listen":       ":8080",
	} {
		if got, _ := Flag(args, flag); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}

	env, err := m.Environ(m.SecretData(nil))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if vars["POD_NAMESPACE"] != DefaultNamespace {
		t.Errorf("POD_NAMESPACE = %q, want %q", vars["POD_NAMESPACE"], DefaultNamespace)
	}
	if !strings.HasPrefix(vars["LATCHKEY_REDIS_URL"], "redis://:") || !strings.HasSuffix(vars["LATCHKEY_REDIS_URL"], "@latchkey-redis.latchkey-system.svc:6379/0") {
		t.Errorf("LATCHKEY_REDIS_URL = %q", vars["LATCHKEY_REDIS_URL"])
	}
	if vars["GOMEMLIMIT"] != strconv.Itoa(512<<20) {
		t.Errorf("GOMEMLIMIT = %q, want the 512Mi memory limit in bytes", vars["GOMEMLIMIT"])
	}

	// An existing Secret the chart does not render is answered by the fallback.
	ext, err := RenderManager(t.Context(), externalRedis)
	if err != nil {
		t.Fatal(err)
	}
	env, err = ext.Environ(ext.SecretData(func(name, key string) (string, error) {
		if name == "redis-credentials" && key == "url" {
			return "redis://127.0.0.1:6390/0", nil
		}
		return "", errors.New("unexpected Secret")
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "LATCHKEY_REDIS_URL=redis://127.0.0.1:6390/0") {
		t.Errorf("LATCHKEY_REDIS_URL not resolved from the fallback: %q", env)
	}
	if _, err := ext.Environ(ext.SecretData(nil)); err == nil {
		t.Error("a Secret nobody provides must be an error")
	}

	// Out of cluster, a test moves the listeners to free ports and adds a kubeconfig.
	moved := WithFlag(WithFlag(args, "listen", "127.0.0.1:18080"), "kubeconfig", "/tmp/kc")
	if got, _ := Flag(moved, "listen"); got != "127.0.0.1:18080" {
		t.Errorf("WithFlag: --listen = %q", got)
	}
	if got, _ := Flag(moved, "kubeconfig"); got != "/tmp/kc" {
		t.Errorf("WithFlag: --kubeconfig = %q", got)
	}
	if len(moved) != len(args)+1 {
		t.Errorf("WithFlag: %d arguments, want %d", len(moved), len(args)+1)
	}
}

// binaryFlags reads the flag names the latchkey binary defines from the main package's source:
// every fs.XxxVar(&v, "name", ...) or fs.Xxx("name", ...) call. controller-runtime's zap flags
// are bound by a library call, so they are added by name.
func binaryFlags(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(RepoRoot(), "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{"zap-log-level": true, "zap-devel": true, "zap-encoder": true, "zap-stacktrace-level": true, "zap-time-encoding": true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			switch sel.Sel.Name {
			case "BoolVar", "StringVar", "IntVar", "Int64Var", "UintVar", "DurationVar", "Float64Var", "TextVar", "Func", "BoolFunc",
				"Bool", "String", "Int", "Int64", "Uint", "Duration", "Float64":
			default:
				return true
			}
			for _, a := range call.Args[:min(2, len(call.Args))] {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if name, err := strconv.Unquote(lit.Value); err == nil {
						flags[name] = true
					}
					break
				}
			}
			return true
		})
	}
	return flags
}

// TestArgsAreBinaryFlags checks that every flag the chart passes is one the binary defines, so a
// renamed flag fails here rather than in a crash-looping pod.
func TestArgsAreBinaryFlags(t *testing.T) {
	flags := binaryFlags(t)
	if !flags["issuer"] || !flags["leader-elect"] {
		t.Fatalf("found no latchkey flags in the main package (%d names): has main.go moved?", len(flags))
	}
	for _, v := range variants {
		m, err := RenderManager(t.Context(), v.opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range m.Args() {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || !flags[name] {
				t.Errorf("%s: the chart passes %q, which the binary does not define", v.name, a)
			}
		}
	}
}
