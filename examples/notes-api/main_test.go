package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/verifier"
)

const audience = "notes-api"

// issuer is a stand-in for the Latchkey server: discovery and a JWKS over HTTP, and tokens
// signed with go-jose the way the token server signs them.
type issuer struct {
	url string
	key *keymaterial.Key
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := keymaterial.Generate(latchkeyv1.AlgorithmES256)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{key: key}
	jwks, err := keymaterial.MarshalJWKS([]jose.JSONWebKey{key.PublicJWK()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss.url, "jwks_uri": iss.url + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(jwks)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.url = srv.URL
	return iss
}

func (iss *issuer) token(t *testing.T, sub string, roles []string) string {
	t.Helper()
	claims := map[string]any{
		"iss": iss.url, "sub": sub, "aud": audience, "client_id": "demo-service", "jti": "j1",
		"scope": "notes.read", "iat": time.Now().Unix(), "exp": time.Now().Add(15 * time.Minute).Unix(),
	}
	if roles != nil {
		claims["roles"] = roles
		claims["client_id"] = "demo-spa"
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: iss.key.SigningJWK()},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

func do(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func TestRoutes(t *testing.T) {
	iss := newIssuer(t)
	v, err := verifier.New(t.Context(), iss.url, verifier.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newHandler(v, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	alice := iss.token(t, "alice", []string{"admin", "user"})
	bob := iss.token(t, "bob", []string{"user"})
	service := iss.token(t, "client:demo-service", nil)
	realm := `Bearer realm="notes-api"`

	cases := []struct {
		name, path, token string
		status            int
		www, body         string
	}{
		{"healthz needs no token", "/healthz", "", 200, "", "ok\n"},
		{"protected without a token is a challenge", "/api/protected", "", 401, realm, `{"error_description":"a bearer token is required"}` + "\n"},
		{"protected with a garbage token is invalid_token", "/api/protected", "garbage", 401,
			realm + `, error="invalid_token", error_description="the access token is invalid"`, ""},
		{"protected with a client token", "/api/protected", service, 200, "", `"sub":"client:demo-service","client_id":"demo-service","client":true`},
		{"protected with a user token", "/api/protected", alice, 200, "", `"roles":["admin","user"]`},
		{"admin with an admin user", "/api/admin", alice, 200, "", `{"message":"hello admin alice"}` + "\n"},
		{"admin with a user who is not admin", "/api/admin", bob, 403,
			realm + `, error="insufficient_scope", error_description="the access token lacks role admin"`, ""},
		{"admin with a client token", "/api/admin", service, 403,
			realm + `, error="insufficient_scope", error_description="the access token lacks role admin"`, ""},
		{"admin without a token", "/api/admin", "", 401, realm, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := do(t, srv.URL+tc.path, tc.token)
			if status != tc.status || h.Get("WWW-Authenticate") != tc.www || !strings.Contains(body, tc.body) {
				t.Fatalf("got %d %q %s", status, h.Get("WWW-Authenticate"), body)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := parseConfig([]string{"-audience", "a"}, env(nil))
	if err != nil || cfg.issuer != "http://localhost:8080" || cfg.listen != "127.0.0.1:8081" || cfg.audience != "a" {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	cfg, err = parseConfig(nil, env(map[string]string{"LATCHKEY_ISSUER": "https://i", "NOTES_API_AUDIENCE": "b", "NOTES_API_LISTEN": ":9", "LATCHKEY_JWKS_FILE": "/j"}))
	if err != nil || cfg != (config{issuer: "https://i", audience: "b", listen: ":9", jwksFile: "/j"}) {
		t.Fatalf("env: %+v %v", cfg, err)
	}
	cfg, err = parseConfig([]string{"-audience", "flag"}, env(map[string]string{"NOTES_API_AUDIENCE": "env"}))
	if err != nil || cfg.audience != "flag" {
		t.Fatalf("a flag must win over the environment: %+v %v", cfg, err)
	}
	for _, args := range [][]string{nil, {"-audience", "a", "extra"}, {"-nope"}} {
		if _, err := parseConfig(args, env(nil)); err == nil {
			t.Fatalf("parseConfig(%q) succeeded", args)
		}
	}
	srv := newServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Fatalf("a server timeout or limit is unset: %+v", srv)
	}
}

// lineWriter sends each log line to a channel, so the test can wait for "Listening".
type lineWriter struct{ lines chan string }

func (w lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		w.lines <- sc.Text()
	}
	return len(p), nil
}

// TestRun starts the program as main does (with a JWKS file, as in a pod with the ConfigMap
// mounted), calls it over TCP, and stops it by cancelling its context.
func TestRun(t *testing.T) {
	iss := newIssuer(t)
	jwks, _ := keymaterial.MarshalJWKS([]jose.JSONWebKey{iss.key.PublicJWK()})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	logger := slog.New(slog.NewTextHandler(lineWriter{lines}, nil))
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-listen", "127.0.0.1:0", "-issuer", iss.url, "-audience", audience, "-jwks-file", path},
			func(string) string { return "" }, logger)
	}()
	var addr string
	for addr == "" {
		select {
		case line := <-lines:
			if m := regexp.MustCompile(`msg=Listening addr=(\S+)`).FindStringSubmatch(line); m != nil {
				addr = m[1]
			}
		case err := <-errc:
			t.Fatalf("run returned early: %v", err)
		}
	}
	status, _, body := do(t, "http://"+addr+"/api/admin", iss.token(t, "alice", []string{"admin"}))
	if status != http.StatusOK || !strings.Contains(body, "hello admin alice") {
		t.Fatalf("got %d %s", status, body)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}

	if err := run(t.Context(), []string{"-audience", audience, "-issuer", "http://127.0.0.1:1"}, func(string) string { return "" },
		slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("run succeeded without a reachable issuer")
	}
}
