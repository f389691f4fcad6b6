package server_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/pkce"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// The users of the code-flow tests. alice's hash is the demo user's of config/samples.
const (
	aliceHash     = "$2a$10$Jqi2lZ39ZyirSBRACgKkbOaeePAAcb7FrCXYbTeb16jeoDQtrwErO"
	alicePassword = "latchkey-demo"
	// spaRedirect is the public client's one redirect URI; webRedirect and webRedirect2 the
	// confidential client's two.
	spaRedirect  = "http://127.0.0.1/callback"
	webRedirect  = "https://web.example.test/cb"
	webRedirect2 = "https://web.example.test/cb2"
)

// usersSecret lists alice and a user named like the svc client (SECURITY-CASES 29), both with
// the demo password, and extra users in the same form.
func usersSecret(extra ...string) *corev1.Secret {
	doc := fmt.Sprintf("- {username: alice, passwordHash: %q, email: alice@example.com, name: Alice Liddell, roles: [admin, user]}\n"+
		"- {username: svc, passwordHash: %q, roles: [user]}\n", aliceHash, aliceHash)
	for _, u := range extra {
		doc += fmt.Sprintf("- {username: %s, passwordHash: %q, roles: [user]}\n", u, aliceHash)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "latchkey-users", Namespace: servertest.Namespace,
			Labels: map[string]string{latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeUsers}},
		Data: map[string][]byte{latchkeyv1.UsersDataKey: []byte(doc)},
	}
	return s
}

// flowEnv is an env with users and two code-flow clients:
//   - spa: public, authorization_code + refresh_token, one loopback redirect URI, scopes openid
//     profile email offline_access read, no consent;
//   - web: confidential (client_secret_basic), authorization_code + refresh_token, two redirect
//     URIs, scopes openid profile email read write, requireConsent.
type flowEnv struct {
	*env
	spa       *latchkeyv1.OAuthClient
	web       *latchkeyv1.OAuthClient
	webSecret string
}

type flowOption func(spa, web *latchkeyv1.OAuthClient)

func newFlowEnv(t *testing.T, envOpts []envOption, opts ...flowOption) *flowEnv {
	t.Helper()
	spa := servertest.PublicClient("spa", "apps", servertest.WithClientID("spa"),
		servertest.WithScopes("openid", "profile", "email", "offline_access", "read"),
		servertest.WithCORSOrigins("http://127.0.0.1:5173"))
	web, webSecret := servertest.ConfidentialClient("web", "apps", servertest.WithClientID("web"),
		servertest.WithGrants(latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantRefreshToken),
		servertest.WithRedirectURIs(webRedirect, webRedirect2),
		servertest.WithScopes("openid", "profile", "email", "read", "write"))
	web.Spec.RequireConsent = true
	for _, o := range opts {
		o(spa, web)
	}
	objs := []client.Object{spa, web, webSecret, usersSecret()}
	e := newEnv(t, append([]envOption{withObjects(objs...)}, envOpts...)...)
	fe := &flowEnv{env: e, spa: spa, web: web, webSecret: servertest.SecretOf(webSecret)}
	e.logs.forbid(fe.webSecret, alicePassword)
	return fe
}

// browser is a user agent over the handler: it keeps cookies (whatever their Secure flag,
// since the handler is called directly) and a client address.
type browser struct {
	t      *testing.T
	e      *flowEnv
	mu     sync.Mutex
	jar    map[string]*http.Cookie
	remote string
	// edit, when set, changes every request before it is sent.
	edit func(*http.Request)
}

func (e *flowEnv) browser(t *testing.T) *browser {
	return &browser{t: t, e: e, jar: map[string]*http.Cookie{}, remote: "192.0.2.10:40000"}
}

// do sends req with the browser's cookies and keeps the cookies of the response.
func (b *browser) do(req *http.Request) *httptest.ResponseRecorder {
	b.t.Helper()
	b.mu.Lock()
	for _, c := range b.jar {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	b.mu.Unlock()
	req.RemoteAddr = b.remote
	if b.edit != nil {
		b.edit(req)
	}
	rec := b.e.do(req)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.jar, c.Name)
		} else {
			b.jar[c.Name] = c
		}
	}
	return rec
}

func (b *browser) get(path string) *httptest.ResponseRecorder {
	b.t.Helper()
	return b.do(httptest.NewRequest(http.MethodGet, path, nil))
}

