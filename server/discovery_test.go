package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

const wantMetadata = `{
 "issuer": "https://auth.example.test",
 "authorization_endpoint": "https://auth.example.test/authorize",
 "token_endpoint": "https://auth.example.test/token",
 "jwks_uri": "https://auth.example.test/jwks",
 "introspection_endpoint": "https://auth.example.test/introspect",
 "revocation_endpoint": "https://auth.example.test/revoke",
 "response_types_supported": ["code"],
 "response_modes_supported": ["query"],
 "grant_types_supported": GRANTS,
 "code_challenge_methods_supported": ["S256"],
 "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
 "token_endpoint_auth_signing_alg_values_supported": ALGS,
 "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
 "introspection_endpoint_auth_signing_alg_values_supported": ALGS,
 "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
 "revocation_endpoint_auth_signing_alg_values_supported": ALGS,
 "authorization_response_iss_parameter_supported": true,
 "userinfo_endpoint": "https://auth.example.test/userinfo",
 "scopes_supported": ["openid", "profile", "email", "offline_access"],
 "subject_types_supported": ["public"],
 "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
 "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
  "email", "email_verified", "name", "preferred_username"],
 "prompt_values_supported": ["none", "login", "consent"]
}`

const clientAlgs = `["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","ES512","EdDSA"]`

// Case 73, 74: one document at both addresses, from the configuration, whatever the headers.
func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	get := func(path string, edits ...func(*http.Request)) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		for _, edit := range edits {
			edit(req)
		}
		return e.do(req)
	}
	a := get("/.well-known/oauth-authorization-server")
	b := get("/.well-known/openid-configuration",
		func(r *http.Request) { r.Host = "evil.example" },
		header("X-Forwarded-Host", "evil.example"),
		header("X-Forwarded-Proto", "http"),
		header("Forwarded", "host=evil.example;proto=http"))
	if a.Code != 200 || b.Code != 200 || !bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) {
		t.Fatalf("documents differ:\n%s\n%s", a.Body, b.Body)
	}
	if a.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("content type %q", a.Header().Get("Content-Type"))
	}
	var m struct {
		GrantTypes []string `json:"grant_types_supported"`
	}
	decode(t, a.Body.Bytes(), &m)
	if !contains(m.GrantTypes, "client_credentials") {
		t.Fatalf("grant_types_supported %v lacks client_credentials", m.GrantTypes)
	}
	grants, _ := json.Marshal(m.GrantTypes)
	want := strings.NewReplacer("GRANTS", string(grants), "ALGS", clientAlgs).Replace(wantMetadata)
	assertJSON(t, a.Body.Bytes(), want)

	// What is advertised is enforced: every advertised grant is dispatched (not
	// unsupported_grant_type), and every advertised auth method is accepted by the endpoint.
	for _, g := range m.GrantTypes {
		rec := e.post("/token", url.Values{"grant_type": {g}}, basic("svc", e.svcSecret))
		var body struct{ Error string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if body.Error == "unsupported_grant_type" {
			t.Fatalf("advertised grant %s is not dispatched", g)
		}
	}
}

// An issuer with a path serves under it, and RFC 8414 §3 puts the well-known suffix first.
func TestDiscoveryIssuerWithPath(t *testing.T) {
	e := newEnv(t, withIssuer("https://example.test/auth"))
	for _, path := range []string{"/.well-known/oauth-authorization-server/auth", "/auth/.well-known/openid-configuration",
		"/auth/.well-known/oauth-authorization-server"} {
		rec := e.do(httptest.NewRequest(http.MethodGet, path, nil))
		var m map[string]any
		decode(t, rec.Body.Bytes(), &m)
		if m["issuer"] != "https://example.test/auth" || m["token_endpoint"] != "https://example.test/auth/token" {
			t.Fatalf("%s: %v", path, m)
		}
	}
	if rec := e.post("/auth/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret)); rec.Code != 200 {
		t.Fatalf("token under the issuer path: %d %s", rec.Code, rec.Body)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Case 70, 75, 72: the JWKS.
func TestJWKS(t *testing.T) {
	now := servertest.Epoch
	second := servertest.NewSigningKey(t, servertest.Namespace, "internal", latchkeyv1.AlgorithmEdDSA, now)
	second.SigningKey.Spec.PrePublish = &metav1.Duration{Duration: 2 * time.Minute}
	revoked := second.AddKey(t, now.Add(time.Hour), now.Add(48*time.Hour))
	second.SigningKey.Spec.RevokedKeyIDs = []string{revoked.KeyID}
	// Publish the default key in the second ConfigMap too: the JWKS must list it once.
	e := newEnv(t, withObjects(second.Objects()...))
	second.Publish(t, e.keys.Keys[0].PublicJWK())
	servertest.Update(t, e.reader, second.ConfigMap)

	rec := e.do(httptest.NewRequest(http.MethodGet, "/jwks", nil))
	if rec.Code != 200 || rec.Header().Get("Cache-Control") != "public, max-age=120" {
		t.Fatalf("%d Cache-Control %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	decode(t, rec.Body.Bytes(), &raw)
	kids := map[string]bool{}
	for _, k := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Fatalf("key %v has private member %s", k["kid"], private)
			}
		}
		kid, _ := k["kid"].(string)
		if kid == "" || kids[kid] || k["use"] != "sig" || k["alg"] == nil {
			t.Fatalf("bad or duplicate key %v", k)
		}
		kids[kid] = true
	}
	want := map[string]bool{e.keys.Keys[0].KeyID: true, second.Keys[0].KeyID: true}
	if len(kids) != len(want) || !kids[e.keys.Keys[0].KeyID] || !kids[second.Keys[0].KeyID] || kids[revoked.KeyID] {
		t.Fatalf("kids %v, want %v without the revoked %s", kids, want, revoked.KeyID)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			t.Fatalf("key %s is not a valid public key", k.KeyID)
		}
	}
}

