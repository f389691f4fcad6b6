package ui_test

// Browser tests: a real headless Chromium (internal/browsertest) drives the pages, served by a
// tiny authorization server made of this package, server/users and a few test handlers. They
// check what only a browser enforces: the CSP lets the form post end in a 303 to the client on
// another origin, a framed page does not render, and the error after a failed login is generic.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/browsertest"
	"github.com/latchkey-dev/latchkey/server/ui"
	"github.com/latchkey-dev/latchkey/server/users"
)

// The demo user of config/samples/users.yaml.
const (
	aliceHash     = "$2a$10$Jqi2lZ39ZyirSBRACgKkbOaeePAAcb7FrCXYbTeb16jeoDQtrwErO"
	alicePassword = "latchkey-demo"
	requestID     = "req-7d3f"
	csrfToken     = "csrf-91b2"
)

// clientApp is the OAuth client's site: it records what arrives at its redirect URI.
type clientApp struct {
	srv      *httptest.Server
	redirect string // the redirect URI, on this server
	arrived  chan *http.Request
}

// newClientApp starts the client on listenAddr and names it by host in its redirect URI, so a
// test can put the client on another site ("localhost") or on a loopback IP.
func newClientApp(t *testing.T, listenAddr, host string) *clientApp {
	t.Helper()
	c := &clientApp{arrived: make(chan *http.Request, 4)}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case c.arrived <- r:
		default:
		}
		_, _ = fmt.Fprint(w, `<!doctype html><title>Shop</title><h1 id="landed">Back at the shop</h1>`)
	}))
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		t.Fatalf("listen on %s: %v", listenAddr, err)
	}
	_ = c.srv.Listener.Close()
	c.srv.Listener = ln
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c.redirect = "http://" + net.JoinHostPort(host, port) + "/callback"
	return c
}

// wait returns the next request at the client, or fails when ctx ends first.
func (c *clientApp) wait(ctx context.Context, t *testing.T) *http.Request {
	t.Helper()
	select {
	case r := <-c.arrived:
		return r
	case <-ctx.Done():
		t.Fatalf("the browser never arrived at the client %s: %v", c.redirect, ctx.Err())
		return nil
	}
}

// authServer is a minimal authorization server: the ui pages, users from a users Secret, and a
// 303 to the client after a successful post, as the real /login and /consent will do.
type authServer struct {
	srv *httptest.Server
	// formTarget is given to the pages as RedirectURI: the client's redirect URI, or "" to see
	// what form-action 'self' alone does.
	formTarget string
	// redirectTo is where a successful post 303s to.
	redirectTo string
	// consent makes the login post go to the consent page first.
	consent bool
	// framable strips the anti-framing headers: the control case of the framing test.
	framable bool

	stylesheetHits atomic.Int32
	cspReports     chan cspReport
}

type cspReport struct {
	Body struct {
		EffectiveDirective string `json:"effective-directive"`
		ViolatedDirective  string `json:"violated-directive"`
		BlockedURI         string `json:"blocked-uri"`
	} `json:"csp-report"`
}

