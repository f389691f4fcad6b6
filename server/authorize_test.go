package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// assertErrorPage checks an authorization error that must not redirect: an HTML page with
// status, the page headers, and no Location (OAuth 2.1 §4.1.2.1).
func assertErrorPage(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; Location %q; body %s", rec.Code, status, rec.Header().Get("Location"), rec.Body)
	}
	if loc := rec.Header().Get("Location"); loc != "" {
		t.Fatalf("an error page with Location %q", loc)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("content type %q", ct)
	}
	if code != "" && !strings.Contains(rec.Body.String(), "<code>"+code+"</code>") {
		t.Fatalf("the page does not show %s: %s", code, rec.Body)
	}
	assertPageHeaders(t, rec)
}

// assertPageHeaders checks the anti-framing and referrer headers of every page and redirect of
// the flow (SECURITY-CASES 16), and that no CORS header is sent (SECURITY-CASES 99).
func assertPageHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	h := rec.Header()
	csp := h.Get("Content-Security-Policy")
	if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") ||
		!strings.Contains(csp, "script-src 'self'") || h.Get("Referrer-Policy") != "no-referrer" ||
		h.Get("Cache-Control") != "no-store" {
		t.Fatalf("page headers: XFO %q, CSP %q, Referrer-Policy %q, Cache-Control %q",
			h.Get("X-Frame-Options"), csp, h.Get("Referrer-Policy"), h.Get("Cache-Control"))
	}
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Fatalf("CORS header %s on a page of the flow", k)
		}
	}
}

// Case 1: an unregistered redirect_uri is an error page, never a redirect, whatever the
// variant of a registered one it is.
func TestAuthorizeUnregisteredRedirectURIIsAnErrorPage(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	for _, uri := range []string{
		"https://evil.example/cb",
		"https://web.example.test/cb/",               // trailing slash
		"https://WEB.example.test/cb",                // case of the host
		"HTTPS://web.example.test/cb",                // case of the scheme
		"https://web.example.test/CB",                // case of the path
		"https://web.example.test/cb?x=1",            // an added query
		"https://web.example.test/cb#frag",           // a fragment
		"https://web.example.test/cb/../cb",          // dot segments
		"https://web.example.test/c%62",              // an encoded character
		"https://web.example.test:443/cb",            // an explicit default port
		"https://user@web.example.test/cb",           // user info
		"https://web.example.test.evil.example/cb",   // a suffix domain
		"https://web.example.test/cb\\@evil.example", // a backslash
		"http://127.0.0.1/callback",                  // another client's (spa's) URI
		"https://web.example.test/cb https://evil.example",
	} {
		t.Run(uri, func(t *testing.T) {
			rec := b.authorize(authz("web", uri, "openid", p))
			assertErrorPage(t, rec, http.StatusBadRequest, "invalid_request")
		})
	}
	// The loopback exception is for 127.0.0.1 and [::1] only, never "localhost" (RFC 8252 §8.3).
	for _, uri := range []string{"http://localhost/callback", "http://localhost:8080/callback", "http://127.0.0.1:8080/callback/",
		"http://127.0.0.2/callback", "http://127.0.0.1:0/callback", "http://127.0.0.1:65536/callback"} {
		t.Run(uri, func(t *testing.T) {
			assertErrorPage(t, b.authorize(authz("spa", uri, "openid", p)), http.StatusBadRequest, "invalid_request")
		})
	}
}

// Case 4: a client with two redirect URIs must name one; a client with exactly one may omit it.
func TestAuthorizeRedirectURIRequiredWithSeveral(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	assertErrorPage(t, b.authorize(authz("web", "", "openid", p)), http.StatusBadRequest, "invalid_request")
	if u := location(t, b.authorize(authz("spa", "", "openid", p))); u.Path != "/login" {
		t.Fatalf("spa without redirect_uri went to %s", u)
	}
	// The loopback URI matches on any port (RFC 8252 §7.3), and the response goes to that port.
	b2 := e.browser(t)
	rec := b2.signIn(authz("spa", "http://127.0.0.1:51004/callback", "openid", p), "alice", alicePassword)
	e.codeFrom(t, rec, "http://127.0.0.1:51004/callback", "st-spa")
}

