package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func newUI(t *testing.T, opts Options) *UI {
	t.Helper()
	u, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func render(t *testing.T, u *UI, status int, p Page) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := u.Render(rec, status, p); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return rec
}

// mustContain fails unless body contains every snippet.
func mustContain(t *testing.T, body string, snippets ...string) {
	t.Helper()
	for _, s := range snippets {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %q", s)
		}
	}
}

func mustNotContain(t *testing.T, body string, snippets ...string) {
	t.Helper()
	for _, s := range snippets {
		if strings.Contains(body, s) {
			t.Errorf("page contains %q", s)
		}
	}
}

const wantCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; script-src 'self'; base-uri 'none'"

func TestSetPageHeaders(t *testing.T) {
	h := http.Header{}
	SetPageHeaders(h)
	want := map[string]string{
		"Content-Security-Policy": wantCSP,
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("headers = %v, want exactly %v", h, want)
	}
	if h.Get("Cross-Origin-Opener-Policy") != "" {
		t.Error("COOP would cut window.opener for clients that log in through a popup")
	}
}

func TestContentSecurityPolicyFormAction(t *testing.T) {
	tests := []struct {
		name    string
		targets []string
		want    string // the form-action directive
	}{
		{"no target allows only our origin", nil, "form-action 'self'"},
		{"an https client adds its origin", []string{"https://shop.example.com/callback?x=1"}, "form-action 'self' https://shop.example.com"},
		{"an explicit port is kept", []string{"https://shop.example.com:8443/cb"}, "form-action 'self' https://shop.example.com:8443"},
		{"the host is lower-cased", []string{"https://Shop.Example.COM/cb"}, "form-action 'self' https://shop.example.com"},
		{"an IPv4 loopback client adds its origin and port", []string{"http://127.0.0.1:51004/callback"}, "form-action 'self' http://127.0.0.1:51004"},
		{"an IPv6 loopback client can only add its scheme", []string{"http://[::1]:51004/callback"}, "form-action 'self' http:"},
		{"a private-use scheme adds the scheme", []string{"com.example.app:/oauth2redirect"}, "form-action 'self' com.example.app:"},
		{"two targets of one origin add it once", []string{"https://a.example.com/1", "https://a.example.com/2"}, "form-action 'self' https://a.example.com"},
		{"an empty target adds nothing", []string{""}, "form-action 'self'"},
		{"javascript: is never added", []string{"javascript:alert(1)"}, "form-action 'self'"},
		{"data: is never added", []string{"data:text/html,x"}, "form-action 'self'"},
		{"a relative URI adds nothing", []string{"/callback"}, "form-action 'self'"},
		{"a semicolon cannot inject a directive", []string{"https://a.example.com;script-src*/cb"}, "form-action 'self'"},
		{"a space cannot inject a source", []string{"https://a.example.com%20*/cb"}, "form-action 'self'"},
		{"a non-punycode IDN host is left out", []string{"https://bücher.example/cb"}, "form-action 'self'"},
		{"a punycode IDN host is added", []string{"https://xn--bcher-kva.example/cb"}, "form-action 'self' https://xn--bcher-kva.example"},
		{"an https URI without a host adds nothing", []string{"https:///cb"}, "form-action 'self'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csp := ContentSecurityPolicy(tt.targets...)
			var formAction string
			for d := range strings.SplitSeq(csp, "; ") {
				if strings.HasPrefix(d, "form-action ") {
					formAction = d
				}
			}
			if formAction != tt.want {
				t.Fatalf("form-action = %q, want %q (CSP %q)", formAction, tt.want, csp)
			}
			if strings.Count(csp, ";") != 6 {
				t.Fatalf("CSP %q does not have exactly the seven directives", csp)
			}
		})
	}
}