func newAuthServer(t *testing.T, client *clientApp) *authServer {
	t.Helper()
	u, err := ui.New(ui.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "latchkey-users", Namespace: "latchkey-system"},
		Data: map[string][]byte{latchkeyv1.UsersDataKey: fmt.Appendf(nil,
			"- {username: alice, passwordHash: %q, roles: [user]}\n", aliceHash)},
	}
	dir := users.NewDirectory(fake.NewClientBuilder().WithObjects(secret).Build(), "latchkey-system", "latchkey-users")
	a := &authServer{cspReports: make(chan cspReport, 16)}
	if client != nil {
		a.formTarget, a.redirectTo = client.redirect, client.redirect
	}

	render := func(w http.ResponseWriter, status int, p ui.Page) {
		if err := u.Render(&testHeaders{ResponseWriter: w, a: a}, status, p); err != nil {
			t.Errorf("render: %v", err)
		}
	}
	checkForm := func(w http.ResponseWriter, r *http.Request) bool {
		if r.PostFormValue(ui.FieldCSRFToken) != csrfToken || r.PostFormValue(ui.FieldRequestID) != requestID {
			render(w, http.StatusForbidden, ui.ErrorPage{Title: "Request refused", Description: "The form expired.", Code: "access_denied"})
			return false
		}
		return true
	}
	loginPage := ui.LoginPage{ClientName: "Shop", ClientID: "shop-web", RequestID: requestID, CSRFToken: csrfToken}

	mux := http.NewServeMux()
	mux.Handle("GET "+ui.StylesheetPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.stylesheetHits.Add(1)
		u.Stylesheet().ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		p := loginPage
		p.RedirectURI = a.formTarget
		render(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if !checkForm(w, r) {
			return
		}
		username := r.PostFormValue(ui.FieldUsername)
		_, err := dir.Authenticate(r.Context(), username, r.PostFormValue(ui.FieldPassword))
		switch {
		case errors.Is(err, users.ErrInvalidCredentials):
			p := loginPage
			p.RedirectURI, p.Username, p.Error = a.formTarget, username, ui.MessageInvalidCredentials
			render(w, http.StatusOK, p)
		case err != nil:
			render(w, http.StatusServiceUnavailable, ui.ErrorPage{Title: "Unavailable", Code: "temporarily_unavailable"})
		case a.consent:
			http.Redirect(w, r, "/consent", http.StatusSeeOther)
		default:
			// RFC 9700 §4.12: 303, so the browser follows with a GET and the password is
			// not posted again to the client.
			http.Redirect(w, r, a.redirectTo+"?code=code-123&state=st&iss=test", http.StatusSeeOther)
		}
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusOK, ui.ConsentPage{
			ClientName: "Shop", ClientID: "shop-web", Username: "alice",
			Scopes:    []string{"openid", "profile", "email", "offline_access", "orders.read"},
			RequestID: requestID, CSRFToken: csrfToken, RedirectURI: a.formTarget,
		})
	})
	mux.HandleFunc("POST /consent", func(w http.ResponseWriter, r *http.Request) {
		if !checkForm(w, r) {
			return
		}
		q := "code=code-456&state=st"
		if r.PostFormValue(ui.FieldDecision) != ui.DecisionAllow {
			q = "error=access_denied&state=st"
		}
		http.Redirect(w, r, a.redirectTo+"?"+q, http.StatusSeeOther)
	})
	mux.HandleFunc("POST /csp-report", func(w http.ResponseWriter, r *http.Request) {
		var rep cspReport
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&rep); err == nil {
			select {
			case a.cspReports <- rep:
			default:
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// testHeaders adjusts the headers Render set, just before they are sent: it asks the browser to
// report every CSP violation to /csp-report, so a test can see a block happen instead of waiting
// for something not to happen, and for the control case it removes the anti-framing headers.
type testHeaders struct {
	http.ResponseWriter
	a *authServer
}

func (w *testHeaders) WriteHeader(status int) {
	h := w.Header()
	csp := h.Get("Content-Security-Policy")
	if w.a.framable {
		h.Del("X-Frame-Options")
		csp = strings.Replace(csp, "frame-ancestors 'none'", "frame-ancestors *", 1)
	}
	h.Set("Content-Security-Policy", csp+"; report-uri /csp-report")
	w.ResponseWriter.WriteHeader(status)
}

// signIn fills the login form and submits it.
func signIn(ctx context.Context, t *testing.T, loginURL, username, password string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(loginURL),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), username),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
	if err != nil {
		t.Fatalf("sign in at %s: %v", loginURL, err)
	}
}

// checkArrival checks that the browser came to the client by GET, at the redirect with the
// given query, carrying no form body (the 303 turned the POST into a GET).
func checkArrival(ctx context.Context, t *testing.T, c *clientApp, wantQuery string) {
	t.Helper()
	r := c.wait(ctx, t)
	if r.Method != http.MethodGet {
		t.Errorf("the client got a %s, want GET after a 303", r.Method)
	}
	if body, _ := io.ReadAll(r.Body); len(body) != 0 {
		t.Errorf("the client got a body: %q", body)
	}
	if r.URL.Path != "/callback" || r.URL.RawQuery != wantQuery {
		t.Errorf("the client got %s, want /callback?%s", r.URL, wantQuery)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("landed"))); err != nil {
		t.Fatalf("the client's page did not show: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, c.redirect+"?") {
		t.Errorf("the browser is at %q (%v), want the redirect URI %s", loc, err, c.redirect)
	}
}

// TestLoginPostRedirectsToTheClient is the finding behind LoginPage.RedirectURI: with the
// client's origin in form-action, the 303 after the login post reaches the client, on another
// site, on a loopback IP and port, and on the IPv6 loopback.
func TestLoginPostRedirectsToTheClient(t *testing.T) {
	for _, tt := range []struct {
		name, listen, host string
	}{
		{"a client on another site", "127.0.0.1:0", "localhost"},
		{"a native app on an IPv4 loopback port", "127.0.0.1:0", "127.0.0.1"},
		{"a native app on an IPv6 loopback port", "[::1]:0", "::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := browsertest.New(t)
			client := newClientApp(t, tt.listen, tt.host)
			auth := newAuthServer(t, client)
			signIn(ctx, t, auth.srv.URL+"/login", "alice", alicePassword)
			checkArrival(ctx, t, client, "code=code-123&state=st&iss=test")
			select {
			case rep := <-auth.cspReports:
				t.Errorf("the login page violated its CSP: %+v", rep.Body)
			default:
			}
		})
	}
}

