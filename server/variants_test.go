package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/httpx"
)

// withParam returns a copy of q with name set to value.
func withParam(q url.Values, name, value string) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = v
	}
	out.Set(name, value)
	return out
}

// The tests in this file take each general rule of SECURITY-CASES.md (exact matching, no
// duplicate parameters, bounded sizes, strict encodings, fail closed) to the variants an
// attacker tries after the listed case is fixed. The mapping is in docs/security.md.

// Case 1 (variants): for a client registered with the IPv6 loopback URI, any port matches
// (RFC 8252 §7.3) and the response goes to exactly that port; every other spelling of the
// loopback address, and every change of scheme, path, query, fragment or user info, is an error
// page.
func TestAuthorizeLoopbackVariants(t *testing.T) {
	const v6 = "http://[::1]/callback"
	e := newFlowEnv(t, nil, func(spa, _ *latchkeyv1.OAuthClient) { spa.Spec.RedirectURIs = []string{v6} })
	b := e.browser(t)
	for _, uri := range []string{v6, "http://[::1]:51000/callback", "http://[::1]:1/callback", "http://[::1]:65535/callback"} {
		t.Run("accepted "+uri, func(t *testing.T) {
			p := newPKCE()
			code := e.codeFrom(t, e.browser(t).signIn(authz("spa", uri, "openid", p), "alice", alicePassword), uri, "st-spa")
			// The code is bound to the port it was sent to.
			e.tokensFrom(t, e.exchange(code, p.verifier, uri))
		})
	}
	for _, uri := range []string{
		"http://[::1]:0/callback",                  // port 0
		"http://[::1]:65536/callback",              // port out of range
		"http://[::1]:051000/callback",             // a leading zero
		"http://[::1]:/callback",                   // an empty port
		"http://[0:0:0:0:0:0:0:1]:51000/callback",  // the long form of ::1
		"http://[::ffff:127.0.0.1]:51000/callback", // IPv4-mapped
		"http://[::1%25lo]:51000/callback",         // a zone
		"http://127.0.0.1:51000/callback",          // IPv4 for an IPv6 registration
		"http://localhost:51000/callback",          // a name, which may not resolve to loopback
		"https://[::1]:51000/callback",             // another scheme
		"HTTP://[::1]:51000/callback",              // the scheme's case
		"http://[::1]:51000/callback/",             // a trailing slash
		"http://[::1]:51000/Callback",              // the path's case
		"http://[::1]:51000/c%61llback",            // percent-encoding of an unreserved character
		"http://[::1]:51000/callback%2F",           // an encoded slash
		"http://[::1]:51000/callback?x=1",          // an added query
		"http://[::1]:51000/callback?",             // an empty query
		"http://[::1]:51000/callback#",             // an empty fragment
		"http://[::1]:51000/callback#x",            // a fragment
		"http://u@[::1]:51000/callback",            // user info
		"http://[::1]:51000@evil.example/callback", // the loopback as user info of another host
		"http://[::1]:51000/callback/../callback",  // dot segments
		"http://[::1]:51000\\@evil.example/callback",
		"http://[::1]:51000/callback\t",
	} {
		t.Run("refused "+uri, func(t *testing.T) {
			assertErrorPage(t, b.authorize(authz("spa", uri, "openid", newPKCE())), http.StatusBadRequest, "invalid_request")
		})
	}
	// The IPv4 registration refuses the spellings a resolver or a browser would treat as it.
	e4 := newFlowEnv(t, nil)
	b4 := e4.browser(t)
	for _, uri := range []string{
		"http://127.1/callback", "http://2130706433/callback", "http://0x7f000001/callback", "http://127.0.0.1./callback",
		"http://127.000.000.001/callback", "http://127.0.0.1:08080/callback", "http://u:p@127.0.0.1/callback",
		"http://127.0.0.1:8080@evil.example/callback", "http://127.0.0.1/callback%23x", "http://127.0.0.1/%63allback",
		"http://127.0.0.1/callback;x", "http://127.0.0.1/callback%00",
	} {
		t.Run("refused "+uri, func(t *testing.T) {
			assertErrorPage(t, b4.authorize(authz("spa", uri, "openid", newPKCE())), http.StatusBadRequest, "invalid_request")
		})
	}
}