func TestLoginPage(t *testing.T) {
	u := newUI(t, Options{})
	rec := render(t, u, 0, LoginPage{
		ClientName: "Shop", ClientID: "shop-web", RequestID: "req-123", CSRFToken: "tok-456",
		RedirectURI: "https://shop.example.com/callback",
	})
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Errorf("status = %d", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, "form-action 'self' https://shop.example.com;") {
		t.Errorf("CSP %q lacks the client's origin in form-action", got)
	}
	mustContain(t, body,
		`<html lang="en">`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<title>Sign in · Latchkey</title>`,
		`<main class="card" aria-labelledby="page-title">`,
		`<h1 id="page-title">Sign in</h1>`,
		`Latchkey</span>`,
		`to continue to <strong><bdi>Shop</bdi></strong>`,
		`<form method="post" action="/login">`,
		`<input type="hidden" name="csrf_token" value="tok-456">`,
		`<input type="hidden" name="request_id" value="req-123">`,
		`<label for="username">Username</label>`,
		`<input id="username" name="username" type="text" value="" autocomplete="username"`,
		`<label for="password">Password</label>`,
		`<input id="password" name="password" type="password" autocomplete="current-password"`,
		`<button type="submit" class="button primary block">Sign in</button>`,
		`Client ID <code>shop-web</code>`,
		`<link rel="stylesheet" href="/static/latchkey.css?v=`+stylesheetVersion+`">`,
	)
	mustNotContain(t, body, `role="alert"`)
	if !regexp.MustCompile(`id="username"[^>]*autofocus`).MatchString(body) {
		t.Error("an empty form should focus the username")
	}
}

func TestLoginPageAfterAFailedAttempt(t *testing.T) {
	u := newUI(t, Options{})
	body := render(t, u, http.StatusOK, LoginPage{
		ClientID: "shop-web", Username: "alice", Error: MessageInvalidCredentials, Action: "/auth/login",
	}).Body.String()
	mustContain(t, body,
		`<div class="alert" role="alert" id="login-error">Incorrect username or password.</div>`,
		`value="alice"`,
		`<form method="post" action="/auth/login">`,
		`to continue to <strong><bdi>shop-web</bdi></strong>`, // the ID stands in for a missing name
	)
	if !regexp.MustCompile(`id="password"[^>]*autofocus`).MatchString(body) {
		t.Error("with the username refilled, the password should have the focus")
	}
	if regexp.MustCompile(`id="password"[^>]*value=`).MatchString(body) {
		t.Error("the password field must never be refilled")
	}
}

func TestLoginMessagesNeverSayWhichPartWasWrong(t *testing.T) {
	for _, m := range []string{MessageInvalidCredentials, MessageTooManyAttempts, MessageUnavailable, MessageSessionExpired} {
		lower := strings.ToLower(m)
		for _, tell := range []string{"unknown", "no such", "not found", "does not exist", "password is", "username is", "wrong password", "wrong username"} {
			if strings.Contains(lower, tell) {
				t.Errorf("message %q says %q", m, tell)
			}
		}
	}
}

func TestConsentPage(t *testing.T) {
	u := newUI(t, Options{})
	rec := render(t, u, 0, ConsentPage{
		ClientName: "Shop", ClientID: "shop-web", Username: "alice",
		Scopes:    []string{"openid", "profile", "email", "offline_access", "orders.read"},
		RequestID: "req-1", CSRFToken: "tok-1", RedirectURI: "http://127.0.0.1:51004/cb",
	})
	body := rec.Body.String()
	mustContain(t, body,
		`<title>Allow access · Latchkey</title>`,
		`<strong><bdi>Shop</bdi></strong> wants to:`,
		`<span>Confirm your identity</span><span class="scope-name">openid</span>`,
		`<span>See your name and username</span><span class="scope-name">profile</span>`,
		`<span>See your email address</span><span class="scope-name">email</span>`,
		`<span>Stay signed in to the application while you are away</span><span class="scope-name">offline_access</span>`,
		`<code>orders.read</code>`,
		`Signed in as <strong><bdi>alice</bdi></strong>`,
		`Allowing takes you to <strong>127.0.0.1:51004</strong>`,
		`<form method="post" action="/consent" class="actions">`,
		`<input type="hidden" name="csrf_token" value="tok-1">`,
		`<input type="hidden" name="request_id" value="req-1">`,
		`<button type="submit" name="decision" value="deny" class="button secondary">Deny</button>`,
		`<button type="submit" name="decision" value="allow" class="button primary">Allow</button>`,
	)
	if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, "form-action 'self' http://127.0.0.1:51004;") {
		t.Errorf("CSP %q lacks the loopback origin", got)
	}
	none := render(t, u, 0, ConsentPage{ClientID: "shop-web"}).Body.String()
	mustContain(t, none, `wants to access your account.`)
	mustNotContain(t, none, `<ul class="scopes">`, `Signed in as`, `Allowing takes you to`)
}

func TestErrorPage(t *testing.T) {
	u := newUI(t, Options{})
	rec := render(t, u, http.StatusBadRequest, ErrorPage{
		Title: "Unknown redirect URI", Description: "The application sent a redirect URI it did not register.", Code: "invalid_request",
	})
	if rec.Code != http.StatusBadRequest {
		t.Errorf("status = %d", rec.Code)
	}
	if rec.Header().Get("Location") != "" {
		t.Error("an error page must not redirect")
	}
	mustContain(t, rec.Body.String(),
		`<h1 id="page-title">Unknown redirect URI</h1>`,
		`<p class="lead">The application sent a redirect URI it did not register.</p>`,
		`Error code <code>invalid_request</code>`,
	)
	if got := rec.Header().Get("Content-Security-Policy"); got != wantCSP {
		t.Errorf("CSP = %q", got)
	}
	mustContain(t, render(t, u, 500, ErrorPage{}).Body.String(), `<h1 id="page-title">Something went wrong</h1>`)
}

func TestRenderEscapesHostileInput(t *testing.T) {
	u := newUI(t, Options{})
	const script = `<script>alert(1)</script>`
	const breakout = `"><img src=x onerror=alert(1)>`
	pages := map[string]Page{
		"login": LoginPage{
			ClientName: script, ClientID: breakout, Username: breakout, RequestID: breakout, CSRFToken: breakout,
			Error: script, Action: "javascript:alert(1)", RedirectURI: "https://a.example.com/" + script,
		},
		"consent": ConsentPage{
			ClientName: script, ClientID: script, Username: script, Scopes: []string{script, breakout, "openid"},
			RequestID: breakout, CSRFToken: breakout, Action: breakout, RedirectURI: "https://x" + breakout,
		},
		"error": ErrorPage{Title: script, Description: breakout, Code: script},
	}
	for name, p := range pages {
		t.Run(name, func(t *testing.T) {
			rec := render(t, u, 0, p)
			body := rec.Body.String()
			mustNotContain(t, body, "<script", "<img", "javascript:", breakout)
			mustContain(t, body, "&lt;script&gt;")
			if csp := rec.Header().Get("Content-Security-Policy"); strings.ContainsAny(csp, "<>\"") || strings.Count(csp, ";") != 6 {
				t.Errorf("hostile input reached the CSP: %q", csp)
			}
		})
	}
}

// TestPagesNeedNothingTheCSPForbids: no script, no inline style, no event handler attribute, no
// resource from another origin, so the strict CSP blocks nothing on our own pages.
func TestPagesNeedNothingTheCSPForbids(t *testing.T) {
	u := newUI(t, Options{})
	forbidden := regexp.MustCompile(`(?i)<script|\sstyle=|<style|\son[a-z]+=|https?://|<iframe|<img|<base`)
	for _, p := range []Page{
		LoginPage{ClientName: "Shop", Error: MessageInvalidCredentials},
		ConsentPage{ClientName: "Shop", Scopes: []string{"openid", "x"}, Username: "alice"},
		ErrorPage{Title: "t", Description: "d", Code: "c"},
	} {
		body := render(t, u, 0, p).Body.String()
		if m := forbidden.FindString(body); m != "" {
			t.Errorf("%T contains %q", p, m)
		}
	}
	if m := regexp.MustCompile(`(?i)url\(|@import|https?://`).Find(stylesheet); m != nil {
		t.Errorf("the stylesheet loads something: %q", m)
	}
}

// brokenPage renders the login layout with data the template cannot use, to make rendering fail
// after part of the page was written into the buffer.
type brokenPage struct{}

func (brokenPage) view() (string, string, []string, any) { return "login", "Broken", nil, 42 }

func TestRenderFailureSendsACompleteErrorPage(t *testing.T) {
	u := newUI(t, Options{})
	for name, p := range map[string]Page{"a template error": brokenPage{}, "no page": nil} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := u.Render(rec, http.StatusOK, p); err == nil {
				t.Fatal("Render returned no error")
			}
			body := rec.Body.String()
			if rec.Code != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500", rec.Code)
			}
			if body != string(u.fallback) || !strings.HasSuffix(body, "</html>\n") {
				t.Errorf("body is not the complete fallback page:\n%s", body)
			}
			mustContain(t, body, "Something went wrong", "server_error")
			mustNotContain(t, body, "Broken", "42", "template", "goroutine")
			if rec.Header().Get("X-Frame-Options") != "DENY" || rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("the fallback page lacks the page headers: %v", rec.Header())
			}
		})
	}
}