// TestFormActionSelfAloneBlocksTheRedirectToTheClient records why RedirectURI exists: Chromium
// applies form-action to the redirect after a form post (CSP3 §6.4.2), so with form-action
// 'self' only, the 303 to the client is refused and the user stays on the login page.
func TestFormActionSelfAloneBlocksTheRedirectToTheClient(t *testing.T) {
	ctx := browsertest.New(t)
	client := newClientApp(t, "127.0.0.1:0", "localhost")
	auth := newAuthServer(t, client)
	auth.formTarget = "" // the page gets form-action 'self' only
	signIn(ctx, t, auth.srv.URL+"/login", "alice", alicePassword)
	select {
	case rep := <-auth.cspReports:
		if rep.Body.EffectiveDirective != "form-action" {
			t.Fatalf("CSP report for %q, want form-action: %+v", rep.Body.EffectiveDirective, rep.Body)
		}
	case r := <-client.arrived:
		t.Fatalf("the redirect reached the client (%s): Chromium no longer applies form-action to "+
			"redirects, so the extra source in form-action could go", r.URL)
	case <-ctx.Done():
		t.Fatal("no CSP report and no arrival")
	}
	// The browser refused the navigation, so nothing reached the client.
	select {
	case r := <-client.arrived:
		t.Fatalf("the client got %s although the browser reported a block", r.URL)
	default:
	}
}

func TestConsentAllowAndDenyRedirectToTheClient(t *testing.T) {
	for _, tt := range []struct {
		button, wantQuery string
	}{
		{ui.DecisionAllow, "code=code-456&state=st"},
		{ui.DecisionDeny, "error=access_denied&state=st"},
	} {
		t.Run(tt.button, func(t *testing.T) {
			ctx := browsertest.New(t)
			client := newClientApp(t, "127.0.0.1:0", "localhost")
			auth := newAuthServer(t, client)
			auth.consent = true
			signIn(ctx, t, auth.srv.URL+"/login", "alice", alicePassword)
			if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`))); err != nil {
				t.Fatalf("no consent page after signing in: %v", err)
			}
			scopes, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".scopes")))
			if err != nil || !strings.Contains(scopes, "See your email address") || !strings.Contains(scopes, "orders.read") {
				t.Errorf("the consent page lists %q (%v)", scopes, err)
			}
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[name="decision"][value="`+tt.button+`"]`))); err != nil {
				t.Fatal(err)
			}
			checkArrival(ctx, t, client, tt.wantQuery)
		})
	}
}

