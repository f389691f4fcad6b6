package devmode

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/redistest"
)

// startDev runs the dev issuer on config/samples, in memory, listening on 127.0.0.1 with the
// issuer named http://localhost:<port>, as `make run` does on :8080.
func startDev(t *testing.T) (issuer string) {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(latchkeyv1.AddToScheme(scheme))
	port := redistest.FreePort(t)
	issuer = fmt.Sprintf("http://localhost:%d", port)
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Scheme:      scheme,
			Manifests:   "../../config/samples",
			Listen:      fmt.Sprintf("127.0.0.1:%d", port),
			Issuer:      issuer,
			Namespace:   "default",
			SigningKey:  "default",
			UsersSecret: "latchkey-users",
			Log:         logr.Discard(),
			Out:         io.Discard,
			Ready:       func(addr string) { ready <- addr },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the dev issuer did not start")
	}
	return issuer
}

var (
	hiddenRe  = regexp.MustCompile(`name="(request_id|csrf_token)" value="([^"]*)"`)
	refreshRe = regexp.MustCompile(`refresh_token='([^']+)'`)
	preRe     = regexp.MustCompile(`(?s)<pre id="(access-claims|id-claims)">(.*?)</pre>`)
)

// A person opens the issuer's /demo (on localhost, as the banner prints it), signs in as the
// demo user and consents, and the demo page on 127.0.0.1 shows the tokens' claims and a refresh
// command that works. Driven by an HTTP client with a cookie jar, which keeps cookies per host
// as a browser does.
func TestDemoClient(t *testing.T) {
	issuer := startDev(t)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	get := func(u string) (*http.Response, string) {
		t.Helper()
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	submit := func(resp *http.Response, body, path string, extra url.Values) (*http.Response, string) {
		t.Helper()
		form := url.Values{}
		for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
			form.Set(m[1], html.UnescapeString(m[2]))
		}
		if len(form) != 2 {
			t.Fatalf("no form at %s: %d %s", resp.Request.URL, resp.StatusCode, body)
		}
		for k, v := range extra {
			form[k] = v
		}
		u := *resp.Request.URL
		u.Path, u.RawQuery = path, ""
		next, err := hc.PostForm(u.String(), form)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = next.Body.Close() }()
		b, _ := io.ReadAll(next.Body)
		return next, string(b)
	}

	resp, body := get(issuer + "/demo")
	if resp.Request.URL.Path != "/login" || !strings.HasPrefix(resp.Request.URL.String(), issuer) {
		t.Fatalf("/demo led to %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	// The demo moved to 127.0.0.1 before it set its cookie, so the callback will find it.
	hops := []string{}
	for r := resp.Request; r != nil; r = r.Response.Request {
		hops = append([]string{r.URL.Host + r.URL.Path}, hops...)
		if r.Response == nil {
			break
		}
	}
	if len(hops) < 3 || !strings.HasPrefix(hops[1], "127.0.0.1:") || !strings.HasSuffix(hops[1], "/demo") {
		t.Fatalf("redirect chain %v", hops)
	}
	resp, body = submit(resp, body, "/login", url.Values{"username": {"alice"}, "password": {DemoPassword}})
	if resp.Request.URL.Path != "/consent" {
		t.Fatalf("after login: %s %d %s", resp.Request.URL, resp.StatusCode, body)
	}
	resp, body = submit(resp, body, "/consent", url.Values{"decision": {"allow"}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != DemoCallbackPath || !strings.HasPrefix(resp.Request.URL.Host, "127.0.0.1:") {
		t.Fatalf("after consent: %s %d %s", resp.Request.URL, resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("demo page headers %v", resp.Header)
	}
	claims := map[string]map[string]any{}
	for _, m := range preRe.FindAllStringSubmatch(body, -1) {
		var c map[string]any
		if err := json.Unmarshal([]byte(html.UnescapeString(m[2])), &c); err != nil {
			t.Fatalf("%s: %v", m[1], err)
		}
		claims[m[1]] = c
	}
	at, id := claims["access-claims"], claims["id-claims"]
	if at["sub"] != "alice" || at["client_id"] != DemoClientID || at["aud"] != "notes-api" || at["iss"] != issuer {
		t.Fatalf("access token claims %v", at)
	}
	if id["sub"] != "alice" || id["aud"] != DemoClientID || id["email"] != "alice@example.com" || id["name"] != "Alice Liddell" {
		t.Fatalf("id token claims %v", id)
	}

	// The refresh command works (the same request, made here without a shell).
	m := refreshRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no refresh command in %s", body)
	}
	rt := html.UnescapeString(m[1])
	refresh, err := http.PostForm(issuer+"/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {DemoClientID}, "refresh_token": {rt}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = refresh.Body.Close() }()
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(refresh.Body).Decode(&tok); err != nil || refresh.StatusCode != 200 || tok.RefreshToken == "" || tok.RefreshToken == rt {
		t.Fatalf("refresh: %d %v %+v", refresh.StatusCode, err, tok)
	}

	// The callback is one-shot: the cookie is gone, so a replayed callback shows an error.
	replay, body := get(resp.Request.URL.String())
	if replay.StatusCode != http.StatusBadRequest || !strings.Contains(body, "no demo in progress") {
		t.Fatalf("replayed callback: %d %s", replay.StatusCode, body)
	}
}

// A callback whose state is not the one this browser sent is refused before any exchange.
func TestDemoCallbackChecksState(t *testing.T) {
	issuer := startDev(t)
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/authorize" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := hc.Get(issuer + "/demo")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	callback := resp.Request.URL.Scheme + "://" + resp.Request.URL.Host + DemoCallbackPath
	for name, q := range map[string]url.Values{
		"another state":  {"state": {"forged"}, "code": {"x"}, "iss": {issuer}},
		"another issuer": {"state": {loc.Query().Get("state")}, "code": {"x"}, "iss": {"https://evil.example"}},
	} {
		t.Run(name, func(t *testing.T) {
			// Each attempt needs a demo in progress.
			r, err := hc.Get(issuer + "/demo")
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Body.Close()
			l, _ := url.Parse(r.Header.Get("Location"))
			if name == "another issuer" {
				q.Set("state", l.Query().Get("state"))
			}
			r, err = hc.Get(callback + "?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			_ = r.Body.Close()
			if r.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `id="demo-error"`) {
				t.Fatalf("%d %s", r.StatusCode, b)
			}
		})
	}
}