// Case 26 (variants): the token request's redirect_uri is compared byte for byte with the one
// the code was issued to, and a mismatch burns nothing (D2).
func TestCodeRedirectURIEncodingVariants(t *testing.T) {
	e := newFlowEnv(t, nil)
	const sent = "http://127.0.0.1:49152/callback"
	for _, bad := range []string{"http://127.0.0.1:49152/c%61llback", "http://127.0.0.1:49152/callback%2F",
		"http://u@127.0.0.1:49152/callback", "http://127.0.0.1:49152/callback#", "http://127.0.0.1:49152/callback ",
		"http://127.0.0.1:049152/callback", "http://[::1]:49152/callback"} {
		t.Run(bad, func(t *testing.T) {
			p := newPKCE()
			code := e.codeFrom(t, e.browser(t).signIn(authz("spa", sent, "openid", p), "alice", alicePassword), sent, "st-spa")
			assertError(t, e.exchange(code, p.verifier, bad), http.StatusBadRequest, "invalid_grant",
				"redirect_uri does not match the authorization request")
			e.tokensFrom(t, e.exchange(code, p.verifier, sent))
		})
	}
}

// Case 10, 6 (variants): state is opaque, so any valid UTF-8, control characters included, is
// echoed byte for byte, percent-encoded, and never breaks the Location header; invalid UTF-8 is
// a malformed request (an error page). Scope values outside the RFC 6749 §3.3 grammar that look
// like valid ones to a human (no-break space, zero-width space, full-width letters, NUL, DEL,
// CR) are invalid_scope.
func TestStateAndScopeCharacterVariants(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	e.logs.forbid(p.verifier)
	e.codeFrom(t, b.signIn(authz("spa", spaRedirect, "openid", p), "alice", alicePassword), spaRedirect, "st-spa")
	for name, state := range map[string]string{
		"CRLF (header injection)": "a\r\nLocation: https://evil.example/\r\n",
		"NUL":                     "a\x00b",
		"tab and DEL":             "a\tb\x7f",
		"right-to-left override":  "abc\u202egnp.exe",
		"emoji":                   "state-\U0001F510",
		"percent-encoded CRLF":    "%0d%0a",
		"quotes and angle":        `"><script>alert(1)</script>`,
	} {
		t.Run("state "+name, func(t *testing.T) {
			rec := b.authorize(withParam(authz("spa", spaRedirect, "openid", p), "state", state))
			if loc := rec.Header().Get("Location"); strings.ContainsAny(loc, "\r\n\x00") {
				t.Fatalf("raw control characters in Location %q", loc)
			}
			e.codeFrom(t, rec, spaRedirect, state)
		})
	}
	for name, raw := range map[string]string{
		"overlong slash":      "%C0%AF",
		"lone surrogate":      "%ED%A0%80",
		"truncated sequence":  "%E2%82",
		"invalid start byte":  "%FE",
		"Latin-1 e-acute":     "%E9",
		"raw invalid in name": "",
	} {
		t.Run("invalid UTF-8 state: "+name, func(t *testing.T) {
			q := authz("spa", spaRedirect, "openid", p)
			q.Del("state")
			rawQuery := q.Encode() + "&state=" + raw
			if raw == "" {
				rawQuery = q.Encode() + "&st%FFate=x"
			}
			assertErrorPage(t, b.get("/authorize?"+rawQuery), http.StatusBadRequest, "invalid_request")
		})
	}

	badScopes := map[string]string{
		"no-break space":     "openid\u00a0read",
		"zero-width space":   "openid\u200b",
		"full-width letters": "\uff52\uff45\uff41\uff44",
		"NUL":                "read\x00",
		"DEL":                "read\x7f",
		"CR":                 "read\r",
		"a leading space":    " read",
		"a trailing space":   "read ",
		"a backslash":        `read\`,
		"a combining accent": "read\u0301",
		"a literal %20":      "read%20write", // one token after form decoding, and not a registered one
	}
	for name, s := range badScopes {
		t.Run("authorize scope "+name, func(t *testing.T) {
			if got := authzError(t, b.authorize(authz("spa", spaRedirect, s, p)), spaRedirect, "st-spa"); got != "invalid_scope" {
				t.Fatalf("error %s", got)
			}
		})
		t.Run("client_credentials scope "+name, func(t *testing.T) {
			rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {s}}, basic("svc", e.svcSecret))
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error":"invalid_scope"`) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	// On refresh, a malformed scope is refused and, being no reuse, leaves the family alone.
	tk := e.spaTokens(t, "openid read")
	for name, s := range badScopes {
		t.Run("refresh scope "+name, func(t *testing.T) {
			rec := e.refresh(tk.RefreshToken, url.Values{"scope": {s}})
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error":"invalid_scope"`) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	if !e.rtLive(t, tk.RefreshToken) {
		t.Fatal("a malformed refresh request killed the family")
	}
}

// The duplicate-parameter rule on every endpoint that takes a form (OAuth 2.1 §3.1, §3.2:
// "Request and response parameters MUST NOT be included more than once"): a repeated parameter
// is invalid_request, whichever copy would have been the right one, and it consumes nothing: a
// code stays redeemable, a refresh token is not counted as reused, a token is not revoked, a
// pending login stays completable.
func TestDuplicateParametersEverywhere(t *testing.T) {
	e := newFlowEnv(t, nil)
	repeated := func(t *testing.T, rec *httptest.ResponseRecorder, name string) {
		t.Helper()
		assertError(t, rec, http.StatusBadRequest, "invalid_request", "parameter repeated: "+name)
	}

	t.Run("token: authorization_code", func(t *testing.T) {
		p := newPKCE()
		code := e.codeFrom(t, e.browser(t).signIn(authz("spa", spaRedirect, "openid", p), "alice", alicePassword), spaRedirect, "st-spa")
		base := func() url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.verifier},
				"redirect_uri": {spaRedirect}, "client_id": {"spa"}}
		}
		for name, second := range map[string]string{
			"code": "x", "code_verifier": p.verifier, "redirect_uri": "http://127.0.0.1:1/callback", "client_id": "web", "grant_type": "refresh_token",
		} {
			for _, order := range []string{"good first", "good last"} {
				f := base()
				if order == "good first" {
					f[name] = append(f[name], second)
				} else {
					f[name] = append([]string{second}, f[name]...)
				}
				repeated(t, e.post("/token", f), name)
			}
		}
		e.tokensFrom(t, e.post("/token", base()))
	})
	t.Run("token: refresh_token", func(t *testing.T) {
		tk := e.spaTokens(t, "openid read")
		for name, vals := range map[string][]string{
			"refresh_token": {tk.RefreshToken, tk.RefreshToken},
			"scope":         {"openid", "openid read"},
			"client_id":     {"spa", "spa"},
		} {
			f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken}, "client_id": {"spa"}}
			f[name] = vals
			repeated(t, e.post("/token", f), name)
		}
		if !e.rtLive(t, tk.RefreshToken) {
			t.Fatal("a rejected duplicate counted as a use")
		}
		e.tokensFrom(t, e.refresh(tk.RefreshToken, nil))
	})
	t.Run("token: client_credentials, client_secret", func(t *testing.T) {
		f := url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"wrong", e.svcSecret}}
		repeated(t, e.post("/token", f), "client_secret")
	})
	t.Run("token: two Authorization headers", func(t *testing.T) {
		rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, func(r *http.Request) {
			r.Header.Add("Authorization", basicHeader("svc", "wrong"))
			r.Header.Add("Authorization", basicHeader("svc", e.svcSecret))
		})
		assertError(t, rec, http.StatusBadRequest, "invalid_request", "Authorization header repeated")
	})

	tok := e.cc(nil)
	for _, path := range []string{"/introspect", "/revoke"} {
		t.Run(path, func(t *testing.T) {
			for name, vals := range map[string][]string{
				"token":           {tok, tok},
				"token_type_hint": {"access_token", "refresh_token"},
				"client_id":       {"svc", "svc"},
			} {
				f := url.Values{"token": {tok}}
				f[name] = vals
				repeated(t, e.post(path, f, basic("svc", e.svcSecret)), name)
			}
			// A repeated token with different values: which one would be revoked?
			other := e.cc(nil)
			repeated(t, e.post(path, url.Values{"token": {other, tok}}, basic("svc", e.svcSecret)), "token")
			if !e.active(t, tok) || !e.active(t, other) {
				t.Fatal("a rejected request revoked a token")
			}
		})
	}

	t.Run("authorize: POST with parameters in the query too", func(t *testing.T) {
		// Which client_id counts, the query's or the body's? Neither: an error page.
		b := e.browser(t)
		req := httptest.NewRequest(http.MethodPost, "/authorize?client_id=web",
			strings.NewReader(authz("spa", spaRedirect, "openid", newPKCE()).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		assertErrorPage(t, b.do(req), http.StatusBadRequest, "invalid_request")
	})

	t.Run("login and consent", func(t *testing.T) {
		b := e.browser(t)
		page := b.follow(b.authorize(authz("web", webRedirect, "openid", newPKCE())))
		id, csrf := pageForm(t, page)
		good := url.Values{"request_id": {id}, "csrf_token": {csrf}, "username": {"alice"}, "password": {alicePassword}}
		for _, name := range []string{"request_id", "csrf_token", "username", "password"} {
			f := url.Values{}
			for k, v := range good {
				f[k] = v
			}
			f[name] = append(f[name], f[name][0])
			rec := b.post("/login", f)
			if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" {
				t.Fatalf("repeated %s: %d Location %q", name, rec.Code, rec.Header().Get("Location"))
			}
			assertPageHeaders(t, rec)
			if b.cookie(sessionCookie) != "" {
				t.Fatalf("repeated %s: a session", name)
			}
		}
		consent := b.follow(b.post("/login", good))
		id, csrf = pageForm(t, consent)
		rec := b.post("/consent", url.Values{"request_id": {id}, "csrf_token": {csrf}, "decision": {"deny", "allow"}})
		if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" {
			t.Fatalf("repeated decision: %d Location %q", rec.Code, rec.Header().Get("Location"))
		}
		e.codeFrom(t, b.submitConsent(consent, "allow"), webRedirect, "st-web")
	})
}

