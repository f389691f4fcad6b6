package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/redirect"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
	"github.com/latchkey-dev/latchkey/server/ui"
	"github.com/latchkey-dev/latchkey/server/users"
)

// The login and consent pages (GET) and their forms (POST).
//
// A page or form names its pending authorization request by request_id. Every GET and POST
// checks that the request exists and that this browser started it (the browser cookie, see
// flow); every POST also passes net/http's CrossOriginProtection and presents the request's
// current CSRF token, a fresh 256-bit value per rendered page whose hash is stored in the
// request. Any failure of these is the same 403 page, which says only that the sign-in request
// cannot continue (SECURITY-CASES 15). A request is completed by TakeAuthRequest, which has
// exactly one winner, so a replayed post finds nothing and is refused too.
//
// Login:
//   - A wrong password and an unknown username give the same message after the same work
//     (users.Directory), with status 400.
//   - Failed logins are counted per username and per client address in fixed windows
//     (LoginOptions; store.Limiter, atomic in Redis). At the limit, further attempts are
//     refused with 429 and Retry-After before any password is checked, whether or not the
//     password would be right. The limit is read before and counted after the password check,
//     so concurrent attempts can overshoot it by the few that were already being hashed.
//   - A successful login starts a new session (a new id, the old one deleted).
//
// Consent:
//   - Shown when spec.requireConsent is set and the user has not allowed every requested
//     scope before, or when the request said prompt=consent. "Allow" is remembered per user,
//     client and scope set for LoginOptions.ConsentLifetime; "Deny" answers access_denied.
//
// All redirects after a POST are 303 (RFC 9700 §4.12).

// handleLoginPage shows the login form of a pending request.
func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	s.showPage(w, r, stageLogin)
}

// handleConsentPage shows the consent form of a pending request whose user has signed in.
func (s *Server) handleConsentPage(w http.ResponseWriter, r *http.Request) {
	s.showPage(w, r, stageConsent)
}

func (s *Server) showPage(w http.ResponseWriter, r *http.Request, stage string) {
	ctx := r.Context()
	id := r.URL.Query().Get(paramRequestID)
	req, ok := s.pending(w, r, id)
	if !ok {
		return
	}
	if req.Stage != stage {
		// The login page of a request already signed in (the back button) moves on, and the
		// consent page of one that is not yet goes back.
		s.toPage(w, r, req.Stage, id)
		return
	}
	csrf := tokenid.NewSecret()
	req.CSRF = store.Hash(csrf)
	if err := s.putAuthRequest(ctx, id, req); err != nil {
		s.unavailablePage(w, r, err)
		return
	}
	infoFrom(ctx).outcome = "ok"
	if stage == stageLogin {
		s.renderLogin(w, r, http.StatusOK, req, id, csrf, req.LoginHint, "")
		return
	}
	s.renderConsent(w, r, req, id, csrf)
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, req *authRequest, id, csrf, username, message string) {
	err := s.flow.ui.Render(w, status, ui.LoginPage{
		ClientID:    req.ClientID,
		RequestID:   id,
		CSRFToken:   csrf,
		Username:    username,
		Error:       message,
		Action:      s.route(pathLogin),
		RedirectURI: req.RedirectURI,
	})
	if err != nil {
		s.log.Error(err, "Rendering the login page failed")
	}
}

func (s *Server) renderConsent(w http.ResponseWriter, r *http.Request, req *authRequest, id, csrf string) {
	err := s.flow.ui.Render(w, http.StatusOK, ui.ConsentPage{
		ClientID:    req.ClientID,
		Username:    req.Subject,
		Scopes:      displayOrder(strings.Fields(req.Scope)),
		RequestID:   id,
		CSRFToken:   csrf,
		Action:      s.route(pathConsent),
		RedirectURI: req.RedirectURI,
	})
	if err != nil {
		s.log.Error(err, "Rendering the consent page failed")
	}
}