func (b *browser) post(path string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

// cookie returns the value of the named cookie, "" when the browser has none.
func (b *browser) cookie(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.jar[name]; ok {
		return c.Value
	}
	return ""
}

// pkcePair is a code_verifier and its S256 challenge.
type pkcePair struct{ verifier, challenge string }

func newPKCE() pkcePair {
	v := oauth2.GenerateVerifier()
	return pkcePair{verifier: v, challenge: pkce.S256(v)}
}

// authz builds an authorization request: response_type=code, PKCE S256, a state and a nonce.
func authz(clientID, redirectURI, scope string, p pkcePair) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"scope":                 {scope},
		"state":                 {"st-" + clientID},
		"nonce":                 {"n-0S6_WzA2Mj"},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
	}
	if redirectURI != "" {
		q.Set("redirect_uri", redirectURI)
	}
	return q
}

func (b *browser) authorize(q url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	return b.get("/authorize?" + q.Encode())
}

var (
	csrfRe      = regexp.MustCompile(`name="csrf_token" value="([^"]*)"`)
	requestIDRe = regexp.MustCompile(`name="request_id" value="([^"]*)"`)
)

// pageForm returns the request_id and csrf_token of a rendered login or consent page.
func pageForm(t *testing.T, rec *httptest.ResponseRecorder) (string, string) {
	t.Helper()
	body := rec.Body.String()
	id, csrf := requestIDRe.FindStringSubmatch(body), csrfRe.FindStringSubmatch(body)
	if id == nil || csrf == nil {
		t.Fatalf("not a form page: %d %s", rec.Code, body)
	}
	return html.UnescapeString(id[1]), html.UnescapeString(csrf[1])
}

// location returns the Location of a 303, failing on anything else.
func location(t *testing.T, rec *httptest.ResponseRecorder) *url.URL {
	t.Helper()
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("status %d, want 303; body %s", rec.Code, rec.Body)
	}
	u, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// follow GETs the page a 303 points to on this server.
func (b *browser) follow(rec *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	b.t.Helper()
	u := location(b.t, rec)
	if u.Host != "" {
		b.t.Fatalf("follow: %s is not on this server", u)
	}
	return b.get(u.String())
}

// submitLogin posts the login form of page.
func (b *browser) submitLogin(page *httptest.ResponseRecorder, username, password string) *httptest.ResponseRecorder {
	b.t.Helper()
	id, csrf := pageForm(b.t, page)
	return b.post("/login", url.Values{"request_id": {id}, "csrf_token": {csrf}, "username": {username}, "password": {password}})
}

// submitConsent posts the consent form of page with decision.
func (b *browser) submitConsent(page *httptest.ResponseRecorder, decision string) *httptest.ResponseRecorder {
	b.t.Helper()
	id, csrf := pageForm(b.t, page)
	return b.post("/consent", url.Values{"request_id": {id}, "csrf_token": {csrf}, "decision": {decision}})
}

// signIn runs an authorization through the login page (and the consent page, allowing, when
// one comes) and returns the final response: the redirect to the client.
func (b *browser) signIn(q url.Values, username, password string) *httptest.ResponseRecorder {
	b.t.Helper()
	rec := b.authorize(q)
	if u := location(b.t, rec); u.Path != "/login" {
		b.t.Fatalf("authorize went to %s, want the login page", u)
	}
	rec = b.submitLogin(b.follow(rec), username, password)
	if u := location(b.t, rec); u.Path == "/consent" {
		rec = b.submitConsent(b.follow(rec), "allow")
	}
	return rec
}

// clientResponse checks that rec redirects to redirectURI (any loopback port when it is one),
// carrying iss (RFC 9207, SECURITY-CASES 8) and the state, and returns the query.
func clientResponse(t *testing.T, rec *httptest.ResponseRecorder, redirectURI, state string) url.Values {
	t.Helper()
	return clientResponseFrom(t, rec, redirectURI, state, servertest.Issuer)
}

