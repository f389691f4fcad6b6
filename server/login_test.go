package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

const (
	browserCookie = "__Host-latchkey-browser"
	sessionCookie = "__Host-latchkey-session"
)

// Cookies: HttpOnly, SameSite=Lax, Secure and __Host- with an https issuer; without the prefix
// and scoped to the issuer's path with an http one.
func TestFlowCookies(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	rec := b.authorize(authz("spa", spaRedirect, "openid", newPKCE()))
	checkCookie := func(rec *httptest.ResponseRecorder, name string, secure bool, path string) {
		t.Helper()
		for _, c := range rec.Result().Cookies() {
			if c.Name != name {
				continue
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != secure || c.Path != path || c.Domain != "" {
				t.Fatalf("cookie %s: %+v", name, c)
			}
			return
		}
		t.Fatalf("no cookie %s in %v", name, rec.Result().Cookies())
	}
	checkCookie(rec, browserCookie, true, "/")
	rec = b.submitLogin(b.follow(rec), "alice", alicePassword)
	checkCookie(rec, sessionCookie, true, "/")

	h := newFlowEnv(t, []envOption{withIssuer("http://127.0.0.1:8080/auth")})
	hb := h.browser(t)
	rec = hb.get("/auth/authorize?" + authz("spa", spaRedirect, "openid", newPKCE()).Encode())
	checkCookie(rec, "latchkey-browser", false, "/auth/")
	if u := location(t, rec); u.Path != "/auth/login" {
		t.Fatalf("login page at %s", u)
	}
	page := hb.follow(rec)
	if !strings.Contains(page.Body.String(), `action="/auth/login"`) || !strings.Contains(page.Body.String(), `href="/auth/static/latchkey.css`) {
		t.Fatalf("the login page does not live under the issuer's path: %s", page.Body)
	}
	id, csrf := pageForm(t, page)
	rec = hb.post("/auth/login", url.Values{"request_id": {id}, "csrf_token": {csrf}, "username": {"alice"}, "password": {alicePassword}})
	checkCookie(rec, "latchkey-session", false, "/auth/")
	if q := clientResponseFrom(t, rec, spaRedirect, "st-spa", "http://127.0.0.1:8080/auth"); q.Get("code") == "" {
		t.Fatalf("no code: %v", q)
	}
}

// Case 13, 14: deny answers access_denied with state and iss and no code; allow gives a code;
// both are 303s.
func TestConsentAllowAndDeny(t *testing.T) {
	e := newFlowEnv(t, nil)
	for _, decision := range []string{"deny", "allow"} {
		t.Run(decision, func(t *testing.T) {
			b := e.browser(t)
			rec := b.authorize(authz("web", webRedirect2, "openid email read", newPKCE()))
			rec = b.submitLogin(b.follow(rec), "alice", alicePassword)
			if rec.Code != http.StatusSeeOther || location(t, rec).Path != "/consent" {
				t.Fatalf("after login: %d %s", rec.Code, rec.Header().Get("Location"))
			}
			page := b.follow(rec)
			body := page.Body.String()
			for _, want := range []string{"See your email address", "read", "web.example.test", "alice", `value="allow"`, `value="deny"`} {
				if !strings.Contains(body, want) {
					t.Fatalf("the consent page lacks %q: %s", want, body)
				}
			}
			rec = b.submitConsent(page, decision)
			if decision == "deny" {
				if got := authzError(t, rec, webRedirect2, "st-web"); got != "access_denied" {
					t.Fatalf("error %s", got)
				}
				return
			}
			e.codeFrom(t, rec, webRedirect2, "st-web")
		})
	}
	// A post without a decision, or with another value, is refused; the request stays usable.
	b := e.browser(t)
	rec := b.authorize(authz("web", webRedirect, "openid read", newPKCE()))
	rec = b.submitLogin(b.follow(rec), "svc", alicePassword) // alice has consented above
	page := b.follow(rec)
	for _, d := range []string{"", "Allow", "yes"} {
		id, csrf := pageForm(t, page)
		assertErrorPage(t, b.post("/consent", url.Values{"request_id": {id}, "csrf_token": {csrf}, "decision": {d}}),
			http.StatusBadRequest, "invalid_request")
	}
	e.codeFrom(t, b.submitConsent(page, "allow"), webRedirect, "st-web")
}

// Case 15: a form post without the CSRF token, with another request's, from another browser,
// cross-origin, or replayed after completion is 403 with no session and no code.
func TestLoginAndConsentPostsAreBoundToTheBrowser(t *testing.T) {
	e := newFlowEnv(t, nil)
	victim := e.browser(t)
	page := victim.follow(victim.authorize(authz("spa", spaRedirect, "openid", newPKCE())))
	id, csrf := pageForm(t, page)
	other := e.browser(t)
	otherPage := other.follow(other.authorize(authz("spa", spaRedirect, "openid", newPKCE())))
	otherID, otherCSRF := pageForm(t, otherPage)
	creds := url.Values{"username": {"alice"}, "password": {alicePassword}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range creds {
			v[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	refused := func(t *testing.T, b *browser, form url.Values, edits ...func(*http.Request)) {
		t.Helper()
		hadSession := b.cookie(sessionCookie)
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, edit := range edits {
			edit(req)
		}
		rec := b.do(req)
		assertErrorPage(t, rec, http.StatusForbidden, "access_denied")
		if b.cookie(sessionCookie) != hadSession {
			t.Fatal("a refused post changed the session")
		}
	}
	t.Run("no CSRF token", func(t *testing.T) { refused(t, victim, with("request_id", id)) })
	t.Run("an empty CSRF token", func(t *testing.T) { refused(t, victim, with("request_id", id, "csrf_token", "")) })
	t.Run("another request's CSRF token", func(t *testing.T) { refused(t, victim, with("request_id", id, "csrf_token", otherCSRF)) })
	t.Run("the CSRF token in another case", func(t *testing.T) {
		refused(t, victim, with("request_id", id, "csrf_token", strings.ToUpper(csrf)))
	})
	t.Run("the CSRF token as the request id", func(t *testing.T) { refused(t, victim, with("request_id", csrf, "csrf_token", csrf)) })
	t.Run("a leaked request id and token, from another browser", func(t *testing.T) {
		// CVE-2022-39222: the attacker has the request id and even the CSRF token, but not the
		// victim's browser cookie.
		refused(t, other, with("request_id", id, "csrf_token", csrf))
		refused(t, e.browser(t), with("request_id", id, "csrf_token", csrf))
	})
	t.Run("the page of a leaked request id, from another browser", func(t *testing.T) {
		assertErrorPage(t, other.get("/login?request_id="+id), http.StatusForbidden, "access_denied")
	})
	t.Run("cross-site post", func(t *testing.T) {
		refused(t, victim, with("request_id", id, "csrf_token", csrf), header("Sec-Fetch-Site", "cross-site"))
		refused(t, victim, with("request_id", id, "csrf_token", csrf), header("Origin", "https://evil.example"))
		refused(t, victim, with("request_id", id, "csrf_token", csrf), header("Sec-Fetch-Site", "same-site"))
	})
	t.Run("an unknown or malformed request id", func(t *testing.T) {
		refused(t, victim, with("request_id", strings.Repeat("A", 43), "csrf_token", csrf))
		refused(t, victim, with("request_id", id+"x", "csrf_token", csrf))
	})
	// The legitimate post still works after all of these, once.
	rec := victim.post("/login", with("request_id", id, "csrf_token", csrf))
	e.codeFrom(t, rec, spaRedirect, "st-spa")
	t.Run("replay after completion", func(t *testing.T) {
		refused(t, victim, with("request_id", id, "csrf_token", csrf))
		assertErrorPage(t, victim.get("/login?request_id="+id), http.StatusForbidden, "access_denied")
	})
	// The other browser's own request is untouched by the attempts made with it.
	e.codeFrom(t, other.post("/login", with("request_id", otherID, "csrf_token", otherCSRF)), spaRedirect, "st-spa")

	// A consent post is bound the same way, and a replay of it is refused.
	b := e.browser(t)
	rec = b.submitLogin(b.follow(b.authorize(authz("web", webRedirect, "openid", newPKCE()))), "alice", alicePassword)
	consent := b.follow(rec)
	cid, ccsrf := pageForm(t, consent)
	form := url.Values{"request_id": {cid}, "csrf_token": {ccsrf}, "decision": {"allow"}}
	assertErrorPage(t, e.browser(t).post("/consent", form), http.StatusForbidden, "access_denied")
	// A consent form posted to the login endpoint, and a login form to the consent one.
	assertErrorPage(t, b.post("/login", with("request_id", cid, "csrf_token", ccsrf)), http.StatusForbidden, "access_denied")
	e.codeFrom(t, b.post("/consent", form), webRedirect, "st-web")
	assertErrorPage(t, b.post("/consent", form), http.StatusForbidden, "access_denied")
}

// Each page view gets a fresh CSRF token; only the newest one is accepted.
func TestCSRFTokenRotatesPerPage(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	rec := b.authorize(authz("spa", spaRedirect, "openid", newPKCE()))
	first := b.follow(rec)
	second := b.follow(rec)
	_, c1 := pageForm(t, first)
	id, c2 := pageForm(t, second)
	if c1 == c2 {
		t.Fatal("the CSRF token did not change between page views")
	}
	assertErrorPage(t, b.post("/login", url.Values{"request_id": {id}, "csrf_token": {c1}, "username": {"alice"}, "password": {alicePassword}}),
		http.StatusForbidden, "access_denied")
	e.codeFrom(t, b.submitLogin(second, "alice", alicePassword), spaRedirect, "st-spa")
}

// A wrong password and an unknown user give the same page; the password is never refilled.
func TestLoginFailureIsGeneric(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	page := b.follow(b.authorize(authz("spa", spaRedirect, "openid", newPKCE())))
	var bodies []string
	for _, attempt := range [][2]string{{"alice", "wrong"}, {"mallory", alicePassword}, {"ALICE ", "wrong"}, {"alice", ""}} {
		rec := b.submitLogin(page, attempt[0], attempt[1])
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Incorrect username or password.") {
			t.Fatalf("%v: %d %s", attempt, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), alicePassword) || strings.Contains(rec.Body.String(), `value="wrong"`) {
			t.Fatalf("the password was refilled")
		}
		body := strings.ReplaceAll(rec.Body.String(), attempt[0], "USER")
		bodies = append(bodies, body)
		page = rec
	}
	if bodies[0] != bodies[1] {
		t.Fatalf("unknown user and wrong password differ:\n%s\n%s", bodies[0], bodies[1])
	}
	// The username matches case-insensitively and trimmed, as the directory does.
	e.codeFrom(t, b.submitLogin(page, " Alice", alicePassword), spaRedirect, "st-spa")
}

// Brute-force throttling: failures per username and per client address in a window; past the
// limit even the right password is refused with 429 and Retry-After; the window ends.
func TestLoginThrottling(t *testing.T) {
	e := newFlowEnv(t, []envOption{withOptions(func(o *server.Options) {
		o.Login = server.LoginOptions{MaxFailuresPerUser: 3, MaxFailuresPerIP: 5, FailureWindow: time.Minute}
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})})
	attempt := func(b *browser, username, password string) *httptest.ResponseRecorder {
		t.Helper()
		return b.submitLogin(b.follow(b.authorize(authz("spa", spaRedirect, "openid", newPKCE()))), username, password)
	}
	t.Run("per user", func(t *testing.T) {
		for i := range 3 {
			// Each from another address: the user's counter does not care.
			b := e.browser(t)
			b.remote = fmt.Sprintf("198.51.100.%d:1000", i+1)
			if rec := attempt(b, "alice", "wrong"); rec.Code != http.StatusBadRequest {
				t.Fatalf("attempt %d: %d", i, rec.Code)
			}
		}
		b := e.browser(t)
		b.remote = "198.51.100.99:1000"
		rec := attempt(b, "ALICE", alicePassword)
		if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "Too many sign-in attempts") ||
			rec.Header().Get("Retry-After") == "" {
			t.Fatalf("past the limit: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		if b.cookie(sessionCookie) != "" {
			t.Fatal("a throttled login started a session")
		}
		// Another user from the same address is not affected.
		e.codeFrom(t, attempt(b, "svc", alicePassword), spaRedirect, "st-spa")
		e.advance(time.Minute)
		e.codeFrom(t, attempt(e.browser(t), "alice", alicePassword), spaRedirect, "st-spa")
	})
	t.Run("per address, case 100", func(t *testing.T) {
		e.advance(time.Minute)
		b := e.browser(t)
		b.remote = "203.0.113.7:5000"
		for i := range 5 {
			// A spoofed X-Forwarded-For from an untrusted peer changes nothing: every
			// attempt counts against the peer's address.
			b.edit = func(r *http.Request) { r.Header.Set("X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i)) }
			if rec := attempt(b, fmt.Sprintf("user%d", i), "wrong"); rec.Code != http.StatusBadRequest {
				t.Fatalf("attempt %d: %d", i, rec.Code)
			}
		}
		b.edit = func(r *http.Request) { r.Header.Set("X-Forwarded-For", "192.0.2.200") }
		if rec := attempt(b, "alice", alicePassword); rec.Code != http.StatusTooManyRequests {
			t.Fatalf("past the address limit: %d", rec.Code)
		}
		// IPv6 addresses count per /64.
		v6 := e.browser(t)
		for i := range 5 {
			v6.remote = fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1)
			attempt(v6, fmt.Sprintf("v6user%d", i), "wrong")
		}
		v6.remote = "[2001:db8:1:2:ffff::1]:443"
		if rec := attempt(v6, "alice", alicePassword); rec.Code != http.StatusTooManyRequests {
			t.Fatalf("another address of the same /64: %d", rec.Code)
		}
		// Behind a trusted proxy, X-Forwarded-For names the client: another client behind
		// the same proxy is not throttled.
		proxied := e.browser(t)
		proxied.remote = "10.1.2.3:80"
		for i := range 5 {
			proxied.edit = func(r *http.Request) { r.Header.Set("X-Forwarded-For", "192.0.2.50") }
			attempt(proxied, fmt.Sprintf("p%d", i), "wrong")
		}
		if rec := attempt(proxied, "alice", alicePassword); rec.Code != http.StatusTooManyRequests {
			t.Fatalf("the proxied client past its limit: %d", rec.Code)
		}
		proxied.edit = func(r *http.Request) { r.Header.Set("X-Forwarded-For", "192.0.2.51") }
		e.codeFrom(t, attempt(proxied, "alice", alicePassword), spaRedirect, "st-spa")
	})
}

// A login session lets a second authorization skip the password, within its idle and absolute
// lifetimes; prompt and max_age override it (OpenID Connect Core §3.1.2.1).
func TestLoginSession(t *testing.T) {
	e := newFlowEnv(t, []envOption{withOptions(func(o *server.Options) {
		o.Login = server.LoginOptions{SessionIdleLifetime: time.Hour, SessionAbsoluteLifetime: 3 * time.Hour}
	})})
	b := e.browser(t)
	p := newPKCE()
	e.codeFrom(t, b.signIn(authz("spa", spaRedirect, "openid", p), "alice", alicePassword), spaRedirect, "st-spa")

	direct := func(q url.Values) { t.Helper(); e.codeFrom(t, b.authorize(q), spaRedirect, "st-spa") }
	toLogin := func(q url.Values) {
		t.Helper()
		if u := location(t, b.authorize(q)); u.Path != "/login" {
			t.Fatalf("went to %s, want the login page", u)
		}
	}
	t.Run("second authorization skips the password", func(t *testing.T) {
		direct(authz("spa", spaRedirect, "openid", p))
	})
	t.Run("prompt=login forces the password", func(t *testing.T) {
		q := authz("spa", spaRedirect, "openid", p)
		q.Set("prompt", "login")
		toLogin(q)
	})
	t.Run("max_age", func(t *testing.T) {
		e.advance(10 * time.Minute)
		q := authz("spa", spaRedirect, "openid", p)
		q.Set("max_age", "600")
		direct(q)
		q.Set("max_age", "599")
		toLogin(q)
		q.Set("max_age", "0")
		toLogin(q)
	})
	t.Run("prompt=none", func(t *testing.T) {
		q := authz("spa", spaRedirect, "openid", p)
		q.Set("prompt", "none")
		direct(q)
		fresh := e.browser(t)
		if got := authzError(t, fresh.authorize(q), spaRedirect, "st-spa"); got != "login_required" {
			t.Fatalf("no session: %s", got)
		}
		q.Set("max_age", "1")
		if got := authzError(t, b.authorize(q), spaRedirect, "st-spa"); got != "login_required" {
			t.Fatalf("max_age exceeded: %s", got)
		}
	})
	t.Run("the auth_time of the session is the password's", func(t *testing.T) {
		code := e.codeFrom(t, b.authorize(authz("spa", spaRedirect, "openid", p)), spaRedirect, "st-spa")
		tk := e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
		_, claims := jwtParts(t, tk.IDToken)
		if fmt.Sprint(claims["auth_time"]) != fmt.Sprint(servertest.Epoch.Unix()) {
			t.Fatalf("auth_time %v, want the login at %d", claims["auth_time"], servertest.Epoch.Unix())
		}
	})
	relogin := func(username string) {
		t.Helper()
		q := authz("spa", spaRedirect, "openid", p)
		q.Set("prompt", "login")
		e.codeFrom(t, b.signIn(q, username, alicePassword), spaRedirect, "st-spa")
	}
	t.Run("idle lifetime", func(t *testing.T) {
		relogin("alice")
		// Used every 59 minutes, the session lives on.
		for range 2 {
			e.advance(59 * time.Minute)
			direct(authz("spa", spaRedirect, "openid", p))
		}
		e.advance(time.Hour + time.Second)
		toLogin(authz("spa", spaRedirect, "openid", p))
	})
	t.Run("absolute lifetime", func(t *testing.T) {
		relogin("alice")
		for range 3 {
			e.advance(59 * time.Minute)
			direct(authz("spa", spaRedirect, "openid", p))
		}
		e.advance(3 * time.Minute) // 3h after the login
		toLogin(authz("spa", spaRedirect, "openid", p))
	})
	t.Run("a user who leaves the Secret loses the session", func(t *testing.T) {
		relogin("svc")
		s := usersSecret()
		s.Data[latchkeyv1.UsersDataKey] = []byte(fmt.Sprintf("- {username: alice, passwordHash: %q}\n", aliceHash))
		servertest.Update(t, e.reader, s)
		toLogin(authz("spa", spaRedirect, "openid", p))
	})
	t.Run("a new login replaces the session", func(t *testing.T) {
		relogin("alice")
		before := b.cookie(sessionCookie)
		relogin("alice")
		after := b.cookie(sessionCookie)
		if before == "" || after == "" || before == after {
			t.Fatalf("session cookie %q then %q", before, after)
		}
		old := e.browser(t)
		old.jar[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: before}
		if u := location(t, old.authorize(authz("spa", spaRedirect, "openid", p))); u.Path != "/login" {
			t.Fatalf("the replaced session still works: %s", u)
		}
	})
}

// Consent is remembered per user, client and scope set; a new scope, prompt=consent or another
// user asks again; prompt=none answers consent_required.
func TestConsentRemembered(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	e.codeFrom(t, b.signIn(authz("web", webRedirect, "openid read", p), "alice", alicePassword), webRedirect, "st-web")

	e.codeFrom(t, b.authorize(authz("web", webRedirect, "openid read", p)), webRedirect, "st-web")
	e.codeFrom(t, b.authorize(authz("web", webRedirect, "read", p)), webRedirect, "st-web")
	for _, tt := range []struct {
		name string
		edit func(url.Values)
	}{
		{"a new scope", func(q url.Values) { q.Set("scope", "openid read write") }},
		{"prompt=consent", func(q url.Values) { q.Set("prompt", "consent") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := authz("web", webRedirect, "openid read", p)
			tt.edit(q)
			if u := location(t, b.authorize(q)); u.Path != "/consent" {
				t.Fatalf("went to %s, want the consent page", u)
			}
		})
	}
	t.Run("prompt=none", func(t *testing.T) {
		q := authz("web", webRedirect, "openid read write", p)
		q.Set("prompt", "none")
		if got := authzError(t, b.authorize(q), webRedirect, "st-web"); got != "consent_required" {
			t.Fatalf("prompt=none: %s", got)
		}
		q.Set("scope", "openid read")
		e.codeFrom(t, b.authorize(q), webRedirect, "st-web")
	})
	// Another user has not consented.
	other := e.browser(t)
	rec := other.submitLogin(other.follow(other.authorize(authz("web", webRedirect, "openid read", p))), "svc", alicePassword)
	if u := location(t, rec); u.Path != "/consent" {
		t.Fatalf("another user went to %s", u)
	}
	// The consent lifetime ends.
	e.advance(server.DefaultConsentLifetime + time.Second)
	b2 := e.browser(t)
	rec = b2.submitLogin(b2.follow(b2.authorize(authz("web", webRedirect, "openid read", p))), "alice", alicePassword)
	if u := location(t, rec); u.Path != "/consent" {
		t.Fatalf("after the consent lifetime: %s", u)
	}
}

// An edit of the client applies to a pending request: a redirect URI removed before the login
// is an error page at the post, never a redirect to it (SECURITY-CASES 86).
func TestPendingRequestRecheckedAtCompletion(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	page := b.follow(b.authorize(authz("web", webRedirect2, "openid", newPKCE())))
	web := e.web.DeepCopy()
	web.Spec.RedirectURIs = []string{webRedirect}
	servertest.Update(t, e.reader, web)
	rec := b.submitLogin(page, "alice", alicePassword)
	rec = b.submitConsent(b.follow(rec), "allow")
	assertErrorPage(t, rec, http.StatusBadRequest, "invalid_request")
}

// Case 76 (authorize and login): with Redis down, /authorize redirects with
// temporarily_unavailable and the login post is a 503 page; both recover by themselves.
func TestFlowRedisDown(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	page := b.follow(b.authorize(authz("spa", spaRedirect, "openid", p)))
	e.redis.Kill()
	if got := authzError(t, e.browser(t).authorize(authz("spa", spaRedirect, "openid", p)), spaRedirect, "st-spa"); got != "temporarily_unavailable" {
		t.Fatalf("authorize: %s", got)
	}
	rec := b.submitLogin(page, "alice", alicePassword)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Location") != "" {
		t.Fatalf("login post: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	if got := authzError(t, b.authorize(authz("spa", spaRedirect, "openid", p)), spaRedirect, "st-spa"); got != "temporarily_unavailable" {
		t.Fatalf("authorize with a browser cookie: %s", got)
	}
	e.redis.Restart()
	eventually(t, "authorize after the restart", func() bool {
		return location(t, e.browser(t).authorize(authz("spa", spaRedirect, "openid", p))).Path == "/login"
	})
	e.codeFrom(t, e.browser(t).signIn(authz("spa", spaRedirect, "openid", p), "alice", alicePassword), spaRedirect, "st-spa")
}

// A users Secret that is missing or broken makes login "temporarily unavailable" (503), never
// "wrong password".
func TestLoginUsersSecretBroken(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	page := b.follow(b.authorize(authz("spa", spaRedirect, "openid", newPKCE())))
	s := usersSecret()
	s.Data[latchkeyv1.UsersDataKey] = []byte("- {username: alice, passwordHash: nope}\n")
	servertest.Update(t, e.reader, s)
	rec := b.submitLogin(page, "alice", alicePassword)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "temporarily unavailable") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
