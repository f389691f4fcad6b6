package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/net/html"
)

// browser drives the authorization-code flow as a person's browser does: it follows the
// server's redirects, keeps its cookies, reads the HTML forms it is shown and submits them with
// every field the page put in them (the CSRF token, the request id), and stops at the redirect
// to the client, where the client takes over with the code.
type browser struct {
	e      *env
	client *http.Client
}

// maxPages bounds the forms of one flow: login, consent, and a spare.
const maxPages = 4

func (e *env) newBrowser() *browser {
	b := &browser{e: e}
	b.client = &http.Client{
		Transport: e.http.Transport,
		Jar:       &loopbackJar{},
		Timeout:   e.cfg.timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if b.isRedirectURI(req.URL) {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
	return b
}

// isRedirectURI reports whether u goes to the client's redirect URI. A loopback redirect URI
// matches on any port (RFC 8252 §7.3), so the port is not compared.
func (b *browser) isRedirectURI(u *url.URL) bool {
	r, err := url.Parse(b.e.cfg.redirectURI)
	if err != nil {
		return false
	}
	return u.Scheme == r.Scheme && u.Hostname() == r.Hostname() && u.Path == r.Path
}

// signIn runs the flow once: authorize, log in, consent, exchange the code. It returns the
// token response.
func (b *browser) signIn(ctx context.Context) (*tokenResponse, error) {
	return b.signInScope(ctx, b.e.cfg.codeScope)
}

// signInScope is signIn asking for scope.
func (b *browser) signInScope(ctx context.Context, scope string) (*tokenResponse, error) {
	cfg := b.e.cfg
	verifier := randomString()
	sum := sha256.Sum256([]byte(verifier))
	state := randomString()
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {cfg.publicClient},
		"redirect_uri":          {cfg.redirectURI},
		"scope":                 {scope},
		"state":                 {state},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	authz := b.e.md.AuthorizationEndpoint
	if strings.Contains(authz, "?") {
		authz += "&" + q.Encode()
	} else {
		authz += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authz, nil)
	if err != nil {
		return nil, err
	}
	var callback *url.URL
	for page := 0; callback == nil; page++ {
		if page == maxPages {
			return nil, errors.New("code flow: no redirect to the client after the login and consent pages")
		}
		resp, err := b.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("code flow: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("code flow: %w", err)
		}
		if loc, err := resp.Location(); err == nil && b.isRedirectURI(loc) {
			callback = loc
			break
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("code flow: %s %s answered %d", req.Method, req.URL.Path, resp.StatusCode)
		}
		f, err := parseForm(body, resp.Request.URL)
		if err != nil {
			return nil, fmt.Errorf("code flow: page %s: %w", resp.Request.URL.Path, err)
		}
		switch {
		case f.has("password"):
			f.values.Set("username", cfg.username)
			f.values.Set("password", cfg.password)
		case f.button("decision", "allow"):
			f.values.Set("decision", "allow")
		default:
			return nil, fmt.Errorf("code flow: page %s has neither a login nor a consent form", resp.Request.URL.Path)
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, f.action.String(), strings.NewReader(f.values.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		// Browsers send Origin on a form POST; a CSRF defence may check it.
		req.Header.Set("Origin", resp.Request.URL.Scheme+"://"+resp.Request.URL.Host)
	}

	p := callback.Query()
	if e := p.Get("error"); e != "" {
		return nil, fmt.Errorf("code flow: the server redirected with error %s: %s", e, p.Get("error_description"))
	}
	if p.Get("state") != state {
		return nil, errors.New("code flow: state was not echoed")
	}
	if p.Get("iss") != b.e.md.Issuer {
		return nil, errors.New("code flow: iss missing or wrong in the authorization response (RFC 9207)")
	}
	code := p.Get("code")
	if code == "" {
		return nil, errors.New("code flow: no code in the redirect")
	}
	form := []byte(url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {cfg.redirectURI},
		"client_id":     {cfg.publicClient},
		"code_verifier": {verifier},
	}.Encode())
	status, body, err := b.e.do(ctx, http.MethodPost, b.e.md.TokenEndpoint, "", form)
	if err != nil {
		return nil, fmt.Errorf("code flow: %w", err)
	}
	var tr tokenResponse
	if status != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		return nil, statusError("code flow: token", status, body)
	}
	return &tr, nil
}

// randomString is 256 bits, base64url: a PKCE verifier (RFC 7636 §4.1) or a state.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// htmlForm is the first POST form of a page, with what a browser would submit.
type htmlForm struct {
	action *url.URL
	// values holds the inputs with a name (hidden ones included) and their values.
	values url.Values
	// inputs are the names of every input, whatever its type.
	inputs map[string]bool
	// buttons are the name=value pairs of the submit buttons.
	buttons map[string][]string
}

func (f *htmlForm) has(name string) bool { return f.inputs[name] }

func (f *htmlForm) button(name, value string) bool {
	for _, v := range f.buttons[name] {
		if v == value {
			return true
		}
	}
	return false
}

// parseForm finds the first form with method post in page and resolves its action against
// base, as a browser does (an empty action posts to the page itself).
func parseForm(page []byte, base *url.URL) (*htmlForm, error) {
	z := html.NewTokenizer(bytes.NewReader(page))
	var f *htmlForm
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if f == nil {
				return nil, errors.New("no POST form")
			}
			return f, nil
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "form" && f != nil {
				return f, nil
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			attrs := map[string]string{}
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				attrs[string(k)] = string(v)
			}
			switch string(name) {
			case "form":
				if f != nil || !strings.EqualFold(attrs["method"], "post") {
					continue
				}
				action, err := base.Parse(attrs["action"])
				if err != nil {
					return nil, fmt.Errorf("form action: %w", err)
				}
				f = &htmlForm{action: action, values: url.Values{}, inputs: map[string]bool{}, buttons: map[string][]string{}}
			case "input":
				if f == nil || attrs["name"] == "" {
					continue
				}
				n := attrs["name"]
				f.inputs[n] = true
				switch strings.ToLower(attrs["type"]) {
				case "submit", "button", "image", "reset":
					f.buttons[n] = append(f.buttons[n], attrs["value"])
				case "checkbox", "radio":
					if _, checked := attrs["checked"]; checked {
						f.values.Add(n, attrs["value"])
					}
				default:
					f.values.Set(n, attrs["value"])
				}
			case "button":
				if f == nil || attrs["name"] == "" {
					continue
				}
				if t := strings.ToLower(attrs["type"]); t == "" || t == "submit" {
					f.buttons[attrs["name"]] = append(f.buttons[attrs["name"]], attrs["value"])
				}
			}
		}
	}
}

