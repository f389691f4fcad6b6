package server_test

// Real Chromium (internal/browsertest, chromedp) against the real server over HTTP with a real
// Redis: what only a browser enforces. The 303 after the login and consent posts reaches the
// client on another origin under the pages' CSP, the failed-login message is generic, and a
// framed login page does not render. TestBrowserScreenshots takes the README's pictures from
// these real pages.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/browsertest"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// servedFlowEnv is a flowEnv on a loopback HTTP server whose URL is the issuer; its clock stays
// the fake one.
func servedFlowEnv(t *testing.T, extra []envOption, opts ...flowOption) (*flowEnv, *httptest.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newFlowEnv(t, append([]envOption{withIssuer("http://" + ln.Addr().String())}, extra...), opts...)
	ts := httptest.NewUnstartedServer(e.h)
	_ = ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return e, ts
}

// appServer is the OAuth client's site on a loopback port: it records what arrives at its
// /callback.
type appServer struct {
	srv     *httptest.Server
	arrived chan *http.Request
}

func newAppServer(t *testing.T) *appServer {
	t.Helper()
	a := &appServer{arrived: make(chan *http.Request, 4)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if r.URL.Path == "/callback" {
			select {
			case a.arrived <- r:
			default:
			}
		}
		_, _ = fmt.Fprint(w, `<!doctype html><title>App</title><h1 id="landed">Back at the app</h1>`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// redirect is the app's redirect URI on its port (the spa registers http://127.0.0.1/callback,
// which matches any port).
func (a *appServer) redirect() string { return a.srv.URL + "/callback" }

func (a *appServer) wait(ctx context.Context, t *testing.T) *http.Request {
	t.Helper()
	select {
	case r := <-a.arrived:
		return r
	case <-ctx.Done():
		t.Fatalf("the browser never arrived at %s: %v", a.redirect(), ctx.Err())
		return nil
	}
}

func browserSignIn(ctx context.Context, t *testing.T, username, password string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), username),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
}

// A person signs in, consents, and arrives at the client's redirect URI with a code, state and
// iss, by GET (the 303s), with no body; the code then exchanges for tokens.
func TestBrowserLoginConsentAndRedirect(t *testing.T) {
	e, ts := servedFlowEnv(t, nil, func(spa, _ *latchkeyv1.OAuthClient) { spa.Spec.RequireConsent = true })
	app := newAppServer(t)
	ctx := browsertest.New(t)
	p := newPKCE()
	e.logs.forbid(p.verifier)
	q := authz("spa", app.redirect(), "openid profile read", p)
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/authorize?"+q.Encode())); err != nil {
		t.Fatal(err)
	}
	browserSignIn(ctx, t, "alice", alicePassword)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`))); err != nil {
		t.Fatalf("no consent page: %v", err)
	}
	scopes, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".scopes")))
	if err != nil || !strings.Contains(scopes, "Confirm your identity") || !strings.Contains(scopes, "read") {
		t.Fatalf("scopes %q (%v)", scopes, err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value="allow"]`))); err != nil {
		t.Fatal(err)
	}
	r := app.wait(ctx, t)
	if r.Method != http.MethodGet {
		t.Fatalf("the app got a %s", r.Method)
	}
	if body, _ := io.ReadAll(r.Body); len(body) != 0 {
		t.Fatalf("the app got a body %q", body)
	}
	if r.URL.Query().Get("state") != "st-spa" || r.URL.Query().Get("iss") != ts.URL || r.URL.Query().Get("code") == "" {
		t.Fatalf("the app got %s", r.URL)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("landed"))); err != nil {
		t.Fatalf("the app's page did not show: %v", err)
	}
	code := r.URL.Query().Get("code")
	e.logs.forbid(code)
	e.tokensFrom(t, e.exchange(code, p.verifier, app.redirect()))
}