// clientResponseFrom is clientResponse for another issuer.
func clientResponseFrom(t *testing.T, rec *httptest.ResponseRecorder, redirectURI, state, issuer string) url.Values {
	t.Helper()
	u := location(t, rec)
	if u.Fragment != "" || strings.Contains(rec.Header().Get("Location"), "#") {
		t.Fatalf("a fragment in %s (SECURITY-CASES 11)", u)
	}
	base := *u
	base.RawQuery = ""
	if base.String() != redirectURI {
		t.Fatalf("redirected to %s, want %s", u, redirectURI)
	}
	q := u.Query()
	if got := q["iss"]; len(got) != 1 || got[0] != issuer {
		t.Fatalf("iss = %q, want %q", got, issuer)
	}
	if state == "" {
		if q.Has("state") {
			t.Fatalf("state %q in a response to a request without one", q.Get("state"))
		}
	} else if got := q["state"]; len(got) != 1 || got[0] != state {
		t.Fatalf("state = %q, want %q", got, state)
	}
	return q
}

// codeFrom returns the code of a successful authorization response.
func (e *flowEnv) codeFrom(t *testing.T, rec *httptest.ResponseRecorder, redirectURI, state string) string {
	t.Helper()
	q := clientResponse(t, rec, redirectURI, state)
	if q.Has("error") {
		t.Fatalf("authorization error %s: %s", q.Get("error"), q.Get("error_description"))
	}
	code := q.Get("code")
	if len(code) < 22+1+43 {
		t.Fatalf("code %q is too short", code)
	}
	e.logs.forbid(code)
	return code
}

// authzError checks an error response at the client and returns its error code.
func authzError(t *testing.T, rec *httptest.ResponseRecorder, redirectURI, state string) string {
	t.Helper()
	q := clientResponse(t, rec, redirectURI, state)
	if q.Has("code") {
		t.Fatalf("an error response carries a code: %s", rec.Header().Get("Location"))
	}
	return q.Get("error")
}

// tokens is a token response.
type tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token"`
}

// exchange redeems code as the spa client (no edits) or with the given client authentication.
func (e *flowEnv) exchange(code, verifier, redirectURI string, auth ...func(*http.Request)) *httptest.ResponseRecorder {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}}
	if redirectURI != "" {
		form.Set("redirect_uri", redirectURI)
	}
	if len(auth) == 0 {
		form.Set("client_id", "spa")
	}
	return e.post("/token", form, auth...)
}

// tokensFrom decodes a successful token response and forbids its tokens in the log.
func (e *flowEnv) tokensFrom(t *testing.T, rec *httptest.ResponseRecorder) tokens {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	assertNoStore(t, rec)
	var tk tokens
	decode(t, rec.Body.Bytes(), &tk)
	if tk.AccessToken == "" || tk.TokenType != "Bearer" || tk.ExpiresIn <= 0 {
		t.Fatalf("token response %s", rec.Body)
	}
	e.logs.forbid(tk.AccessToken, tk.RefreshToken, tk.IDToken)
	return tk
}

// spaTokens runs the whole flow for the spa client as alice and returns the tokens.
func (e *flowEnv) spaTokens(t *testing.T, scope string) tokens {
	t.Helper()
	p := newPKCE()
	e.logs.forbid(p.verifier)
	b := e.browser(t)
	code := e.codeFrom(t, b.signIn(authz("spa", spaRedirect, scope, p), "alice", alicePassword), spaRedirect, "st-spa")
	return e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
}

// refresh presents rt as the spa client (no edits) or with the given client authentication.
func (e *flowEnv) refresh(rt string, extra url.Values, auth ...func(*http.Request)) *httptest.ResponseRecorder {
	e.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	if len(auth) == 0 {
		form.Set("client_id", "spa")
	}
	return e.post("/token", form, auth...)
}

// active reports whether token introspects active for its client (svc may introspect spa's
// access tokens through the shared audience; refresh tokens only by their own client, which
// for the public spa means: ask the store).
func (e *flowEnv) active(t *testing.T, token string) bool {
	t.Helper()
	status, m := e.introspect("svc", e.svcSecret, token)
	if status != http.StatusOK {
		t.Fatalf("introspect: %d %v", status, m)
	}
	return m["active"] == true
}

// rtLive reports whether rt is the live refresh token of a live family (asked of the store: a
// public client cannot introspect).
func (e *flowEnv) rtLive(t *testing.T, rt string) bool {
	t.Helper()
	family, hash, ok := tokenid.ParseRefreshToken(rt)
	if !ok {
		t.Fatalf("not a refresh token: %q", rt)
	}
	fam, err := e.store.LookupRefresh(ctx(), family, hash, e.clk.Now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil && !fam.Revoked
}

// advance moves the fake clock.
func (e *flowEnv) advance(d time.Duration) { e.clk.Step(d) }

// ctx is a background context for store calls in tests.
func ctx() context.Context { return context.Background() }