// endlessReader is a body that never ends; it counts the bytes a handler reads from it.
type endlessReader struct {
	n atomic.Int64
}

func (c *endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// Case 93 on every endpoint that reads a form: a body over 64 KiB is refused after reading at
// most a little more than the limit, even when it never ends and declares no length; 10 001
// parameters (and anything over httpx.MaxFormParams) are refused too.
func TestFormLimitsEverywhere(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	page := b.follow(b.authorize(authz("web", webRedirect, "openid", newPKCE())))
	id, csrf := pageForm(t, page)
	prefix := "request_id=" + url.QueryEscape(id) + "&csrf_token=" + url.QueryEscape(csrf) + "&token=x&grant_type=client_credentials&pad="
	for _, path := range []string{"/token", "/introspect", "/revoke", "/login", "/consent"} {
		page := path == "/login" || path == "/consent"
		send := func(body io.Reader, length int64) *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodPost, path, body)
			req.ContentLength = length
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			if !page {
				basic("svc", e.svcSecret)(req)
			}
			return b.do(req)
		}
		check := func(t *testing.T, rec *httptest.ResponseRecorder, desc string) {
			t.Helper()
			if page {
				if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
					t.Fatalf("%d %s", rec.Code, rec.Body)
				}
				if rec.Header().Get("Location") != "" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
					t.Fatalf("Location %q, content type %q", rec.Header().Get("Location"), rec.Header().Get("Content-Type"))
				}
				assertPageHeaders(t, rec)
				return
			}
			assertError(t, rec, http.StatusBadRequest, "invalid_request", desc)
		}
		t.Run(path+" endless body", func(t *testing.T) {
			body := &endlessReader{}
			rec := send(io.MultiReader(strings.NewReader(prefix), body), -1)
			check(t, rec, "request body too large")
			if n := body.n.Load(); n > httpx.MaxFormBytes+64<<10 {
				t.Fatalf("read %d bytes of an endless body", n)
			}
		})
		t.Run(path+" declared 10 MB", func(t *testing.T) {
			body := &endlessReader{}
			rec := send(io.MultiReader(strings.NewReader(prefix), io.LimitReader(body, 10<<20)), 10<<20)
			check(t, rec, "request body too large")
			if n := body.n.Load(); n > httpx.MaxFormBytes+64<<10 {
				t.Fatalf("read %d bytes of a 10 MB body", n)
			}
		})
		for _, n := range []int{httpx.MaxFormParams + 1, 10001} {
			t.Run(path+" too many parameters", func(t *testing.T) {
				var s strings.Builder
				s.WriteString(strings.TrimSuffix(prefix, "&pad="))
				for i := range n {
					s.WriteString("&p")
					s.WriteString(strconv.Itoa(i))
				}
				rec := send(strings.NewReader(s.String()), int64(s.Len()))
				check(t, rec, "too many parameters")
			})
		}
	}
	// The pending request was never consumed by any of this.
	e.codeFrom(t, b.submitConsent(b.follow(b.submitLogin(page, "alice", alicePassword)), "allow"), webRedirect, "st-web")
}