// A wrong password and an unknown user show the same alert, which says neither.
func TestBrowserWrongPasswordIsGeneric(t *testing.T) {
	_, ts := servedFlowEnv(t, nil)
	ctx := browsertest.New(t)
	var alerts []string
	for _, attempt := range [][2]string{{"alice", "not-the-password"}, {"mallory", alicePassword}} {
		q := authz("spa", spaRedirect, "openid", newPKCE())
		if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/authorize?"+q.Encode())); err != nil {
			t.Fatal(err)
		}
		browserSignIn(ctx, t, attempt[0], attempt[1])
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`[role="alert"]`))); err != nil {
			t.Fatal(err)
		}
		alert, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[role="alert"]`)))
		if err != nil {
			t.Fatal(err)
		}
		pw, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("password")))
		if err != nil {
			t.Fatal(err)
		}
		if pw != "" {
			t.Fatalf("the password field was refilled")
		}
		alerts = append(alerts, strings.TrimSpace(alert))
	}
	if alerts[0] != "Incorrect username or password." || alerts[1] != alerts[0] {
		t.Fatalf("alerts %q", alerts)
	}
}

// A page on another origin that frames the real login page (a live request of this browser,
// so the page would render for it) gets Chromium's error page: cross-site, and same-site on
// another port, which carries the cookies. The control, the app's own page, renders in the
// same frame.
func TestBrowserFramedLoginPageDoesNotRender(t *testing.T) {
	_, ts := servedFlowEnv(t, nil)
	app := newAppServer(t)
	for _, tt := range []struct {
		name, host string
		control    bool
	}{
		{"cross-site", "localhost", false},
		{"same site, another port", "127.0.0.1", false},
		{"control: a page without the headers renders", "localhost", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := browsertest.New(t)
			q := authz("spa", spaRedirect, "openid", newPKCE())
			err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/authorize?"+q.Encode()), chromedp.WaitVisible(chromedp.ID("username")))
			if err != nil {
				t.Fatal(err)
			}
			loginURL, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil || !strings.Contains(loginURL, "/login?request_id=") {
				t.Fatalf("login page at %q: %v", loginURL, err)
			}
			src := loginURL
			if tt.control {
				src = app.srv.URL + "/landing"
			}
			attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = fmt.Fprintf(w, `<!doctype html><title>Win a prize</title><iframe src="%s" width="500" height="600"></iframe>`, src)
			}))
			t.Cleanup(attacker.Close)
			_, port, _ := net.SplitHostPort(attacker.Listener.Addr().String())
			if err := chromedp.Do(ctx, chromedp.Navigate("http://"+net.JoinHostPort(tt.host, port)+"/")); err != nil {
				t.Fatal(err)
			}
			href, err := browsertest.FrameURL(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			if tt.control {
				if href != src {
					t.Fatalf("the control frame shows %q", href)
				}
				return
			}
			if href != browsertest.ErrorPageURL {
				t.Fatalf("the framed login page shows %q, want Chromium's refusal", href)
			}
		})
	}
}

// TestBrowserScreenshots takes the README's pictures of the real login and consent pages. With
// UPDATE_SCREENSHOTS=1 it writes docs/images/login.png and docs/images/consent.png; otherwise
// it writes them to a temporary directory, so the path is exercised on every run.
func TestBrowserScreenshots(t *testing.T) {
	dir := t.TempDir()
	if browsertest.UpdateScreenshots() {
		dir = filepath.Join(browsertest.RepoRoot(t), "docs", "images")
	}
	shop := servertest.PublicClient("shop-web", "shop", servertest.WithClientID("shop-web"),
		servertest.WithRedirectURIs("https://shop.example.com/callback"),
		servertest.WithScopes("openid", "profile", "email", "offline_access", "orders.read"))
	shop.Spec.RequireConsent = true
	_, ts := servedFlowEnv(t, []envOption{withObjects(shop)})
	ctx := browsertest.New(t)
	q := authz("shop-web", "https://shop.example.com/callback", "openid profile email offline_access orders.read", newPKCE())
	shot := func(ready, file string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(ready)),
			// The caret blinks and focus rings move; a blurred page gives the same picture.
			chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, file)
		if err := browsertest.Screenshot(ctx, path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) || len(data) < 1000 {
			t.Fatalf("%s is not a PNG of a page (%d bytes, %v)", path, len(data), err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/authorize?"+q.Encode())); err != nil {
		t.Fatal(err)
	}
	shot("#username", "login.png")
	browserSignIn(ctx, t, "alice", alicePassword)
	shot(`button[value="allow"]`, "consent.png")
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, ts.URL+"/consent?") {
		t.Fatalf("the consent page is at %q (%v)", loc, err)
	}
	if u, _ := url.Parse(loc); u.Query().Get("request_id") == "" {
		t.Fatal("no request id")
	}
}