// Case 5: a missing or unknown client_id, or a client that is not Ready, is an error page, even
// with a redirect_uri registered to another client.
func TestAuthorizeUnknownClientIsAnErrorPage(t *testing.T) {
	for _, reason := range []string{latchkeyv1.ReasonInvalidSpec, latchkeyv1.ReasonClientIDConflict} {
		t.Run("not Ready: "+reason, func(t *testing.T) {
			e := newFlowEnv(t, nil, func(spa, _ *latchkeyv1.OAuthClient) {
				servertest.SetReady(spa, metav1.ConditionFalse, reason)
			})
			rec := e.browser(t).authorize(authz("spa", spaRedirect, "openid", newPKCE()))
			assertErrorPage(t, rec, http.StatusBadRequest, "invalid_client")
		})
	}
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	for name, clientID := range map[string]string{"unknown": "nobody", "missing": "", "case changed": "SPA", "padded": "spa "} {
		t.Run(name, func(t *testing.T) {
			q := authz(clientID, spaRedirect, "openid", newPKCE())
			rec := b.authorize(q)
			if clientID == "" {
				assertErrorPage(t, rec, http.StatusBadRequest, "invalid_request")
				return
			}
			assertErrorPage(t, rec, http.StatusBadRequest, "invalid_client")
		})
	}
}

// Case 6, 7: once client and redirect URI are verified, errors redirect with error, the exact
// state and iss; no token ever appears in the URL.
func TestAuthorizeErrorsRedirectOnceVerified(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	for _, tt := range []struct {
		name string
		edit func(url.Values)
		want string
	}{
		{"scope not registered", func(q url.Values) { q.Set("scope", "openid bogus") }, "invalid_scope"},
		{"scope with a control character", func(q url.Values) { q.Set("scope", "openid profile\ninjected") }, "invalid_scope"},
		{"scope with a tab", func(q url.Values) { q.Set("scope", "openid\tread") }, "invalid_scope"},
		{"scope with a double space", func(q url.Values) { q.Set("scope", "openid  read") }, "invalid_scope"},
		{"scope with a quote", func(q url.Values) { q.Set("scope", `openid "read"`) }, "invalid_scope"},
		{"scope in another case", func(q url.Values) { q.Set("scope", "OpenID") }, "invalid_scope"},
		{"scope not ASCII", func(q url.Values) { q.Set("scope", "öpenid") }, "invalid_scope"},
		{"response_type missing", func(q url.Values) { q.Del("response_type") }, "invalid_request"},
		{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"response_type id_token", func(q url.Values) { q.Set("response_type", "id_token") }, "unsupported_response_type"},
		{"response_type code id_token", func(q url.Values) { q.Set("response_type", "code id_token") }, "unsupported_response_type"},
		{"response_type code token", func(q url.Values) { q.Set("response_type", "code token") }, "unsupported_response_type"},
		{"response_type id_token code", func(q url.Values) { q.Set("response_type", "id_token code") }, "unsupported_response_type"},
		{"response_type Code", func(q url.Values) { q.Set("response_type", "Code") }, "unsupported_response_type"},
		{"response_type none", func(q url.Values) { q.Set("response_type", "none") }, "unsupported_response_type"},
		{"response_mode fragment", func(q url.Values) { q.Set("response_mode", "fragment") }, "invalid_request"},
		{"response_mode form_post", func(q url.Values) { q.Set("response_mode", "form_post") }, "invalid_request"},
		{"request object", func(q url.Values) { q.Set("request", "eyJhbGciOiJub25lIn0.e30.") }, "request_not_supported"},
		{"request_uri", func(q url.Values) { q.Set("request_uri", "urn:ietf:params:oauth:request_uri:x") }, "request_uri_not_supported"},
		{"prompt unknown", func(q url.Values) { q.Set("prompt", "select_account") }, "invalid_request"},
		{"prompt none with login", func(q url.Values) { q.Set("prompt", "none login") }, "invalid_request"},
		{"max_age negative", func(q url.Values) { q.Set("max_age", "-1") }, "invalid_request"},
		{"max_age not a number", func(q url.Values) { q.Set("max_age", "1e3") }, "invalid_request"},
		{"max_age with a sign", func(q url.Values) { q.Set("max_age", "+60") }, "invalid_request"},
		{"max_age padded", func(q url.Values) { q.Set("max_age", "060") }, "invalid_request"},
		{"nonce too long", func(q url.Values) { q.Set("nonce", strings.Repeat("n", 513)) }, "invalid_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := authz("spa", spaRedirect, "openid", newPKCE())
			q.Set("state", "st&=+ é/?x")
			tt.edit(q)
			rec := b.authorize(q)
			assertPageHeaders(t, rec)
			if got := authzError(t, rec, spaRedirect, "st&=+ é/?x"); got != tt.want {
				t.Fatalf("error %s, want %s", got, tt.want)
			}
			loc := rec.Header().Get("Location")
			for _, tokenish := range []string{"access_token", "id_token=", "code="} {
				if strings.Contains(loc, tokenish) {
					t.Fatalf("%q in %s", tokenish, loc)
				}
			}
		})
	}
	// A client not allowed the code grant is told so at its verified redirect URI.
	cc, ccSecret := servertest.ConfidentialClient("cc", "apps", servertest.WithClientID("cc"),
		servertest.WithRedirectURIs("https://cc.example.test/cb"))
	e2 := newFlowEnv(t, []envOption{withObjects(cc, ccSecret)})
	rec := e2.browser(t).authorize(authz("cc", "https://cc.example.test/cb", "read", newPKCE()))
	if got := authzError(t, rec, "https://cc.example.test/cb", "st-cc"); got != "unauthorized_client" {
		t.Fatalf("error %s", got)
	}
}

