package server_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/utils/clock"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// The tracing tests share one SDK provider, installed once as the global provider as
// internal/telemetry does in the binary: the instrumented packages' tracers are the global
// provider's delegates, which bind to the first provider set. Each test sends its requests with
// a traceparent of its own trace id and reads back only the spans of that trace.
var (
	spanExporter     *tracetest.InMemoryExporter
	installProvider  sync.Once
	tracingEnvOption = withOptions(func(o *server.Options) { o.Tracing = true })
)

func spansProvider() *tracetest.InMemoryExporter {
	installProvider.Do(func() {
		spanExporter = tracetest.NewInMemoryExporter()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spanExporter)))
		otel.SetTextMapPropagator(propagation.TraceContext{})
	})
	return spanExporter
}

// traceCtx is a caller's trace: the traceparent to send, and its ids.
type traceCtx struct {
	traceID trace.TraceID
	spanID  trace.SpanID
}

func newTrace(t *testing.T) traceCtx {
	t.Helper()
	var tc traceCtx
	if _, err := rand.Read(tc.traceID[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(tc.spanID[:]); err != nil {
		t.Fatal(err)
	}
	return tc
}

// header is the edit that sends the traceparent (W3C Trace Context), sampled.
func (tc traceCtx) header() func(*http.Request) {
	return header("traceparent", fmt.Sprintf("00-%s-%s-01", hex.EncodeToString(tc.traceID[:]), hex.EncodeToString(tc.spanID[:])))
}

// spans are the ended spans of the trace.
func (tc traceCtx) spans() tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range spansProvider().GetSpans() {
		if s.SpanContext.TraceID() == tc.traceID {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, s tracetest.SpanStub, key attribute.Key, want string) {
	t.Helper()
	v, ok := attr(s, key)
	if !ok || v.String() != want {
		t.Errorf("span %q: %s = %q (set %v), want %q", s.Name, key, v.String(), ok, want)
	}
}

// serverSpans are the HTTP server spans of the trace, by name.
func serverSpans(t *testing.T, all tracetest.SpanStubs, tc traceCtx) map[string][]tracetest.SpanStub {
	t.Helper()
	out := map[string][]tracetest.SpanStub{}
	for _, s := range all {
		if s.SpanKind != trace.SpanKindServer {
			continue
		}
		if s.Parent.SpanID() != tc.spanID || !s.Parent.IsRemote() {
			t.Errorf("server span %q has parent %s, want the caller's %s", s.Name, s.Parent.SpanID(), tc.spanID)
		}
		out[s.Name] = append(out[s.Name], s)
	}
	return out
}

// children are the spans whose parent is span p, by name.
func children(all tracetest.SpanStubs, p tracetest.SpanStub) map[string]tracetest.SpanStub {
	out := map[string]tracetest.SpanStub{}
	for _, s := range all {
		if s.Parent.SpanID() == p.SpanContext.SpanID() && s.Parent.TraceID() == p.SpanContext.TraceID() {
			out[s.Name] = s
		}
	}
	return out
}

// assertNoSecrets fails if any span name, attribute or event attribute of the trace contains
// one of secrets.
func assertNoSecrets(t *testing.T, all tracetest.SpanStubs, secrets ...string) {
	t.Helper()
	check := func(where, v string) {
		for i, sec := range secrets {
			if sec != "" && strings.Contains(v, sec) {
				t.Errorf("%s contains secret #%d", where, i)
			}
		}
	}
	for _, s := range all {
		check("span name "+s.Name, s.Name)
		check("status of "+s.Name, s.Status.Description)
		for _, kv := range s.Attributes {
			check(fmt.Sprintf("span %q attribute %s", s.Name, kv.Key), kv.Value.String())
		}
		for _, ev := range s.Events {
			for _, kv := range ev.Attributes {
				check(fmt.Sprintf("span %q event %q attribute %s", s.Name, ev.Name, kv.Key), kv.Value.String())
			}
		}
	}
}

func TestTracingClientCredentials(t *testing.T) {
	spansProvider()
	e := newEnv(t, tracingEnvOption)
	tc := newTrace(t)

	rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}},
		basic("svc", e.svcSecret), tc.header(), header("X-Forwarded-For", "203.0.113.9"))
	if rec.Code != http.StatusOK {
		t.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	decode(t, rec.Body.Bytes(), &resp)

	all := tc.spans()
	byName := serverSpans(t, all, tc)
	if len(byName["POST /token"]) != 1 {
		t.Fatalf("server spans %v, want one POST /token", keys(byName))
	}
	srv := byName["POST /token"][0]
	wantAttr(t, srv, "http.route", "/token")
	wantAttr(t, srv, "http.request.method", "POST")
	wantAttr(t, srv, "http.response.status_code", "200")
	wantAttr(t, srv, "latchkey.endpoint", "token")
	wantAttr(t, srv, "latchkey.grant_type", "client_credentials")
	wantAttr(t, srv, "latchkey.client_id", "svc")
	wantAttr(t, srv, "latchkey.outcome", "ok")
	wantAttr(t, srv, "latchkey.request_id", rec.Header().Get("X-Request-Id"))
	// No trusted proxy is configured: the forwarded address is not believed (RFC 9700 §4.13).
	wantAttr(t, srv, "client.address", "192.0.2.1")

	kids := children(all, srv)
	for _, name := range []string{"clients.Lookup", "clients.Credentials", "keyring.Signer", "accesstoken.Sign", "store.RecordAccessToken"} {
		s, ok := kids[name]
		if !ok {
			t.Errorf("no span %q under POST /token; children: %v", name, keys(kids))
			continue
		}
		wantAttr(t, s, "latchkey.outcome", "ok")
		if s.Status.Code == codes.Error {
			t.Errorf("span %q has status error", name)
		}
	}
	wantAttr(t, kids["clients.Lookup"], "latchkey.client_id", "svc")
	wantAttr(t, kids["clients.Credentials"], "latchkey.client_id", "svc")
	wantAttr(t, kids["store.RecordAccessToken"], "latchkey.client_id", "svc")
	wantAttr(t, kids["accesstoken.Sign"], "latchkey.client_id", "svc")
	wantAttr(t, kids["accesstoken.Sign"], "latchkey.key.alg", "ES256")
	jti := ""
	if hdr, claims := jwtParts(t, resp.AccessToken); hdr["kid"] != nil {
		wantAttr(t, kids["accesstoken.Sign"], "latchkey.key.id", hdr["kid"].(string))
		wantAttr(t, kids["keyring.Signer"], "latchkey.key.id", hdr["kid"].(string))
		jti, _ = claims["jti"].(string)
	}
	if jti == "" {
		t.Fatal("token has no kid or jti")
	}
	assertNoSecrets(t, all, resp.AccessToken, strings.Split(resp.AccessToken, ".")[2], jti, e.svcSecret,
		clientsBasic("svc", e.svcSecret))

	// The published keys come from the keyring too.
	jwks := newTrace(t)
	r := httptest.NewRequest(http.MethodGet, "/jwks", nil)
	jwks.header()(r)
	if rec := e.do(r); rec.Code != http.StatusOK {
		t.Fatalf("jwks: %d", rec.Code)
	}
	jwksSpans := jwks.spans()
	if srv := serverSpans(t, jwksSpans, jwks)["GET /jwks"]; len(srv) != 1 {
		t.Errorf("no GET /jwks span")
	} else if k, ok := children(jwksSpans, srv[0])["keyring.JWKS"]; !ok {
		t.Errorf("no keyring.JWKS span under GET /jwks")
	} else {
		wantAttr(t, k, "latchkey.outcome", "ok")
	}
}

func clientsBasic(id, secret string) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	basic(id, secret)(r)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTracingCodeFlowAndRefresh(t *testing.T) {
	spansProvider()
	e := newFlowEnv(t, []envOption{tracingEnvOption})
	tc := newTrace(t)

	p := newPKCE()
	b := e.browser(t)
	b.edit = tc.header()
	q := authz("spa", spaRedirect, "openid offline_access read", p)
	code := e.codeFrom(t, b.signIn(q, "alice", alicePassword), spaRedirect, "st-spa")
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.verifier},
		"redirect_uri": {spaRedirect}, "client_id": {"spa"}}
	first := e.tokensFrom(t, e.post("/token", exchange, tc.header()))
	second := e.tokensFrom(t, e.post("/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {first.RefreshToken}, "client_id": {"spa"}}, tc.header()))
	// A replay of the rotated refresh token: refused, and the family revoked (OAuth 2.1 §4.3.1).
	if rec := e.post("/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {first.RefreshToken}, "client_id": {"spa"}}, tc.header()); rec.Code != http.StatusBadRequest {
		t.Fatalf("replayed refresh token: %d %s", rec.Code, rec.Body)
	}

	all := tc.spans()
	byName := serverSpans(t, all, tc)
	for _, name := range []string{"GET /authorize", "GET /login", "POST /login"} {
		if len(byName[name]) != 1 {
			t.Errorf("%d server spans %q, want 1; all: %v", len(byName[name]), name, keys(byName))
		}
	}
	tokenSpans := byName["POST /token"]
	if len(tokenSpans) != 3 {
		t.Fatalf("%d POST /token spans, want 3", len(tokenSpans))
	}
	// The store call that decided each request, by grant and outcome.
	var redeemed, rotated, reused bool
	for _, s := range tokenSpans {
		kids := children(all, s)
		grant, _ := attr(s, "latchkey.grant_type")
		outcome, _ := attr(s, "latchkey.outcome")
		switch {
		case grant.String() == "authorization_code":
			wantAttr(t, s, "latchkey.outcome", "ok")
			for _, name := range []string{"clients.Lookup", "store.GetCode", "store.RedeemCode", "keyring.Signer", "accesstoken.Sign"} {
				if _, ok := kids[name]; !ok {
					t.Errorf("no span %q under the code exchange; children: %v", name, keys(kids))
				}
			}
			wantAttr(t, kids["store.RedeemCode"], "latchkey.client_id", "spa")
			wantAttr(t, kids["store.RedeemCode"], "latchkey.outcome", "ok")
			redeemed = true
		case grant.String() == "refresh_token" && outcome.String() == "ok":
			wantAttr(t, kids["store.RotateRefresh"], "latchkey.client_id", "spa")
			wantAttr(t, kids["store.RotateRefresh"], "latchkey.outcome", "ok")
			rotated = true
		case grant.String() == "refresh_token":
			wantAttr(t, s, "latchkey.outcome", "invalid_grant")
			wantAttr(t, s, "http.response.status_code", "400")
			rot := kids["store.RotateRefresh"]
			wantAttr(t, rot, "latchkey.outcome", "refresh_reused")
			// A refusal the protocol expects is not an error of the server.
			if rot.Status.Code == codes.Error {
				t.Error("store.RotateRefresh of a replay has status error")
			}
			reused = true
		}
	}
	if !redeemed || !rotated || !reused {
		t.Errorf("token spans: redeemed %v, rotated %v, reused %v; want all", redeemed, rotated, reused)
	}
	var sawCreateCode bool
	for _, s := range all {
		if s.Name == "store.CreateCode" {
			sawCreateCode = true
			wantAttr(t, s, "latchkey.client_id", "spa")
		}
	}
	if !sawCreateCode {
		t.Error("no store.CreateCode span")
	}

	secrets := []string{first.AccessToken, first.RefreshToken, first.IDToken, second.AccessToken,
		second.RefreshToken, second.IDToken, code, store.Hash(code), p.verifier, p.challenge,
		q.Get("state"), q.Get("nonce"), alicePassword}
	for _, rt := range []string{first.RefreshToken, second.RefreshToken} {
		if _, hash, ok := tokenid.ParseRefreshToken(rt); ok {
			secrets = append(secrets, hash, store.Hash(hash))
		}
	}
	for _, c := range b.jar {
		secrets = append(secrets, c.Value, store.Hash(c.Value))
	}
	assertNoSecrets(t, all, secrets...)
}

func TestTracingSpanNamesAreRoutes(t *testing.T) {
	spansProvider()
	e := newEnv(t, tracingEnvOption)
	tc := newTrace(t)

	for _, r := range []*http.Request{
		// Unrouted: named by the method alone, never by the client's path.
		httptest.NewRequest(http.MethodGet, "/no/such/path/eyJhbGciOi", nil),
		// A method the route does not allow: the route, and the method.
		httptest.NewRequest(http.MethodGet, "/token", nil),
		// A method no convention knows: "HTTP", so a client cannot mint span names.
		httptest.NewRequest("BREW", "/token", nil),
		// Probes are not traced.
		httptest.NewRequest(http.MethodGet, "/healthz", nil),
		httptest.NewRequest(http.MethodGet, "/readyz", nil),
	} {
		tc.header()(r)
		e.do(r)
	}
	got := map[string]bool{}
	for name := range serverSpans(t, tc.spans(), tc) {
		got[name] = true
	}
	want := map[string]bool{"GET": true, "GET /token": true, "HTTP /token": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server span names %v, want %v", keys(got), keys(want))
	}
}

func TestTracingOff(t *testing.T) {
	spansProvider()
	e := newEnv(t) // Options.Tracing false, with a global provider installed
	tc := newTrace(t)
	rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret), tc.header())
	if rec.Code != http.StatusOK {
		t.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	if n := len(tc.spans()); n != 0 {
		t.Errorf("%d spans with tracing off, want none", n)
	}
}

