package devmode

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// The demo client: a page of the dev issuer that plays an OAuth client, so that a person can
// go from `make run` to tokens with nothing but a browser. It is the public client demo-spa of
// config/samples, with PKCE, exactly as a single-page or native app would use it:
//
//  1. GET /demo makes a code_verifier (oauth2.GenerateVerifier), a state and a nonce, keeps
//     them in a short-lived HttpOnly cookie, and sends the browser to the issuer's /authorize
//     with redirect_uri http://127.0.0.1:<port>/demo/callback (config/samples registers
//     http://127.0.0.1/demo/callback; a loopback redirect matches on any port, RFC 8252 §7.3).
//  2. The person signs in and consents on the issuer's pages.
//  3. GET /demo/callback checks state and iss (RFC 9207), exchanges the code at the issuer's
//     token endpoint (oauth2.Config.Exchange with VerifierOption) and shows the claims of the
//     access token and the ID token, and curl commands for the refresh grant and userinfo.
//
// The callback runs on 127.0.0.1 while the issuer is usually http://localhost:8080. Cookies
// are per host, so /demo first moves the browser to the 127.0.0.1 form of itself: the state
// cookie is then set on the host the callback will be on.
//
// DEV ONLY: the page shows live tokens to whoever opens it. It exists only in --dev.

// Demo names and paths.
const (
	DemoClientID     = "demo-spa"
	DemoPath         = "/demo"
	DemoCallbackPath = "/demo/callback"
	demoCSSPath      = "/demo/demo.css"
	demoCookie       = "latchkey-demo"
	demoCookieMaxAge = 10 * 60 // seconds: the life of an authorization request
	demoScope        = "openid profile email offline_access notes.read"
)

// demo serves the demo pages in front of the issuer's handler.
type demo struct {
	issuer   string
	basePath string // the issuer's path, for the stylesheet
	port     string // the port the issuer listens on
	next     http.Handler
	// client reaches the issuer's own listener whatever host the issuer URL names.
	client *http.Client
}

// withDemo wraps next, the issuer's handler, with the demo pages. addr is the listener's
// address: the demo's callback is on 127.0.0.1 at its port, and the token request dials it.
func withDemo(next http.Handler, issuer string, addr net.Addr) (http.Handler, error) {
	iss, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("demo: issuer: %w", err)
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return nil, fmt.Errorf("demo: listener address: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	dial := net.JoinHostPort(host, port)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	d := &demo{
		issuer:   issuer,
		basePath: strings.TrimSuffix(iss.EscapedPath(), "/"),
		port:     port,
		next:     next,
		client: &http.Client{
			Timeout: 15 * time.Second,
			Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", dial)
			}},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DemoPath, d.start)
	mux.HandleFunc("GET "+DemoCallbackPath, d.callback)
	mux.HandleFunc("GET "+demoCSSPath, d.stylesheet)
	mux.Handle("/", next)
	return mux, nil
}

// origin is where the demo's pages and callback live.
func (d *demo) origin() string { return "http://127.0.0.1:" + d.port }

func (d *demo) config() *oauth2.Config {
	return &oauth2.Config{
		ClientID: DemoClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL:   d.issuer + "/authorize",
			TokenURL:  d.issuer + "/token",
			AuthStyle: oauth2.AuthStyleInParams, // a public client: client_id in the body
		},
		RedirectURL: d.origin() + DemoCallbackPath,
		Scopes:      strings.Fields(demoScope),
	}
}

// start begins an authorization with PKCE.
func (d *demo) start(w http.ResponseWriter, r *http.Request) {
	setDemoHeaders(w.Header())
	if r.Host != "127.0.0.1:"+d.port {
		// Move to the host the callback is on, so the state cookie comes back with it.
		w.Header().Set("Location", d.origin()+DemoPath)
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	verifier, state, nonce := oauth2.GenerateVerifier(), randomString(), randomString()
	http.SetCookie(w, &http.Cookie{
		Name:     demoCookie,
		Value:    state + "." + verifier + "." + nonce,
		Path:     DemoPath,
		MaxAge:   demoCookieMaxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	u := d.config().AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce))
	w.Header().Set("Location", u)
	w.WriteHeader(http.StatusSeeOther)
}

// callback completes the authorization and shows the tokens.
func (d *demo) callback(w http.ResponseWriter, r *http.Request) {
	setDemoHeaders(w.Header())
	q := r.URL.Query()
	c, err := r.Cookie(demoCookie)
	var state, verifier, nonce string
	if err == nil {
		parts := strings.Split(c.Value, ".")
		if len(parts) == 3 {
			state, verifier, nonce = parts[0], parts[1], parts[2]
		}
	}
	// One use: the cookie goes whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: demoCookie, Path: DemoPath, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	switch {
	case state == "":
		d.render(w, http.StatusBadRequest, demoPage{Error: "This browser has no demo in progress here. Start again at " + d.origin() + DemoPath + "."})
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
		d.render(w, http.StatusBadRequest, demoPage{Error: "The state does not match the one this browser sent: the response is not for this request."})
		return
	case q.Get("iss") != d.issuer:
		// RFC 9207 §2.4: a response from another issuer (a mix-up attack) is dropped.
		d.render(w, http.StatusBadRequest, demoPage{Error: "The response does not come from " + d.issuer + " (iss)."})
		return
	case q.Has("error"):
		d.render(w, http.StatusOK, demoPage{Error: "The authorization ended with " + q.Get("error") + ": " + q.Get("error_description")})
		return
	}
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, d.client)
	tok, err := d.config().Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		msg := "The token request failed."
		if errors.As(err, &re) {
			msg = "The token endpoint answered " + re.ErrorCode + ": " + re.ErrorDescription
		}
		d.render(w, http.StatusBadGateway, demoPage{Error: msg})
		return
	}
	idToken, _ := tok.Extra("id_token").(string)
	scope, _ := tok.Extra("scope").(string)
	if idToken != "" && claim(idToken, "nonce") != nonce {
		// OpenID Connect Core §3.1.3.7: the nonce binds the ID token to this request.
		d.render(w, http.StatusBadGateway, demoPage{Error: "The ID token does not carry the nonce of this request."})
		return
	}
	p := demoPage{
		AccessClaims: claimsJSON(tok.AccessToken),
		IDClaims:     claimsJSON(idToken),
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		ExpiresIn:    int64(time.Until(tok.Expiry).Round(time.Second).Seconds()),
		Scope:        scope,
		TokenURL:     d.issuer + "/token",
		UserinfoURL:  d.issuer + "/userinfo",
		ClientID:     DemoClientID,
		Restart:      DemoPath,
	}
	d.render(w, http.StatusOK, p)
}

