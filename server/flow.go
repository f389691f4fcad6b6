package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
	"github.com/latchkey-dev/latchkey/server/ui"
	"github.com/latchkey-dev/latchkey/server/users"
)

// Paths of the browser-facing endpoints of the authorization code flow, under the issuer's path.
const (
	pathLogin    = "/login"
	pathConsent  = "/consent"
	pathUserinfo = "/userinfo"
)

// Lifetimes of the authorization code flow that are not configurable.
const (
	// authRequestLifetime bounds the time between /authorize and the last form post.
	authRequestLifetime = 10 * time.Minute
	// codeLifetime is the life of an authorization code (DESIGN: 60 s; OAuth 2.1 §4.1.2
	// recommends at most 10 minutes).
	codeLifetime = 60 * time.Second
)

// Defaults of LoginOptions.
const (
	DefaultSessionIdleLifetime     = time.Hour
	DefaultSessionAbsoluteLifetime = 12 * time.Hour
	DefaultConsentLifetime         = 30 * 24 * time.Hour
	DefaultMaxFailuresPerUser      = 10
	DefaultMaxFailuresPerIP        = 50
	DefaultFailureWindow           = 5 * time.Minute
)

// LoginOptions configure the login and consent pages. A zero field takes its default.
type LoginOptions struct {
	// SessionIdleLifetime ends a login session unused for this long (default 1h).
	SessionIdleLifetime time.Duration
	// SessionAbsoluteLifetime ends a login session this long after the password was entered,
	// however often it is used (default 12h).
	SessionAbsoluteLifetime time.Duration
	// ConsentLifetime is how long an "Allow" on the consent page is remembered for that user,
	// client and scope set (default 30 days).
	ConsentLifetime time.Duration
	// MaxFailuresPerUser is how many failed logins one username may have in FailureWindow
	// before further attempts are refused with 429, whatever the password (default 10).
	MaxFailuresPerUser int
	// MaxFailuresPerIP is the same limit per client address (default 50). The address is the
	// connection's, or X-Forwarded-For's as far as Options.TrustedProxies vouch for it
	// (RFC 9700 §4.13); IPv6 addresses count per /64.
	MaxFailuresPerIP int
	// FailureWindow is the fixed window the failures are counted in (default 5 min).
	FailureWindow time.Duration
}

func (o LoginOptions) withDefaults() LoginOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.SessionIdleLifetime, DefaultSessionIdleLifetime)
	def(&o.SessionAbsoluteLifetime, DefaultSessionAbsoluteLifetime)
	def(&o.ConsentLifetime, DefaultConsentLifetime)
	def(&o.FailureWindow, DefaultFailureWindow)
	if o.MaxFailuresPerUser <= 0 {
		o.MaxFailuresPerUser = DefaultMaxFailuresPerUser
	}
	if o.MaxFailuresPerIP <= 0 {
		o.MaxFailuresPerIP = DefaultMaxFailuresPerIP
	}
	return o
}

// flow holds what the browser side of the authorization code flow needs: the pages, the users,
// the cross-origin check and the cookie settings.
//
// Two cookies, both HttpOnly and SameSite=Lax (Lax, not Strict: the browser arrives at
// /authorize by a top-level navigation from the client's site, and must carry the session
// there), Secure and "__Host-" prefixed when the issuer is https (so no subdomain and no
// plain-http page can set or shadow them), Path-scoped to the issuer's path otherwise:
//
//   - the browser cookie: a random value set at /authorize whose hash is stored in every
//     authorization request this browser starts. The login and consent pages and posts work
//     only with it, so a leaked request id cannot be completed from another browser
//     (SECURITY-CASES 15, CVE-2022-39222). It is a browser-session cookie, reused across
//     requests so that several tabs can sign in at once;
//   - the session cookie: the login session (store.Sessions), so a second authorization in
//     the same browser skips the password until the session's idle or absolute lifetime ends.
//     A new id is issued at every password login (no session fixation).
type flow struct {
	ui    *ui.UI
	users *users.Directory
	// csrf is net/http's cross-origin protection (Sec-Fetch-Site, then Origin against Host),
	// with the issuer's own origin trusted for deployments behind a proxy that rewrites Host.
	csrf *http.CrossOriginProtection
	opts LoginOptions

	secure        bool
	cookiePath    string
	browserCookie string
	sessionCookie string
}

func newFlow(s *Server) (*flow, error) {
	u, err := ui.New(ui.Options{BasePath: s.basePath})
	if err != nil {
		return nil, fmt.Errorf("login pages: %w", err)
	}
	iss, err := url.Parse(s.issuer)
	if err != nil {
		return nil, fmt.Errorf("login pages: %w", err)
	}
	f := &flow{
		ui:    u,
		users: users.NewDirectory(s.opts.Reader, s.opts.Namespace, s.opts.UsersSecret),
		csrf:  http.NewCrossOriginProtection(),
		opts:  s.opts.Login.withDefaults(),
	}
	if err := f.csrf.AddTrustedOrigin(iss.Scheme + "://" + iss.Host); err != nil {
		return nil, fmt.Errorf("login pages: %w", err)
	}
	f.secure = iss.Scheme == "https"
	f.browserCookie, f.sessionCookie = "latchkey-browser", "latchkey-session"
	f.cookiePath = s.basePath + "/"
	if f.secure {
		// RFC 6265bis §4.1.3.2: a __Host- cookie is Secure, host-only and has Path=/.
		f.browserCookie, f.sessionCookie = "__Host-"+f.browserCookie, "__Host-"+f.sessionCookie
		f.cookiePath = "/"
	}
	return f, nil
}

// setCookie sets one of the flow's cookies; maxAge < 0 deletes it, 0 makes it last for the
// browser session.
func (f *flow) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     f.cookiePath,
		MaxAge:   maxAge,
		Secure:   f.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// cookie returns the value of the named cookie when it has the form of a flow secret, "" when
// it is absent or malformed. A duplicate (one set by a sibling path or host) makes it "" too:
// which one is ours cannot be told.
func (f *flow) cookie(r *http.Request, name string) string {
	var found string
	for _, c := range r.CookiesNamed(name) {
		if found != "" || !tokenid.ValidSecret(c.Value) {
			return ""
		}
		found = c.Value
	}
	return found
}

// matchesHash reports in constant time whether store.Hash(secret) equals hash. An empty hash
// never matches.
func matchesHash(secret, hash string) bool {
	if hash == "" || !tokenid.ValidSecret(secret) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(store.Hash(secret)), []byte(hash)) == 1
}

// errDirectory marks users-directory failures (the Secret missing or invalid): nobody can log
// in, the page says "temporarily unavailable", nothing is revoked.
var errDirectory = errors.New("users directory unavailable")
