// Package ui renders the HTML pages a person sees during an authorization: the login form, the
// consent form and the error page. The pages use html/template (so every value is escaped for
// its context), one small embedded stylesheet, no CDN, no web font and no JavaScript at all.
//
// Every page is sent with the headers of SetPageHeaders: a CSP with frame-ancestors 'none' and
// X-Frame-Options DENY against clickjacking (RFC 9700 §4.16, OAuth 2.1 §7.11), Referrer-Policy
// no-referrer so the authorization request never leaks in a Referer (RFC 9700 §4.2.4), and
// Cache-Control no-store.
//
// # form-action and the redirect to the client
//
// CSP's form-action directive also governs the redirects that follow a form submission (CSP3
// §6.4.2), and Chromium enforces that: with form-action 'self', the 303 from POST /login to the
// client's redirect_uri on another origin is blocked, and the user is stuck on the login page
// (the browser tests in this package show it). So the login and consent pages add the origin of
// the request's redirect URI to form-action: see LoginPage.RedirectURI and SetPageHeaders. Pages
// that post nowhere keep form-action 'self'.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Names of the form fields the pages post. The handlers read the same names.
const (
	FieldUsername  = "username"
	FieldPassword  = "password"
	FieldCSRFToken = "csrf_token"
	FieldRequestID = "request_id"
	// FieldDecision carries the consent button pressed: DecisionAllow or DecisionDeny.
	FieldDecision = "decision"
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Messages for LoginPage.Error. None says which of the username and the password was wrong, so
// the page cannot be used to find out which usernames exist (OAuth 2.1 §7.7).
const (
	MessageInvalidCredentials = "Incorrect username or password."
	MessageTooManyAttempts    = "Too many sign-in attempts. Wait a few minutes, then try again."
	MessageUnavailable        = "Signing in is temporarily unavailable. Try again in a moment."
	MessageSessionExpired     = "This sign-in request has expired. Go back to the application and start again."
)

// Default form targets, used when a page's Action is empty.
const (
	DefaultLoginAction   = "/login"
	DefaultConsentAction = "/consent"
)

// StylesheetPath is where Stylesheet must be routed, below Options.BasePath.
const StylesheetPath = "/static/latchkey.css"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets/latchkey.css
var stylesheet []byte

// stylesheetVersion is a digest of the stylesheet. The pages link to it with ?v=<version>, so a
// new release's stylesheet has a new URL and the old one can be cached for a year.
var stylesheetVersion = func() string {
	sum := sha256.Sum256(stylesheet)
	return hex.EncodeToString(sum[:6])
}()

// pageTemplates holds one template set per page, each the layout plus that page's "content".
// Parsing happens at init so that a broken template fails every test, not a user's login.
var pageTemplates = func() map[string]*template.Template {
	layout := template.Must(template.New("").ParseFS(templateFS, "templates/layout.html"))
	sets := map[string]*template.Template{}
	for _, name := range []string{"login", "consent", "error"} {
		sets[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	return sets
}()

// Page is one of LoginPage, ConsentPage and ErrorPage.
type Page interface {
	// view returns the template set name, the page title, the form targets that must be in
	// form-action, and the data of the "content" template.
	view() (name, title string, formTargets []string, data any)
}

// Options configure a UI.
type Options struct {
	// BasePath is the path prefix the server's routes live under, "" for none (an issuer
	// https://id.example.com/auth has "/auth"). The stylesheet link is BasePath+StylesheetPath.
	BasePath string
}

// UI renders pages. Build it once with New; it is safe for concurrent use.
type UI struct {
	stylesheetHref string
	// fallback is the 500 page sent when rendering fails. It is rendered in New, so sending it
	// cannot fail.
	fallback []byte
}

// New returns a UI. It fails only if the built-in error page cannot be rendered.
func New(opts Options) (*UI, error) {
	base := strings.TrimSuffix(opts.BasePath, "/")
	if base != "" && !strings.HasPrefix(base, "/") {
		return nil, fmt.Errorf("ui: base path %q must start with /", opts.BasePath)
	}
	u := &UI{stylesheetHref: base + StylesheetPath + "?v=" + stylesheetVersion}
	var buf bytes.Buffer
	err := u.execute(&buf, ErrorPage{
		Title:       "Something went wrong",
		Description: "The server could not show this page. Try again, or go back to the application and start again.",
		Code:        "server_error",
	})
	if err != nil {
		return nil, fmt.Errorf("ui: render the fallback error page: %w", err)
	}
	u.fallback = buf.Bytes()
	return u, nil
}

// Render writes page with status (200 when 0) and the headers of SetPageHeaders. It renders
// into a buffer first: if rendering fails, the client gets a complete 500 error page instead of
// half a page, and Render returns the error for the caller to log.
func (u *UI) Render(w http.ResponseWriter, status int, page Page) error {
	if status == 0 {
		status = http.StatusOK
	}
	var buf bytes.Buffer
	if err := u.execute(&buf, page); err != nil {
		u.write(w, http.StatusInternalServerError, u.fallback, nil)
		return err
	}
	_, _, targets, _ := page.view()
	u.write(w, status, buf.Bytes(), targets)
	return nil
}

func (u *UI) execute(buf *bytes.Buffer, page Page) error {
	if page == nil {
		return errors.New("render page: no page")
	}
	name, title, _, data := page.view()
	err := pageTemplates[name].ExecuteTemplate(buf, "layout", struct {
		Title          string
		StylesheetHref string
		Page           any
	}{title, u.stylesheetHref, data})
	if err != nil {
		return fmt.Errorf("render %s page: %w", name, err)
	}
	return nil
}

func (u *UI) write(w http.ResponseWriter, status int, body []byte, formTargets []string) {
	h := w.Header()
	SetPageHeaders(h, formTargets...)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a client that went away is not an error worth reporting
}

// Stylesheet serves the embedded stylesheet; route it at Options.BasePath+StylesheetPath for GET
// (and HEAD). A request with the current ?v= is cached for a year, since that URL never changes
// content; any other request for a few minutes.
func (u *UI) Stylesheet() http.Handler {
	etag := `"` + stylesheetVersion + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/css; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("ETag", etag)
		if r.URL.Query().Get("v") == stylesheetVersion {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "public, max-age=300")
		}
		http.ServeContent(w, r, "latchkey.css", time.Time{}, bytes.NewReader(stylesheet))
	})
}