// handleLogin checks the username and password of the login form.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, req, id, ok := s.readPost(w, r, stageLogin)
	if !ok {
		return
	}
	csrf := form.Get(ui.FieldCSRFToken)
	typed := form.Get(ui.FieldUsername)
	// username is what the page refills and the limiter counts; the directory gets what was
	// typed, and refuses an overlong one like a wrong password.
	username := typed
	if len(username) > users.MaxUsernameBytes {
		username = username[:users.MaxUsernameBytes]
	}
	now := s.now()
	userKey, ipKey := s.throttleKeys(r, username)
	retry, err := s.throttled(ctx, userKey, ipKey, now)
	if err != nil {
		s.renderLoginUnavailable(w, r, req, id, csrf, username, err)
		return
	}
	if retry > 0 {
		info := infoFrom(ctx)
		info.outcome, info.cause = "too_many_attempts", errors.New("login throttled")
		s.emit(ctx, audit.LoginFailed, req.ClientID, username, "", slog.String("reason", "throttled"))
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		s.renderLogin(w, r, http.StatusTooManyRequests, req, id, csrf, username, ui.MessageTooManyAttempts)
		return
	}
	user, err := s.flow.users.Authenticate(ctx, typed, form.Get(ui.FieldPassword))
	if errors.Is(err, users.ErrInvalidCredentials) {
		if err := s.countFailure(ctx, userKey, ipKey, now); err != nil {
			s.renderLoginUnavailable(w, r, req, id, csrf, username, err)
			return
		}
		info := infoFrom(ctx)
		info.outcome, info.cause = "invalid_credentials", err
		s.emit(ctx, audit.LoginFailed, req.ClientID, username, "", slog.String("reason", "invalid_credentials"))
		s.renderLogin(w, r, http.StatusBadRequest, req, id, csrf, username, ui.MessageInvalidCredentials)
		return
	}
	if err != nil {
		s.renderLoginUnavailable(w, r, req, id, csrf, username, fmt.Errorf("%w: %w", errDirectory, err))
		return
	}

	// A new session id at every password login, so a session id planted before the login
	// is never the one that becomes authenticated.
	if old := s.flow.cookie(r, s.flow.sessionCookie); old != "" {
		if err := s.store.DeleteSession(ctx, store.Hash(old)); err != nil {
			s.renderLoginUnavailable(w, r, req, id, csrf, username, err)
			return
		}
	}
	sid := tokenid.NewSecret()
	o := s.flow.opts
	err = s.store.CreateSession(ctx, store.Hash(sid), store.Session{
		Subject:   user.Username,
		AuthTime:  now,
		ExpiresAt: now.Add(o.SessionAbsoluteLifetime),
	}, o.SessionIdleLifetime, now)
	if err != nil {
		s.renderLoginUnavailable(w, r, req, id, csrf, username, err)
		return
	}
	s.flow.setCookie(w, s.flow.sessionCookie, sid, 0)
	s.emit(ctx, audit.LoginSucceeded, req.ClientID, user.Username, "")

	req.Subject, req.AuthTime = user.Username, now
	need, err := s.needsConsent(ctx, req, now)
	if err != nil {
		s.unavailablePage(w, r, err)
		return
	}
	if need {
		req.Stage = stageConsent
		if err := s.putAuthRequest(ctx, id, req); err != nil {
			s.unavailablePage(w, r, err)
			return
		}
		infoFrom(ctx).outcome = "ok"
		s.toPage(w, r, stageConsent, id)
		return
	}
	s.complete(w, r, id, req, issue)
}

// handleConsent records the decision of the consent form.
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, req, id, ok := s.readPost(w, r, stageConsent)
	if !ok {
		return
	}
	// Only the signed-in user of this browser decides: the session must still be live and
	// be the user the request was signed in as.
	sess, err := s.currentSession(ctx, r, s.now())
	if err != nil {
		s.unavailablePage(w, r, err)
		return
	}
	if sess == nil || sess.Subject != req.Subject {
		s.refusePage(w, r, errors.New("consent without the session that signed in"))
		return
	}
	switch form.Get(ui.FieldDecision) {
	case ui.DecisionAllow:
		s.complete(w, r, id, req, issueAndRemember)
	case ui.DecisionDeny:
		s.complete(w, r, id, req, deny)
	default:
		s.errorPage(w, r, http.StatusBadRequest, oautherr.InvalidRequest("decision is required"),
			"The form is incomplete", "Go back, and choose Allow or Deny.")
	}
}

// How a request ends.
type ending int

const (
	issue            ending = iota // a code
	issueAndRemember               // a code, and the consent is remembered
	deny                           // access_denied (SECURITY-CASES 13)
)

