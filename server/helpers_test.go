package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
)

// env is one token server over a fake object store and a real Redis, with a default
// confidential client "svc" (client_secret_basic, client_credentials, scopes read and write).
type env struct {
	t      *testing.T
	clk    *clocktesting.FakeClock
	reader client.WithWatch
	store  *redisstore.Store
	redis  *redistest.Server
	keys   *servertest.KeySet
	srv    *server.Server
	h      http.Handler
	reg    *prometheus.Registry
	logs   *logSink

	svc       *latchkeyv1.OAuthClient
	svcSecret string
	synced    bool
	syncedMu  sync.Mutex
}

type envConfig struct {
	issuer  string
	objects []client.Object
	noKeys  bool
	fetcher func(clock.PassiveClock) *clients.KeyFetcher
	modify  func(*server.Options)
}

type envOption func(*envConfig)

func withObjects(objs ...client.Object) envOption {
	return func(c *envConfig) { c.objects = append(c.objects, objs...) }
}
func withIssuer(iss string) envOption { return func(c *envConfig) { c.issuer = iss } }
func withoutKeys() envOption          { return func(c *envConfig) { c.noKeys = true } }
func withFetcher(f func(clock.PassiveClock) *clients.KeyFetcher) envOption {
	return func(c *envConfig) { c.fetcher = f }
}
func withOptions(f func(*server.Options)) envOption {
	return func(c *envConfig) { c.modify = f }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	cfg := envConfig{issuer: servertest.Issuer}
	for _, o := range opts {
		o(&cfg)
	}
	e := &env{t: t, clk: clocktesting.NewFakeClock(servertest.Epoch), synced: true, logs: &logSink{}}
	e.keys = servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, e.clk.Now())
	svc, svcSecret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"),
		servertest.WithCORSOrigins("https://app.example.test"))
	e.svc, e.svcSecret = svc, servertest.SecretOf(svcSecret)
	e.logs.forbid(e.svcSecret)
	objs := []client.Object{svc, svcSecret}
	if !cfg.noKeys {
		objs = append(objs, e.keys.Objects()...)
	}
	objs = append(objs, cfg.objects...)
	e.reader = servertest.NewReader(objs...)
	e.store, e.redis = servertest.RedisStore(t)
	e.reg = prometheus.NewRegistry()
	var fetcher *clients.KeyFetcher
	if cfg.fetcher != nil {
		fetcher = cfg.fetcher(e.clk)
	}
	o := server.Options{
		Issuer:           cfg.issuer,
		Namespace:        servertest.Namespace,
		Reader:           e.reader,
		Store:            e.store,
		Clock:            e.clk,
		Log:              e.logs.logger(),
		Registerer:       e.reg,
		CacheSynced:      e.isSynced,
		ClientKeyFetcher: fetcher,
	}
	if cfg.modify != nil {
		cfg.modify(&o)
	}
	srv, err := server.New(o)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e.srv, e.h = srv, srv.Handler()
	t.Cleanup(func() { e.logs.assertClean(t) })
	return e
}

func (e *env) isSynced() bool {
	e.syncedMu.Lock()
	defer e.syncedMu.Unlock()
	return e.synced
}

func (e *env) setSynced(v bool) {
	e.syncedMu.Lock()
	defer e.syncedMu.Unlock()
	e.synced = v
}

// do sends a request through the handler.
func (e *env) do(req *http.Request) *httptest.ResponseRecorder {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// post sends a form POST to path with optional Basic credentials and header edits.
func (e *env) post(path string, form url.Values, edits ...func(*http.Request)) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, edit := range edits {
		edit(req)
	}
	return e.do(req)
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", clients.EncodeBasic(id, secret)) }
}

func header(k, v string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

// cc gets a client_credentials token for svc and fails the test unless it gets one.
func (e *env) cc(extra url.Values) string {
	e.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		form[k] = v
	}
	rec := e.post("/token", form, basic("svc", e.svcSecret))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	decode(e.t, rec.Body.Bytes(), &resp)
	e.logs.forbid(resp.AccessToken)
	return resp.AccessToken
}

// introspect asks about token as id/secret and returns the decoded response.
func (e *env) introspect(id, secret, token string, extra ...string) (int, map[string]any) {
	e.t.Helper()
	form := url.Values{"token": {token}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	rec := e.post("/introspect", form, basic(id, secret))
	var m map[string]any
	decode(e.t, rec.Body.Bytes(), &m)
	return rec.Code, m
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}

// assertJSON compares a response body with want as JSON documents.
func assertJSON(t *testing.T, body []byte, want string) {
	t.Helper()
	var got, exp any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("want %q is not JSON: %v", want, err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(exp)
	if !bytes.Equal(g, w) {
		t.Fatalf("body = %s\nwant   %s", g, w)
	}
}

// assertError checks an OAuth error response: status, exact body and the no-store headers.
func assertError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, desc string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	want := map[string]string{"error": code}
	if desc != "" {
		want["error_description"] = desc
	}
	w, _ := json.Marshal(want)
	assertJSON(t, rec.Body.Bytes(), string(w))
	assertNoStore(t, rec)
	if got := rec.Header().Get("WWW-Authenticate"); (code == "invalid_client") != (got != "") {
		t.Fatalf("WWW-Authenticate = %q for %s", got, code)
	}
}

func assertNoStore(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	h := rec.Header()
	if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers: Cache-Control %q, Pragma %q, Content-Type %q", h.Get("Cache-Control"), h.Get("Pragma"), h.Get("Content-Type"))
	}
}

// jwtParts decodes a compact JWS's header and claims without verifying it.
func jwtParts(t *testing.T, token string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var h, c map[string]any
	for i, dst := range []*map[string]any{&h, &c} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		decode(t, b, dst)
	}
	return h, c
}

// signJWS signs payload with key and extra protected headers, as a compact JWS.
func signJWS(t *testing.T, alg jose.SignatureAlgorithm, key any, payload any, hdr map[jose.HeaderKey]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range hdr {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logSink collects log lines so tests can check that no secret or token was logged.
type logSink struct {
	mu        sync.Mutex
	lines     []string
	forbidden []string
}

func (s *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lines = append(s.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

// forbid registers values that must never appear in the log.
func (s *logSink) forbid(vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forbidden = append(s.forbidden, vals...)
}

func (s *logSink) assertClean(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range s.lines {
		for _, f := range s.forbidden {
			if f != "" && strings.Contains(line, f) {
				t.Errorf("log line contains a secret or token: %s", line)
			}
		}
	}
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// readAll reads a response body.
func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond every 50ms until it holds or 15s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