// claimsJSON is the payload of a compact JWS, indented, or "" when token is not one. The demo
// shows what the token endpoint sent over a direct connection; a real client verifies the
// signature against the JWKS first (the verifier package does).
func claimsJSON(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var out bytes.Buffer
	if err := json.Indent(&out, payload, "", "  "); err != nil {
		return ""
	}
	return out.String()
}

// claim is the string claim name of a compact JWS, "" when absent.
func claim(token, name string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(payload, &m) != nil {
		return ""
	}
	v, _ := m[name].(string)
	return v
}

func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// setDemoHeaders: nothing loads but our stylesheets, nothing frames the page, no Referer
// carries the code, nothing is cached.
func setDemoHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// demoPage is what the demo template shows: an error, or the tokens.
type demoPage struct {
	Error        string
	AccessClaims string
	IDClaims     string
	AccessToken  string
	RefreshToken string
	ExpiresIn    int64
	Scope        string
	TokenURL     string
	UserinfoURL  string
	ClientID     string
	Restart      string
	// Stylesheets are filled by render.
	Stylesheets []string
}

func (d *demo) render(w http.ResponseWriter, status int, p demoPage) {
	if p.Restart == "" {
		p.Restart = DemoPath
	}
	p.Stylesheets = []string{d.basePath + "/static/latchkey.css", demoCSSPath}
	var buf bytes.Buffer
	if err := demoTemplate.Execute(&buf, p); err != nil {
		http.Error(w, "demo: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (d *demo) stylesheet(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write([]byte(demoCSS))
}

// demoCSS widens the card of the shared stylesheet for JSON and commands.
const demoCSS = `.card.wide { max-width: 52rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 0.5rem; }
pre { background: var(--code-bg); border-radius: 8px; padding: 0.75rem 1rem; overflow-x: auto;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 0.8rem; line-height: 1.45; white-space: pre-wrap; overflow-wrap: anywhere; }
.actions a.button { text-decoration: none; text-align: center; }
`

var demoTemplate = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<meta name="color-scheme" content="light dark">
<title>Demo client · Latchkey</title>
{{range .Stylesheets}}<link rel="stylesheet" href="{{.}}">
{{end}}</head>
<body>
<main class="card wide" aria-labelledby="page-title">
{{if .Error -}}
<h1 id="page-title">Demo client</h1>
<div class="alert" role="alert" id="demo-error">{{.Error}}</div>
{{- else -}}
<h1 id="page-title">Signed in</h1>
<p class="lead">The demo client <code>{{.ClientID}}</code> exchanged its code (with PKCE) for these tokens. DEV ONLY: never show tokens like this in a real application.</p>
<p class="meta">Scope <strong id="scope">{{.Scope}}</strong>, access token valid for {{.ExpiresIn}} s.</p>
<h2>Access token claims</h2>
<pre id="access-claims">{{.AccessClaims}}</pre>
{{if .IDClaims}}<h2>ID token claims</h2>
<pre id="id-claims">{{.IDClaims}}</pre>
{{end}}{{if .RefreshToken}}<h2>Refresh the tokens</h2>
<p class="meta">The refresh token rotates: each one works once, and using it twice revokes the whole grant.</p>
<pre id="refresh-curl">curl -s -d grant_type=refresh_token -d client_id={{.ClientID}} \
  -d refresh_token='{{.RefreshToken}}' \
  {{.TokenURL}}</pre>
{{end}}<h2>Call userinfo</h2>
<pre id="userinfo-curl">curl -s -H 'Authorization: Bearer {{.AccessToken}}' \
  {{.UserinfoURL}}</pre>
{{- end}}
<div class="actions"><a class="button primary" href="{{.Restart}}">Start again</a></div>
</main>
</body>
</html>
`))