// complete takes the request (exactly one caller can), re-checks that the client still exists
// and still registers the redirect URI (an OAuthClient edit applies to a pending request too),
// and ends it with a redirect to the client.
func (s *Server) complete(w http.ResponseWriter, r *http.Request, id string, req *authRequest, end ending) {
	ctx := r.Context()
	taken, ok := s.take(w, r, id)
	if !ok {
		return
	}
	// The stored copy is authoritative. It is the one that passed the browser check in
	// pending, unless a concurrent page view changed its CSRF token, which is harmless.
	if taken.Browser != req.Browser || taken.Stage != req.Stage {
		s.refusePage(w, r, errors.New("authorization request changed while completing"))
		return
	}
	taken.Subject, taken.AuthTime = req.Subject, req.AuthTime
	c, err := s.registry.Lookup(ctx, taken.ClientID)
	if err != nil {
		if errors.Is(err, clients.ErrNotFound) {
			s.errorPage(w, r, http.StatusBadRequest, oautherr.New(oautherr.CodeInvalidClient, "unknown client").WithCause(err),
				"Unknown application", "The application you are signing in to is no longer registered, or is disabled.")
			return
		}
		s.unavailablePage(w, r, err)
		return
	}
	if _, ok := redirect.Match(c.Spec.RedirectURIs, taken.RedirectURI); !ok {
		s.errorPage(w, r, http.StatusBadRequest, oautherr.InvalidRequest("redirect_uri is no longer registered"),
			"Invalid redirect address", "The application no longer registers the address it asked to send you back to.")
		return
	}
	switch end {
	case deny:
		s.emit(ctx, audit.ConsentDenied, taken.ClientID, taken.Subject, "", slog.String("scope", taken.Scope))
		s.redirectError(w, r, taken.RedirectURI, taken.State, oautherr.New(oautherr.CodeAccessDenied, "the user denied the request"))
		return
	case issueAndRemember:
		now := s.now()
		err := s.store.SaveConsent(ctx, taken.Subject, taken.ClientID, strings.Fields(taken.Scope),
			now.Add(s.flow.opts.ConsentLifetime), now)
		if err != nil {
			s.redirectError(w, r, taken.RedirectURI, taken.State, oautherr.From(fmt.Errorf("save consent: %w", err)))
			return
		}
		s.emit(ctx, audit.ConsentGiven, taken.ClientID, taken.Subject, "", slog.String("scope", taken.Scope))
	}
	s.issueCode(w, r, taken)
}

// readPost reads a login or consent form and checks, in this order: the cross-origin check,
// the form, the request and its browser, the CSRF token, and the stage.
func (s *Server) readPost(w http.ResponseWriter, r *http.Request, stage string) (httpx.Form, *authRequest, string, bool) {
	if err := s.flow.csrf.Check(r); err != nil {
		s.refusePage(w, r, fmt.Errorf("cross-origin check: %w", err))
		return nil, nil, "", false
	}
	form, err := httpx.ReadForm(w, r)
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, formError(err), "The form is malformed",
			"This server could not read the form. Go back to the application and start again.")
		return nil, nil, "", false
	}
	id := form.Get(paramRequestID)
	req, ok := s.pending(w, r, id)
	if !ok {
		return nil, nil, "", false
	}
	if !matchesHash(form.Get(ui.FieldCSRFToken), req.CSRF) {
		s.refusePage(w, r, errors.New("csrf token missing or wrong"))
		return nil, nil, "", false
	}
	if req.Stage != stage {
		s.refusePage(w, r, fmt.Errorf("form of stage %s posted at stage %s", stage, req.Stage))
		return nil, nil, "", false
	}
	return form, req, id, true
}

// pending loads the request id names and checks that this browser started it.
func (s *Server) pending(w http.ResponseWriter, r *http.Request, id string) (*authRequest, bool) {
	if !tokenid.ValidSecret(id) {
		s.refusePage(w, r, errors.New("request_id missing or malformed"))
		return nil, false
	}
	b, err := s.store.GetAuthRequest(r.Context(), store.Hash(id), s.now())
	req, ok := s.loadedRequest(w, r, b, err)
	if !ok {
		return nil, false
	}
	infoFrom(r.Context()).clientID = req.ClientID
	if !matchesHash(s.flow.cookie(r, s.flow.browserCookie), req.Browser) {
		s.refusePage(w, r, errors.New("authorization request of another browser"))
		return nil, false
	}
	return req, true
}

// take removes the request; a request already taken (a replayed or double-clicked post) is
// refused.
func (s *Server) take(w http.ResponseWriter, r *http.Request, id string) (*authRequest, bool) {
	b, err := s.store.TakeAuthRequest(r.Context(), store.Hash(id), s.now())
	return s.loadedRequest(w, r, b, err)
}

// loadedRequest decodes a request the store returned. An unknown, expired or taken one is
// refused; a store outage or an undecodable record is the unavailable page, never a 500.
func (s *Server) loadedRequest(w http.ResponseWriter, r *http.Request, b []byte, err error) (*authRequest, bool) {
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.refusePage(w, r, err)
			return nil, false
		}
		s.unavailablePage(w, r, err)
		return nil, false
	}
	req, err := decodeAuthRequest(b)
	if err != nil {
		s.unavailablePage(w, r, err)
		return nil, false
	}
	return req, true
}