// Case 18, 19: PKCE S256 is required of every client, public and confidential.
func TestAuthorizePKCERequired(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	valid := newPKCE().challenge
	for _, tt := range []struct {
		name              string
		challenge, method string
		omitMethod        bool
	}{
		{"no challenge", "", "S256", false},
		{"no challenge and no method", "", "", true},
		{"method plain", valid, "plain", false},
		{"method omitted (means plain)", valid, "", true},
		{"method s256", valid, "s256", false},
		{"method S512", valid, "S512", false},
		{"method S256 with a space", valid, "S256 ", false},
		{"challenge of 42 characters", strings.Repeat("a", 42), "S256", false},
		{"challenge of 129 characters", strings.Repeat("a", 129), "S256", false},
		{"challenge with a +", strings.Repeat("a", 42) + "+", "S256", false},
		{"challenge with a /", strings.Repeat("a", 42) + "/", "S256", false},
		{"challenge with =", strings.Repeat("a", 42) + "=", "S256", false},
		{"challenge with a space", strings.Repeat("a", 42) + " ", "S256", false},
		{"challenge not ASCII", strings.Repeat("a", 42) + "é", "S256", false},
	} {
		for _, client := range []struct{ id, redirect string }{{"spa", spaRedirect}, {"web", webRedirect}} {
			t.Run(tt.name+"/"+client.id, func(t *testing.T) {
				q := authz(client.id, client.redirect, "openid", pkcePair{challenge: tt.challenge})
				q.Set("code_challenge_method", tt.method)
				if tt.omitMethod {
					q.Del("code_challenge_method")
				}
				if got := authzError(t, b.authorize(q), client.redirect, "st-"+client.id); got != "invalid_request" {
					t.Fatalf("error %s, want invalid_request", got)
				}
			})
		}
	}
	// Empty values are absent (case 10): an empty challenge is a missing one.
	q := authz("spa", spaRedirect, "openid", newPKCE())
	q.Set("code_challenge", "")
	if got := authzError(t, b.authorize(q), spaRedirect, "st-spa"); got != "invalid_request" {
		t.Fatalf("error %s", got)
	}
}