// Case 97 (malformed headers): hostile values of every header the server reads never reach a
// panic or a 500. Each request gets a precise 4xx (or the endpoint's normal answer), and the JSON
// endpoints still answer JSON with no-store.
func TestMalformedHeadersNeverPanic(t *testing.T) {
	e := newFlowEnv(t, nil)
	huge := strings.Repeat("A", 1<<20)
	headers := map[string][]string{
		"Authorization": {"", "Basic", "Basic ", "Basic =", "Basic " + base64Std(":"), "Basic " + base64Std("svc"),
			"Basic " + base64Std("svc:"), "Basic " + base64Std(":secret"), "Basic " + base64Std("\xff:\xfe"),
			"Basic " + base64Std("%zz:%zz"), "Basic " + huge, "Bearer", "Bearer ", "Bearer a.b", "Bearer " + huge,
			"Bearer " + strings.Repeat(".", 100000), "Digest x", "Basic\x00" + base64Std("svc:x"), "\xff\xfe"},
		"Content-Type": {"", "application/x-www-form-urlencoded; charset=utf-16", "application/x-www-form-urlencoded; charset",
			"application/x-www-form-urlencoded;;", "multipart/form-data; boundary=", "text/plain", "\x00", huge},
		"Cookie":          {"latchkey-browser=\xff", "__Host-latchkey-session=" + huge, "__Host-latchkey-browser=;;;", "=", "a=\"\x00\""},
		"Origin":          {"null", "\xff", "https://", "https://app.example.test:99999", "javascript:alert(1)", huge},
		"X-Forwarded-For": {"", "::::", "1.2.3.4, \xff", strings.Repeat("1.1.1.1,", 10000), "999.999.999.999"},
		"Forwarded":       {"for=\"[::1\"", "host=evil.example;proto=javascript"},
		"Sec-Fetch-Site":  {"\xff", "cross-site, same-origin"},
		"Accept":          {"\x00", huge},
	}
	type target struct {
		method, path, body string
		json               bool
	}
	targets := []target{
		{http.MethodPost, "/token", "grant_type=client_credentials", true},
		{http.MethodPost, "/introspect", "token=x", true},
		{http.MethodPost, "/revoke", "token=x", true},
		{http.MethodGet, "/userinfo", "", true},
		{http.MethodGet, "/jwks", "", true},
		{http.MethodGet, "/.well-known/openid-configuration", "", true},
		{http.MethodGet, "/authorize?" + authz("spa", spaRedirect, "openid", newPKCE()).Encode(), "", false},
		{http.MethodPost, "/login", "request_id=x&csrf_token=y&username=alice&password=z", false},
		{http.MethodPost, "/consent", "request_id=x&csrf_token=y&decision=allow", false},
	}
	for _, tg := range targets {
		for name, values := range headers {
			for i, v := range values {
				req := httptest.NewRequest(tg.method, tg.path, strings.NewReader(tg.body))
				if tg.body != "" {
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
				req.Header[name] = []string{v}
				if name == "Authorization" && i == 0 {
					req.Header[name] = []string{v, v} // a repeated, empty header
				}
				rec := e.do(req)
				if rec.Code >= 500 {
					t.Fatalf("%s %s with %s #%d: %d %s", tg.method, tg.path, name, i, rec.Code, rec.Body.String()[:min(rec.Body.Len(), 200)])
				}
				// A 401 of /userinfo without credentials has no body (RFC 6750 §3.1).
				if tg.json && rec.Code >= 400 && rec.Body.Len() > 0 {
					if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
						t.Fatalf("%s %s with %s #%d: %d, content type %q", tg.method, tg.path, name, i, rec.Code, rec.Header().Get("Content-Type"))
					}
					assertNoStore(t, rec)
				}
			}
		}
	}
}