// Case 75 with the default prePublish: max-age is capped at 5 minutes.
func TestJWKSMaxAgeCap(t *testing.T) {
	e := newEnv(t)
	rec := e.do(httptest.NewRequest(http.MethodGet, "/jwks", nil))
	if got := rec.Header().Get("Cache-Control"); got != "public, max-age=300" {
		t.Fatalf("Cache-Control %q", got)
	}
}

// Case 99: CORS.
func TestCORS(t *testing.T) {
	e := newEnv(t)
	const app = "https://app.example.test"
	cc := url.Values{"grant_type": {"client_credentials"}}
	for _, tc := range []struct {
		origin, want string
	}{
		{app, app},
		{"https://evil.example.test", ""},
		{"null", ""},
		{"https://app.example.test.evil.example", ""},
		{"", ""},
	} {
		rec := e.post("/token", cc, basic("svc", e.svcSecret), header("Origin", tc.origin))
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tc.want {
			t.Fatalf("token, Origin %q: ACAO %q, want %q", tc.origin, got, tc.want)
		}
		if rec.Header().Get("Access-Control-Allow-Credentials") != "" {
			t.Fatal("Access-Control-Allow-Credentials set")
		}
		if tc.origin != "" && rec.Header().Get("Vary") != "Origin" {
			t.Fatalf("Vary %q", rec.Header().Get("Vary"))
		}
		for _, path := range []string{"/jwks", "/.well-known/openid-configuration"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Origin", tc.origin)
			if got := e.do(req).Header().Get("Access-Control-Allow-Origin"); got != tc.want {
				t.Fatalf("%s, Origin %q: ACAO %q", path, tc.origin, got)
			}
		}
	}
	for _, path := range []string{"/token", "/introspect", "/revoke"} {
		req := httptest.NewRequest(http.MethodOptions, path, nil)
		req.Header.Set("Origin", app)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		rec := e.do(req)
		h := rec.Header()
		if rec.Code != 204 || h.Get("Access-Control-Allow-Origin") != app || h.Get("Access-Control-Allow-Methods") != "POST" ||
			h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" {
			t.Fatalf("preflight %s: %d %v", path, rec.Code, h)
		}
		req.Header.Set("Origin", "https://evil.example.test")
		if got := e.do(req).Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("preflight %s from an unregistered origin: ACAO %q", path, got)
		}
		req.Header.Set("Origin", "null")
		if got := e.do(req).Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("preflight %s from null: ACAO %q", path, got)
		}
	}
	// The introspection and revocation endpoints follow the authenticated client.
	tok := e.cc(nil)
	for _, path := range []string{"/introspect", "/revoke"} {
		rec := e.post(path, url.Values{"token": {tok}}, basic("svc", e.svcSecret), header("Origin", app))
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != app {
			t.Fatalf("%s: ACAO %q", path, got)
		}
	}
}

// Case 16 for the JSON endpoints, and request ids.
func TestSecurityHeadersAndRequestID(t *testing.T) {
	e := newEnv(t)
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/jwks", nil),
		httptest.NewRequest(http.MethodGet, "/healthz", nil),
		httptest.NewRequest(http.MethodGet, "/nowhere", nil),
		httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("")),
	} {
		rec := e.do(req)
		h := rec.Header()
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'" {
			t.Fatalf("%s %s: headers %v", req.Method, req.URL.Path, h)
		}
		if len(h.Get("X-Request-Id")) != 32 {
			t.Fatalf("request id %q", h.Get("X-Request-Id"))
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	if got := e.do(req).Header().Get("X-Request-Id"); got != "abc-123" {
		t.Fatalf("request id %q not echoed", got)
	}
	req.Header.Set("X-Request-Id", "bad id\r\nx")
	if got := e.do(req).Header().Get("X-Request-Id"); got == "bad id\r\nx" || len(got) != 32 {
		t.Fatalf("unsafe request id echoed: %q", got)
	}
}
