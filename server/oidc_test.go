package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// liveFlowEnv is a flowEnv served over real HTTP on loopback, with the issuer set to the
// server's own URL and the real clock (go-oidc checks exp and iat against the wall clock).
func liveFlowEnv(t *testing.T, opts ...flowOption) (*flowEnv, *httptest.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	e := newFlowEnv(t, []envOption{withIssuer(issuer), withOptions(func(o *server.Options) { o.Clock = clock.RealClock{} })}, opts...)
	// The fixture's key is active around the fake clock's epoch; add one active now.
	now := time.Now()
	e.keys.AddKey(t, now.Add(-time.Hour), now.Add(720*time.Hour))
	if err := e.reader.Create(context.Background(), e.keys.Secrets[len(e.keys.Secrets)-1]); err != nil {
		t.Fatal(err)
	}
	servertest.Update(t, e.reader, e.keys.ConfigMap)
	ts := httptest.NewUnstartedServer(e.h)
	_ = ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return e, ts
}

var formFieldRe = regexp.MustCompile(`name="(request_id|csrf_token)" value="([^"]*)"`)

// httpLogin drives the login (and consent, allowing) pages with a plain http.Client and its
// cookie jar, starting at authURL, and returns the code that arrives at the client's redirect.
func httpLogin(t *testing.T, authURL, username, password string) url.Values {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var arrived *url.URL
	hc := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != via[0].URL.Host {
			arrived = req.URL // the client's redirect URI: stop here
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := hc.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	post := func(resp *http.Response, path string, extra url.Values) *http.Response {
		t.Helper()
		body := readAll(t, resp.Body)
		_ = resp.Body.Close()
		form := url.Values{}
		for _, m := range formFieldRe.FindAllSubmatch(body, -1) {
			form.Set(string(m[1]), string(m[2]))
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
		return next
	}
	resp = post(resp, "/login", url.Values{"username": {username}, "password": {password}})
	if arrived == nil {
		resp = post(resp, "/consent", url.Values{"decision": {"allow"}})
	}
	_ = resp.Body.Close()
	if arrived == nil {
		t.Fatalf("never arrived at the client: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return arrived.Query()
}

// A real OAuth client library drives the code flow with PKCE and the refresh, over HTTP, and
// go-oidc verifies the ID token against discovery and the JWKS.
func TestOIDCEndToEnd(t *testing.T) {
	e, ts := liveFlowEnv(t)
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, ts.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	endpoint := func(style oauth2.AuthStyle) oauth2.Endpoint {
		ep := provider.Endpoint()
		ep.AuthStyle = style
		return ep
	}
	for _, tt := range []struct {
		name string
		cfg  oauth2.Config
	}{
		{"public client", oauth2.Config{
			ClientID: "spa", Endpoint: endpoint(oauth2.AuthStyleInParams), RedirectURL: "http://127.0.0.1:43210/callback",
			Scopes: []string{oidc.ScopeOpenID, "profile", "email", "read"},
		}},
		{"confidential client with consent", oauth2.Config{
			ClientID: "web", ClientSecret: e.webSecret, Endpoint: endpoint(oauth2.AuthStyleInHeader), RedirectURL: webRedirect,
			Scopes: []string{oidc.ScopeOpenID, "email"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			state, nonce := "state-"+tt.cfg.ClientID, "nonce-"+tt.cfg.ClientID
			e.logs.forbid(verifier)
			authURL := tt.cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
			q := httpLogin(t, authURL, "alice", alicePassword)
			if q.Get("state") != state || q.Get("iss") != ts.URL || q.Get("code") == "" {
				t.Fatalf("authorization response %v", q)
			}
			e.logs.forbid(q.Get("code"))
			tok, err := tt.cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			e.logs.forbid(tok.AccessToken, tok.RefreshToken)
			rawID, _ := tok.Extra("id_token").(string)
			e.logs.forbid(rawID)
			idt, err := provider.Verifier(&oidc.Config{ClientID: tt.cfg.ClientID}).Verify(ctx, rawID)
			if err != nil {
				t.Fatalf("go-oidc rejects the id_token: %v", err)
			}
			if idt.Nonce != nonce || idt.Subject != "alice" || idt.AccessTokenHash == "" {
				t.Fatalf("id_token %+v", idt)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Fatalf("at_hash: %v", err)
			}
			var claims struct {
				Email         string `json:"email"`
				EmailVerified bool   `json:"email_verified"`
				Name          string `json:"name"`
				Azp           string `json:"azp"`
				AuthTime      int64  `json:"auth_time"`
			}
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if claims.Email != "alice@example.com" || !claims.EmailVerified || claims.Azp != tt.cfg.ClientID || claims.AuthTime == 0 {
				t.Fatalf("claims %+v", claims)
			}
			if wantName := strings.Contains(strings.Join(tt.cfg.Scopes, " "), "profile"); (claims.Name != "") != wantName {
				t.Fatalf("name %q with scopes %v", claims.Name, tt.cfg.Scopes)
			}

			// userinfo through go-oidc.
			info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if info.Subject != "alice" || info.Email != "alice@example.com" || !info.EmailVerified {
				t.Fatalf("userinfo %+v", info)
			}

			// The refresh through x/oauth2: rotate, then a new id_token with the original
			// auth_time and no nonce (OpenID Connect Core §12.2).
			expired := *tok
			expired.Expiry = time.Now().Add(-time.Minute)
			fresh, err := tt.cfg.TokenSource(ctx, &expired).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			e.logs.forbid(fresh.AccessToken, fresh.RefreshToken)
			if fresh.RefreshToken == tok.RefreshToken || fresh.AccessToken == tok.AccessToken {
				t.Fatal("the refresh did not rotate")
			}
			rawID2, _ := fresh.Extra("id_token").(string)
			e.logs.forbid(rawID2)
			idt2, err := provider.Verifier(&oidc.Config{ClientID: tt.cfg.ClientID}).Verify(ctx, rawID2)
			if err != nil {
				t.Fatalf("refreshed id_token: %v", err)
			}
			var c2 struct {
				AuthTime int64  `json:"auth_time"`
				Nonce    string `json:"nonce"`
			}
			_ = idt2.Claims(&c2)
			if idt2.Subject != "alice" || c2.AuthTime != claims.AuthTime || c2.Nonce != "" {
				t.Fatalf("refreshed id_token %+v %+v", idt2, c2)
			}
			if err := idt2.VerifyAccessToken(fresh.AccessToken); err != nil {
				t.Fatalf("refreshed at_hash: %v", err)
			}
			// The old refresh token is spent: reuse revokes the family (x/oauth2 surfaces the
			// OAuth error).
			_, err = tt.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			var re *oauth2.RetrieveError
			if err == nil || !asRetrieveError(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Fatalf("reuse: %v", err)
			}
		})
	}
}

func asRetrieveError(err error, re **oauth2.RetrieveError) bool {
	r, ok := err.(*oauth2.RetrieveError)
	if ok {
		*re = r
	}
	return ok
}

// ID token details: typ JWT (never at+jwt), aud the client_id as a string, exp the access
// token's, at_hash the left half of SHA-256, and claims by scope.
func TestIDTokenClaims(t *testing.T) {
	e := newFlowEnv(t, nil)
	for _, tt := range []struct {
		scope                string
		email, name, refresh bool
	}{
		{"openid", false, false, true},
		{"openid email", true, false, true},
		{"openid profile", false, true, true},
		{"read", false, false, false},
	} {
		t.Run(tt.scope, func(t *testing.T) {
			tk := e.spaTokens(t, tt.scope)
			if tt.scope == "read" {
				if tk.IDToken != "" {
					t.Fatal("an id_token without the openid scope")
				}
				return
			}
			h, c := jwtParts(t, tk.IDToken)
			_, at := jwtParts(t, tk.AccessToken)
			sum := sha256.Sum256([]byte(tk.AccessToken))
			if h["typ"] != "JWT" || h["alg"] != "ES256" || h["kid"] == nil {
				t.Fatalf("header %v", h)
			}
			if c["iss"] != "https://auth.example.test" || c["sub"] != "alice" || c["aud"] != "spa" || c["azp"] != "spa" ||
				c["nonce"] != "n-0S6_WzA2Mj" || fmt.Sprint(c["exp"]) != fmt.Sprint(at["exp"]) || fmt.Sprint(c["iat"]) != fmt.Sprint(at["iat"]) ||
				c["at_hash"] != base64.RawURLEncoding.EncodeToString(sum[:16]) || c["auth_time"] == nil {
				t.Fatalf("claims %v", c)
			}
			if (c["email"] != nil) != tt.email || (c["email_verified"] != nil) != tt.email ||
				(c["name"] != nil) != tt.name || (c["preferred_username"] != nil) != tt.name {
				t.Fatalf("claims by scope %q: %v", tt.scope, c)
			}
			if c["jti"] != nil || c["client_id"] != nil || c["scope"] != nil || c["roles"] != nil {
				t.Fatalf("access-token claims in the id_token: %v", c)
			}
			// An ID token is not an access token: introspection and userinfo refuse it.
			if e.active(t, tk.IDToken) {
				t.Fatal("the id_token introspects active")
			}
			req := httptest.NewRequest(http.MethodGet, "/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+tk.IDToken)
			if rec := e.do(req); rec.Code != http.StatusUnauthorized {
				t.Fatalf("userinfo with an id_token: %d", rec.Code)
			}
		})
	}
}

// The userinfo endpoint: RFC 6750 errors, scope and token checks, claims by scope.
func TestUserinfo(t *testing.T) {
	e := newFlowEnv(t, nil)
	tk := e.spaTokens(t, "openid profile read")
	noOpenID := e.spaTokens(t, "read")
	call := func(method string, edit func(*http.Request), body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, "/userinfo", strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if edit != nil {
			edit(req)
		}
		return e.do(req)
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		rec := call(http.MethodGet, func(r *http.Request) { r.Header.Set("Authorization", scheme+" "+tk.AccessToken) }, "")
		if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %s", scheme, rec.Code, rec.Body)
		}
		assertJSON(t, rec.Body.Bytes(), `{"sub":"alice","name":"Alice Liddell","preferred_username":"alice"}`)
	}
	rec := call(http.MethodPost, nil, url.Values{"access_token": {tk.AccessToken}}.Encode())
	assertJSON(t, rec.Body.Bytes(), `{"sub":"alice","name":"Alice Liddell","preferred_username":"alice"}`)

	realm := `Bearer realm="https://auth.example.test"`
	for _, tt := range []struct {
		name      string
		method    string
		edit      func(*http.Request)
		body      string
		status    int
		challenge string
	}{
		{"no token", http.MethodGet, nil, "", 401, realm},
		{"a malformed header", http.MethodGet, func(r *http.Request) { r.Header.Set("Authorization", "Bearer") }, "", 401, realm + `, error="invalid_token"`},
		{"Basic", http.MethodGet, func(r *http.Request) { r.Header.Set("Authorization", "Basic "+tk.AccessToken) }, "", 401, realm + `, error="invalid_token"`},
		{"garbage", http.MethodGet, bearer("x.y.z"), "", 401, realm + `, error="invalid_token"`},
		{"a refresh token", http.MethodGet, bearer(tk.RefreshToken), "", 401, realm + `, error="invalid_token"`},
		{"a client_credentials token", http.MethodGet, bearer(e.cc(url.Values{"scope": {"read"}})), "", 401, realm + `, error="invalid_token"`},
		{"no openid scope", http.MethodGet, bearer(noOpenID.AccessToken), "", 403, realm + `, error="insufficient_scope"`},
		{"in the query", http.MethodGet, func(r *http.Request) { r.URL.RawQuery = "access_token=" + tk.AccessToken }, "", 400, realm + `, error="invalid_request"`},
		{"header and body", http.MethodPost, bearer(tk.AccessToken), url.Values{"access_token": {tk.AccessToken}}.Encode(), 400, realm + `, error="invalid_request"`},
		{"two headers", http.MethodGet, func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer "+tk.AccessToken)
			r.Header.Add("Authorization", "Bearer "+tk.AccessToken)
		}, "", 400, realm + `, error="invalid_request"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := call(tt.method, tt.edit, tt.body)
			if rec.Code != tt.status || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), tt.challenge) {
				t.Fatalf("%d %q %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
			}
		})
	}
	t.Run("a revoked or expired token", func(t *testing.T) {
		if rec := e.post("/revoke", url.Values{"token": {tk.AccessToken}, "client_id": {"spa"}}); rec.Code != 200 {
			t.Fatalf("revoke: %d", rec.Code)
		}
		if rec := call(http.MethodGet, bearer(tk.AccessToken), ""); rec.Code != 401 {
			t.Fatalf("revoked: %d", rec.Code)
		}
		other := e.spaTokens(t, "openid")
		e.advance(16 * time.Minute)
		if rec := call(http.MethodGet, bearer(other.AccessToken), ""); rec.Code != 401 {
			t.Fatalf("expired: %d", rec.Code)
		}
	})
	t.Run("CORS for the client's origin", func(t *testing.T) {
		tk := e.spaTokens(t, "openid")
		rec := call(http.MethodGet, func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+tk.AccessToken)
			r.Header.Set("Origin", "http://127.0.0.1:5173")
		}, "")
		if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:5173" {
			t.Fatalf("%d ACAO %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
		}
		rec = call(http.MethodGet, func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+tk.AccessToken)
			r.Header.Set("Origin", "https://evil.example")
		}, "")
		if rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatal("ACAO for an unregistered origin")
		}
	})
}