// Size bounds and encodings beyond the form limits (case 93 and 10, variants): every value that
// is stored, hashed or echoed has a bound, and the answer past it is the precise OAuth error of
// that parameter, never a 500; double percent-encoding is not undone.
func TestSizeBoundsAndEncodings(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	e.logs.forbid(p.verifier)
	t.Run("authorize", func(t *testing.T) {
		assertErrorPage(t, b.authorize(authz("spa", "http://127.0.0.1/"+strings.Repeat("a", 2048), "openid", p)),
			http.StatusBadRequest, "invalid_request")
		assertErrorPage(t, b.authorize(authz(strings.Repeat("c", 10000), spaRedirect, "openid", p)), http.StatusBadRequest, "invalid_client")
		// Double encoding: %2561 decodes once, to a literal "%61", which names no client.
		q := authz("spa", spaRedirect, "openid", p)
		q.Del("client_id")
		assertErrorPage(t, b.get("/authorize?"+q.Encode()+"&client_id=sp%2561"), http.StatusBadRequest, "invalid_client")
		q = authz("spa", "", "openid", p)
		assertErrorPage(t, b.get("/authorize?"+q.Encode()+"&redirect_uri=http%253A%252F%252F127.0.0.1%252Fcallback"),
			http.StatusBadRequest, "invalid_request")
		many := "openid"
		for i := range 70 {
			many += " s" + strconv.Itoa(i)
		}
		if got := authzError(t, b.authorize(authz("spa", spaRedirect, many, p)), spaRedirect, "st-spa"); got != "invalid_scope" {
			t.Fatalf("70 scope values: %s", got)
		}
		long := "openid " + strings.Repeat("x", 9000)
		if got := authzError(t, b.authorize(authz("spa", spaRedirect, long, p)), spaRedirect, "st-spa"); got != "invalid_scope" {
			t.Fatalf("a 9000-character scope: %s", got)
		}
	})
	t.Run("token", func(t *testing.T) {
		for name, form := range map[string]url.Values{
			"a 60 KiB code": {"grant_type": {"authorization_code"}, "code": {strings.Repeat("c", 60<<10)},
				"code_verifier": {p.verifier}, "client_id": {"spa"}},
			"a 60 KiB refresh token":       {"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("r", 60<<10)}, "client_id": {"spa"}},
			"a refresh token of 1000 dots": {"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat(".", 1000)}, "client_id": {"spa"}},
		} {
			t.Run(name, func(t *testing.T) {
				rec := e.post("/token", form)
				if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error":"invalid_grant"`) {
					t.Fatalf("%d %s", rec.Code, rec.Body)
				}
			})
		}
		rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {strings.Repeat("c", 60<<10)},
			"client_secret": {"x"}})
		assertError(t, rec, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		rec = e.post("/token", url.Values{"grant_type": {strings.Repeat("g", 60<<10)}}, basic("svc", e.svcSecret))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error":"unsupported_grant_type"`) ||
			strings.Contains(rec.Body.String(), "gggg") {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
	t.Run("introspect and revoke", func(t *testing.T) {
		for _, tok := range []string{strings.Repeat("t", 60<<10), strings.Repeat(".", 60<<10), "e" + strings.Repeat(".e", 30000)} {
			status, m := e.introspect("svc", e.svcSecret, tok)
			assertInactive(t, status, m)
			if rec := e.post("/revoke", url.Values{"token": {tok}}, basic("svc", e.svcSecret)); rec.Code != http.StatusOK {
				t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
			}
		}
	})
}

// Case 58 at the server: an ID token, signed by the same key as the access tokens, is not an
// access token. /userinfo refuses it as a bearer token and introspection calls it inactive;
// a refresh token with the family of another grant and a forged secret finds nothing and
// revokes neither family.
func TestTokensAreNotInterchangeable(t *testing.T) {
	e := newFlowEnv(t, nil)
	tk := e.spaTokens(t, "openid profile read")
	if tk.IDToken == "" {
		t.Fatal("no id_token")
	}
	req := httptest.NewRequest(http.MethodGet, "/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tk.IDToken)
	rec := e.do(req)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("userinfo with an ID token: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	status, m := e.introspect("svc", e.svcSecret, tk.IDToken)
	assertInactive(t, status, m)

	other := e.spaTokens(t, "openid")
	family, _, _ := strings.Cut(other.RefreshToken, ".")
	_, secret, _ := strings.Cut(tk.RefreshToken, ".")
	assertError(t, e.refresh(family+"."+secret, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
	if !e.rtLive(t, tk.RefreshToken) || !e.rtLive(t, other.RefreshToken) {
		t.Fatal("a forged refresh token revoked a family")
	}
}