// Case 10: unknown and empty parameters, scope order, parameter order, no state, a long state.
func TestAuthorizeToleratesWhatItShould(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	e.logs.forbid(p.verifier)
	// Sign in once so every authorization below answers at once with a code.
	e.codeFrom(t, b.signIn(authz("spa", spaRedirect, "openid", p), "alice", alicePassword), spaRedirect, "st-spa")

	longState := strings.Repeat("s-~.!*'()é;,/?:@&=+$", 2048/20+1)[:2048]
	for _, tt := range []struct {
		name  string
		raw   func(q url.Values) string
		state string
	}{
		{"an unknown parameter", func(q url.Values) string { q.Set("extra", "foobar"); return q.Encode() }, "st-spa"},
		{"empty parameters are absent", func(q url.Values) string {
			q.Set("nonce", "")
			q.Set("max_age", "")
			q.Set("prompt", "")
			return q.Encode()
		}, "st-spa"},
		{"reversed scope order", func(q url.Values) string { q.Set("scope", "read profile openid"); return q.Encode() }, "st-spa"},
		{"duplicate scope values", func(q url.Values) string { q.Set("scope", "openid openid read"); return q.Encode() }, "st-spa"},
		{"reordered query", func(q url.Values) string {
			parts := strings.Split(q.Encode(), "&")
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
			return strings.Join(parts, "&")
		}, "st-spa"},
		{"no state", func(q url.Values) string { q.Del("state"); return q.Encode() }, ""},
		{"a 2 KiB state, echoed byte for byte", func(q url.Values) string { q.Set("state", longState); return q.Encode() }, longState},
		{"a state of spaces and percent signs", func(q url.Values) string { q.Set("state", " %20 %% "); return q.Encode() }, " %20 %% "},
		{"no scope: the client's registered scopes", func(q url.Values) string { q.Del("scope"); return q.Encode() }, "st-spa"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := b.get("/authorize?" + tt.raw(authz("spa", spaRedirect, "openid profile read", p)))
			e.codeFrom(t, rec, spaRedirect, tt.state)
		})
	}
	// Over the documented limit: invalid_request, without the state (it is never truncated).
	q := authz("spa", spaRedirect, "openid", p)
	q.Set("state", strings.Repeat("x", 4097))
	if got := authzError(t, b.authorize(q), spaRedirect, ""); got != "invalid_request" {
		t.Fatalf("error %s", got)
	}
	// POST works like GET (OpenID Connect Core §3.1.2.1).
	req := httptest.NewRequest(http.MethodPost, "/authorize", strings.NewReader(authz("spa", spaRedirect, "openid", p).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	e.codeFrom(t, b.do(req), spaRedirect, "st-spa")
}

// Duplicate parameters and malformed queries are an error page: which of two client_ids,
// redirect_uris or states was meant cannot be known, so nothing is redirected anywhere.
func TestAuthorizeMalformedQueryIsAnErrorPage(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	base := authz("spa", spaRedirect, "openid", newPKCE()).Encode()
	for _, raw := range []string{
		base + "&state=other",
		base + "&redirect_uri=" + url.QueryEscape("http://127.0.0.1:9/callback"),
		base + "&client_id=web",
		base + "&code_challenge_method=S256",
		base + "&Scope=openid&scope=read", // names are case-sensitive: "scope" is repeated
		base + "&response_type=code",
		base + "&x=%zz",
		base + "&x=%ff",
		base + ";x=1",
		base + strings.Repeat("&p=1", 70),
	} {
		rec := b.get("/authorize?" + raw)
		assertErrorPage(t, rec, http.StatusBadRequest, "invalid_request")
	}
	// A GET with no query at all.
	assertErrorPage(t, b.get("/authorize"), http.StatusBadRequest, "invalid_request")
	// Other methods are not served.
	if rec := b.do(httptest.NewRequest(http.MethodPut, "/authorize", nil)); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("PUT /authorize: %d", rec.Code)
	}
}