// LoginPage is the username and password form.
type LoginPage struct {
	// ClientName is shown as "to continue to <ClientName>"; ClientID is used when it is empty.
	ClientName string
	ClientID   string
	// RequestID identifies the pending authorization request; CSRFToken is the per-request
	// token. Both are posted back as hidden fields (FieldRequestID, FieldCSRFToken).
	RequestID string
	CSRFToken string
	// Username refills the field after a failed attempt. The password is never refilled.
	Username string
	// Error is shown in an alert above the form: one of the Message constants. Never say which
	// field was wrong.
	Error string
	// Action is the form's target, DefaultLoginAction when empty. It must be a path on this
	// server: form-action allows 'self'.
	Action string
	// RedirectURI is the verified redirect URI of the pending request, as it will be used
	// (loopback port included). Its origin is added to form-action, without which Chromium
	// blocks the 303 to the client after the form is posted. Leave it empty only when the
	// post can never redirect off this origin.
	RedirectURI string
}

func (p LoginPage) view() (string, string, []string, any) {
	if p.Action == "" {
		p.Action = DefaultLoginAction
	}
	return "login", "Sign in", nonEmpty(p.RedirectURI), struct {
		LoginPage
		ClientDisplayName string
	}{p, displayName(p.ClientName, p.ClientID)}
}

// ConsentPage asks the user to allow a client the scopes it requested.
type ConsentPage struct {
	// ClientName and ClientID are shown as on LoginPage.
	ClientName string
	ClientID   string
	// Username is the signed-in user ("Signed in as ...").
	Username string
	// Scopes are the requested scopes, in request order. Known ones are described (see
	// ScopeDescription); others are shown as they are.
	Scopes []string
	// RequestID and CSRFToken are posted back as hidden fields.
	RequestID string
	CSRFToken string
	// Action is the form's target, DefaultConsentAction when empty; a path on this server.
	Action string
	// RedirectURI is the verified redirect URI, as on LoginPage: its origin is added to
	// form-action, and its host is shown ("Allowing takes you to ...").
	RedirectURI string
}

type scopeView struct {
	Name        string
	Description string
}

func (p ConsentPage) view() (string, string, []string, any) {
	if p.Action == "" {
		p.Action = DefaultConsentAction
	}
	scopes := make([]scopeView, 0, len(p.Scopes))
	for _, s := range p.Scopes {
		d, _ := ScopeDescription(s)
		scopes = append(scopes, scopeView{Name: s, Description: d})
	}
	return "consent", "Allow access", nonEmpty(p.RedirectURI), struct {
		ClientDisplayName string
		ClientID          string
		Username          string
		Scopes            []scopeView
		RequestID         string
		CSRFToken         string
		Action            string
		RedirectHost      string
	}{
		displayName(p.ClientName, p.ClientID), p.ClientID, p.Username, scopes,
		p.RequestID, p.CSRFToken, p.Action, redirectHost(p.RedirectURI),
	}
}

// ErrorPage is a plain error: a title, a description and an optional OAuth error code. Put no
// internal detail in it (no stack trace, no Go error text): it is shown to whoever asked.
type ErrorPage struct {
	Title       string
	Description string
	// Code is the OAuth error code, such as invalid_request, shown small for support requests.
	Code string
}

func (p ErrorPage) view() (string, string, []string, any) {
	if p.Title == "" {
		p.Title = "Something went wrong"
	}
	return "error", p.Title, nil, p
}

// scopeDescriptions are the OpenID Connect Core §5.4 and §11 scopes, in the user's words.
var scopeDescriptions = map[string]string{
	"openid":         "Confirm your identity",
	"profile":        "See your name and username",
	"email":          "See your email address",
	"offline_access": "Stay signed in to the application while you are away",
}

// ScopeDescription returns the human description of a well-known scope (openid, profile, email,
// offline_access) and whether it has one.
func ScopeDescription(scope string) (string, bool) {
	d, ok := scopeDescriptions[scope]
	return d, ok
}

func displayName(name, id string) string {
	if name != "" {
		return name
	}
	if id != "" {
		return id
	}
	return "the application"
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