// TestFailedLoginShowsTheSameGenericError: a wrong password and an unknown user get the same
// alert, which says neither, and the password is not kept in the form.
func TestFailedLoginShowsTheSameGenericError(t *testing.T) {
	ctx := browsertest.New(t)
	auth := newAuthServer(t, newClientApp(t, "127.0.0.1:0", "localhost"))
	var alerts []string
	for _, attempt := range []struct{ username, password string }{
		{"alice", "not-the-password"},
		{"mallory", alicePassword},
	} {
		signIn(ctx, t, auth.srv.URL+"/login", attempt.username, attempt.password)
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`[role="alert"]`))); err != nil {
			t.Fatalf("%s: no alert: %v", attempt.username, err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[role="alert"]`)))
		if err != nil {
			t.Fatal(err)
		}
		alerts = append(alerts, strings.TrimSpace(text))
		if pw, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("password"))); err != nil || pw != "" {
			t.Errorf("%s: the password field holds %q (%v)", attempt.username, pw, err)
		}
		if un, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("username"))); err != nil || un != attempt.username {
			t.Errorf("%s: the username field holds %q (%v)", attempt.username, un, err)
		}
	}
	if alerts[0] != ui.MessageInvalidCredentials || alerts[1] != alerts[0] {
		t.Fatalf("alerts = %q, want %q twice", alerts, ui.MessageInvalidCredentials)
	}
}

// TestFramedLoginPageDoesNotRender: a page on another origin that frames the login page gets
// Chromium's error page in the frame, and the login page's stylesheet is never even fetched.
// The control case (the same page without the anti-framing headers) renders, which shows the
// check can tell the two apart.
func TestFramedLoginPageDoesNotRender(t *testing.T) {
	for _, tt := range []struct {
		name         string
		attackerHost string // cross-site ("localhost") or same-site, cross-origin ("127.0.0.1")
		framable     bool
	}{
		{"framed from another site", "localhost", false},
		{"framed from another port of the same host", "127.0.0.1", false},
		{"control: without the headers it renders", "localhost", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := browsertest.New(t)
			auth := newAuthServer(t, newClientApp(t, "127.0.0.1:0", "localhost"))
			auth.framable = tt.framable
			loginURL := auth.srv.URL + "/login"
			attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = fmt.Fprintf(w, `<!doctype html><title>Win a prize</title><h1>Click the button!</h1>`+
					`<iframe src="%s" title="login" width="500" height="600"></iframe>`, loginURL)
			}))
			t.Cleanup(attacker.Close)
			_, port, _ := net.SplitHostPort(attacker.Listener.Addr().String())
			attackerURL := "http://" + net.JoinHostPort(tt.attackerHost, port) + "/"

			if err := chromedp.Do(ctx, chromedp.Navigate(attackerURL)); err != nil {
				t.Fatal(err)
			}
			href, err := browsertest.FrameURL(ctx, loginURL)
			if err != nil {
				t.Fatal(err)
			}
			hits := auth.stylesheetHits.Load()
			if tt.framable {
				if href != loginURL || hits == 0 {
					t.Fatalf("the control frame shows %q with %d stylesheet loads, want the login page", href, hits)
				}
				return
			}
			if href != browsertest.ErrorPageURL {
				t.Fatalf("the framed login page shows %q, want Chromium's refusal %s", href, browsertest.ErrorPageURL)
			}
			if hits != 0 {
				t.Fatalf("the framed login page loaded its stylesheet %d times: it rendered", hits)
			}
		})
	}
}

// TestStylesheetAppliesUnderTheCSP: the page's own CSP lets its stylesheet in (style-src
// 'self', text/css with nosniff), so the page looks as designed.
func TestStylesheetAppliesUnderTheCSP(t *testing.T) {
	ctx := browsertest.New(t)
	auth := newAuthServer(t, newClientApp(t, "127.0.0.1:0", "localhost"))
	if err := chromedp.Do(ctx, chromedp.Navigate(auth.srv.URL+"/login"), chromedp.WaitVisible(chromedp.ID("username"))); err != nil {
		t.Fatal(err)
	}
	bg, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`getComputedStyle(document.querySelector('button[type="submit"]')).backgroundColor`))
	if err != nil {
		t.Fatal(err)
	}
	if bg != "rgb(29, 78, 216)" {
		t.Fatalf("the submit button's background is %q: the stylesheet did not apply", bg)
	}
}

// TestScreenshots takes pictures of the login and consent pages of this package's test server,
// into a temporary directory, so the screenshot path is exercised on every run. The README's
// pictures (docs/images) come from the real server's pages: server.TestBrowserScreenshots.
func TestScreenshots(t *testing.T) {
	dir := t.TempDir()
	ctx := browsertest.New(t)
	auth := newAuthServer(t, newClientApp(t, "127.0.0.1:0", "localhost"))
	// A stable, realistic destination for the consent page's "Allowing takes you to ..." line;
	// nothing is posted in this test.
	auth.formTarget = "https://shop.example.com/callback"
	for _, shot := range []struct {
		path, file string
		ready      chromedp.CSS
	}{
		{"/login", "login.png", "#username"},
		{"/consent", "consent.png", `button[value="allow"]`},
	} {
		if err := chromedp.Do(ctx, chromedp.Navigate(auth.srv.URL+shot.path), chromedp.WaitVisible(shot.ready)); err != nil {
			t.Fatal(err)
		}
		// The caret blinks and focus rings move; a blurred page gives the same picture each run.
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, shot.file)
		if err := browsertest.Screenshot(ctx, path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) || len(data) < 1000 {
			t.Fatalf("%s is not a PNG of a page (%d bytes)", path, len(data))
		}
	}
}