// loopbackJar is a cookie jar for one flow. Unlike net/http/cookiejar it sends Secure cookies
// to http://127.0.0.1 and http://localhost too, as browsers do for these potentially
// trustworthy origins (W3C Secure Contexts §3.2), so a --dev server on plain HTTP can keep
// __Host- cookies. It honours Path and deletions; a flow talks to one host.
type loopbackJar struct {
	mu      sync.Mutex
	cookies map[string]*http.Cookie // by name
}

// SetCookies stores the cookies of a response, or deletes those with Max-Age <= 0.
func (j *loopbackJar) SetCookies(_ *url.URL, cookies []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cookies == nil {
		j.cookies = map[string]*http.Cookie{}
	}
	for _, c := range cookies {
		if c.MaxAge < 0 || c.Value == "" {
			delete(j.cookies, c.Name)
			continue
		}
		if c.Path == "" {
			c.Path = "/"
		}
		j.cookies[c.Name] = c
	}
}

// Cookies returns the cookies whose Path covers u.
func (j *loopbackJar) Cookies(u *url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*http.Cookie
	for _, c := range j.cookies {
		if pathMatch(u.Path, c.Path) {
			out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	return out
}

// pathMatch is RFC 6265 §5.1.4.
func pathMatch(reqPath, cookiePath string) bool {
	if reqPath == "" {
		reqPath = "/"
	}
	if reqPath == cookiePath {
		return true
	}
	return strings.HasPrefix(reqPath, cookiePath) &&
		(strings.HasSuffix(cookiePath, "/") || reqPath[len(cookiePath)] == '/')
}