// A store outage is a failed store span, under a failed HTTP span: the one place a trace
// shows where a 503 came from.
func TestTracingStoreOutage(t *testing.T) {
	spansProvider()
	e := newEnv(t, tracingEnvOption)
	e.redis.Kill()
	tc := newTrace(t)
	rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret), tc.header())
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("token with Redis down: %d %s", rec.Code, rec.Body)
	}
	all := tc.spans()
	srvSpans := serverSpans(t, all, tc)["POST /token"]
	if len(srvSpans) != 1 {
		t.Fatalf("%d POST /token spans, want 1", len(srvSpans))
	}
	srv := srvSpans[0]
	wantAttr(t, srv, "latchkey.outcome", "temporarily_unavailable")
	if srv.Status.Code != codes.Error {
		t.Errorf("server span status %v, want error", srv.Status.Code)
	}
	rat, ok := children(all, srv)["store.RecordAccessToken"]
	if !ok {
		t.Fatal("no store.RecordAccessToken span")
	}
	wantAttr(t, rat, "latchkey.outcome", "unavailable")
	if rat.Status.Code != codes.Error {
		t.Errorf("store span status %v, want error", rat.Status.Code)
	}
	if len(rat.Events) != 0 || rat.Status.Description != "unavailable" {
		t.Errorf("store span records the error's text: events %v, status %q", rat.Events, rat.Status.Description)
	}
	assertNoSecrets(t, all, e.svcSecret, e.redis.Addr)
}

// BenchmarkClientCredentialsTraced is BenchmarkClientCredentials with tracing on, every request
// sampled, its spans handed to an in-memory exporter (cleared as it goes): the cost of the
// spans themselves, without any export.
func BenchmarkClientCredentialsTraced(b *testing.B) {
	exp := spansProvider()
	keys := servertest.NewSigningKey(b, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, time.Now())
	svc, svcSecret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"))
	st, _ := servertest.RedisStore(b)
	srv, err := server.New(server.Options{
		Issuer:    servertest.Issuer,
		Namespace: servertest.Namespace,
		Reader:    servertest.NewReader(append(keys.Objects(), svc, svcSecret)...),
		Store:     st,
		Clock:     clock.RealClock{},
		Tracing:   true,
	})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	auth := clients.EncodeBasic("svc", servertest.SecretOf(svcSecret))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=client_credentials&scope=read"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if i%1000 == 999 {
			exp.Reset()
		}
	}
}