func TestBasePath(t *testing.T) {
	u := newUI(t, Options{BasePath: "/auth/"})
	body := render(t, u, 0, ErrorPage{Title: "x"}).Body.String()
	mustContain(t, body, `href="/auth/static/latchkey.css?v=`)
	if _, err := New(Options{BasePath: "auth"}); err == nil {
		t.Error("a relative base path was accepted")
	}
}

func TestStylesheet(t *testing.T) {
	h := newUI(t, Options{}).Stylesheet()
	get := func(target string, hdr map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := get(StylesheetPath+"?v="+stylesheetVersion, nil)
	if rec.Code != http.StatusOK || rec.Body.String() != string(stylesheet) {
		t.Fatalf("status %d, %d bytes", rec.Code, rec.Body.Len())
	}
	for k, v := range map[string]string{
		"Content-Type":           "text/css; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "public, max-age=31536000, immutable",
		"ETag":                   `"` + stylesheetVersion + `"`,
	} {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := get(StylesheetPath+"?v=old", nil).Header().Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("a stale version is cached with %q", got)
	}
	if got := get(StylesheetPath, map[string]string{"If-None-Match": `"` + stylesheetVersion + `"`}).Code; got != http.StatusNotModified {
		t.Errorf("a conditional request got %d, want 304", got)
	}
}

func TestScopeDescription(t *testing.T) {
	for _, s := range []string{"openid", "profile", "email", "offline_access"} {
		if d, ok := ScopeDescription(s); !ok || d == "" {
			t.Errorf("%s has no description", s)
		}
	}
	if _, ok := ScopeDescription("orders.read"); ok {
		t.Error("a custom scope got a description")
	}
	if _, ok := ScopeDescription("OPENID"); ok {
		t.Error("scopes are case-sensitive (RFC 6749 §3.3)")
	}
}