// Case 12, decision D3: a bad request from a registered client with a valid redirect URI, from
// a browser with no session, redirects at once with the error. The user is not asked to sign
// in first: the redirect URI was registered by a tenant with RBAC rights on an OAuthClient, so
// the bounce is to a known party, and a login for a request that fails anyway helps nobody.
func TestAuthorizeBadRequestRedirectsBeforeLogin(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	q := authz("spa", spaRedirect, "bogus", newPKCE())
	rec := b.authorize(q)
	if got := authzError(t, rec, spaRedirect, "st-spa"); got != "invalid_scope" {
		t.Fatalf("error %s", got)
	}
	if b.cookie("latchkey-session") != "" || b.cookie("__Host-latchkey-session") != "" {
		t.Fatal("a session without a login")
	}
}

// Case 8, 11: the code arrives in the query with iss equal to discovery's issuer, and carries
// 256 bits.
func TestAuthorizeCodeResponse(t *testing.T) {
	e := newFlowEnv(t, nil)
	rec := e.browser(t).signIn(authz("spa", spaRedirect, "openid", newPKCE()), "alice", alicePassword)
	code := e.codeFrom(t, rec, spaRedirect, "st-spa")
	disc := e.do(httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	var m struct {
		Issuer string `json:"issuer"`
	}
	decode(t, disc.Body.Bytes(), &m)
	if got := location(t, rec).Query().Get("iss"); got != m.Issuer {
		t.Fatalf("iss %q, discovery issuer %q", got, m.Issuer)
	}
	_, secret, _ := strings.Cut(code, ".")
	if len(secret) < 43 {
		t.Fatalf("the code's random part %q is under 256 bits", secret)
	}
	// A registered URI with a query keeps it; the response parameters follow it.
	e2 := newFlowEnv(t, nil, func(spa, _ *latchkeyv1.OAuthClient) {
		spa.Spec.RedirectURIs = []string{"http://127.0.0.1/callback?app=1"}
	})
	rec = e2.browser(t).signIn(authz("spa", "http://127.0.0.1/callback?app=1", "openid", newPKCE()), "alice", alicePassword)
	u := location(t, rec)
	if !strings.HasPrefix(u.String(), "http://127.0.0.1/callback?app=1&code=") || u.Query().Get("iss") != servertest.Issuer {
		t.Fatalf("redirect %s", u)
	}
}

// Case 16, 99: the pages and redirects of the flow carry the anti-framing headers and no CORS
// header, even for an Origin a client registered.
func TestAuthorizePagesHeaders(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	b.edit = func(r *http.Request) { r.Header.Set("Origin", "http://127.0.0.1:5173") }
	rec := b.authorize(authz("web", webRedirect, "openid", newPKCE()))
	assertPageHeaders(t, rec)
	page := b.follow(rec)
	assertPageHeaders(t, page)
	body := page.Body.String()
	for _, third := range []string{`src="http`, `href="http`, `src="//`, `href="//`, "<script"} {
		if strings.Contains(body, third) {
			t.Fatalf("the login page loads %q", third)
		}
	}
	rec = b.submitLogin(page, "alice", alicePassword)
	assertPageHeaders(t, rec)
	consent := b.follow(rec)
	assertPageHeaders(t, consent)
	rec = b.submitConsent(consent, "allow")
	assertPageHeaders(t, rec)
	assertErrorPage(t, b.authorize(authz("nobody", webRedirect, "openid", newPKCE())), http.StatusBadRequest, "invalid_client")
	if rec := b.get("/static/latchkey.css"); rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
}