// toPage sends the browser to the page of stage (303: also after a POST).
func (s *Server) toPage(w http.ResponseWriter, r *http.Request, stage, id string) {
	path := pathLogin
	if stage == stageConsent {
		path = pathConsent
	}
	ui.SetPageHeaders(w.Header())
	w.Header().Set("Location", s.route(path)+"?"+paramRequestID+"="+id)
	w.WriteHeader(http.StatusSeeOther)
}

// refusePage is the one 403 of the login and consent pages: it says only that this sign-in
// request cannot continue, whatever the reason (logged).
func (s *Server) refusePage(w http.ResponseWriter, r *http.Request, cause error) {
	s.errorPage(w, r, http.StatusForbidden, oautherr.New(oautherr.CodeAccessDenied, "request refused").WithCause(cause),
		"This sign-in cannot continue", ui.MessageSessionExpired)
}

func (s *Server) unavailablePage(w http.ResponseWriter, r *http.Request, cause error) {
	s.errorPage(w, r, http.StatusServiceUnavailable, oautherr.Unavailable("unavailable", cause),
		"Signing in is temporarily unavailable", ui.MessageUnavailable)
}

func (s *Server) renderLoginUnavailable(w http.ResponseWriter, r *http.Request, req *authRequest, id, csrf, username string, cause error) {
	info := infoFrom(r.Context())
	info.outcome, info.cause = oautherr.CodeTemporarilyUnavailable, cause
	s.renderLogin(w, r, http.StatusServiceUnavailable, req, id, csrf, username, ui.MessageUnavailable)
}

// currentSession returns this browser's live login session, or nil. A session whose user has
// left the users Secret is ended. Store and directory failures are errors.
func (s *Server) currentSession(ctx context.Context, r *http.Request, now time.Time) (*store.Session, error) {
	sid := s.flow.cookie(r, s.flow.sessionCookie)
	if sid == "" {
		return nil, nil
	}
	sess, err := s.store.GetSession(ctx, store.Hash(sid), s.flow.opts.SessionIdleLifetime, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	_, found, err := s.flow.users.Lookup(ctx, sess.Subject)
	if err != nil {
		return nil, oautherr.Unavailable("the users directory is unavailable", fmt.Errorf("%w: %w", errDirectory, err))
	}
	if !found {
		if err := s.store.DeleteSession(ctx, store.Hash(sid)); err != nil {
			return nil, fmt.Errorf("delete session: %w", err)
		}
		return nil, nil
	}
	return &sess, nil
}

// throttleKeys are the limiter keys of a login attempt: the username as the directory matches
// it (trimmed, case-folded), hashed so the store never holds what was typed, and the client
// address, per /64 for IPv6 (one host usually owns the whole /64).
func (s *Server) throttleKeys(r *http.Request, username string) (string, string) {
	user := "login-user:" + store.Hash(strings.ToLower(strings.TrimSpace(username)))
	ip := httpx.ClientIP(r, s.opts.TrustedProxies)
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return user, "login-ip:" + p.String()
		}
	}
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	return user, "login-ip:" + ip.String()
}

// throttled reads both counters and returns how long until the attempt may be made, 0 when it
// may be made now.
func (s *Server) throttled(ctx context.Context, userKey, ipKey string, now time.Time) (time.Duration, error) {
	o := s.flow.opts
	var wait time.Duration
	for _, l := range []struct {
		key   string
		limit int
	}{{userKey, o.MaxFailuresPerUser}, {ipKey, o.MaxFailuresPerIP}} {
		n, reset, err := s.store.Hit(ctx, l.key, 0, o.FailureWindow, now)
		if err != nil {
			return 0, fmt.Errorf("read login failures: %w", err)
		}
		if n >= int64(l.limit) {
			wait = max(wait, reset.Sub(now), time.Second)
		}
	}
	return wait, nil
}

// countFailure adds a failed login to both counters.
func (s *Server) countFailure(ctx context.Context, userKey, ipKey string, now time.Time) error {
	for _, key := range []string{userKey, ipKey} {
		if _, _, err := s.store.Hit(ctx, key, 1, s.flow.opts.FailureWindow, now); err != nil {
			return fmt.Errorf("count login failure: %w", err)
		}
	}
	return nil
}

// wellKnownScopes come first on the consent page, in this order; the others follow sorted.
var wellKnownScopes = []string{scopeOpenID, scopeProfile, scopeEmail, scopeOfflineAccess}

// displayOrder orders scopes for the consent page: what the user knows first.
func displayOrder(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, w := range wellKnownScopes {
		if slices.Contains(scopes, w) {
			out = append(out, w)
		}
	}
	for _, s := range scopes {
		if !slices.Contains(wellKnownScopes, s) {
			out = append(out, s)
		}
	}
	return out
}
