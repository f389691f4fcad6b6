package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/pkce"
	"github.com/latchkey-dev/latchkey/server/redirect"
	"github.com/latchkey-dev/latchkey/server/scope"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
	"github.com/latchkey-dev/latchkey/server/ui"
	"github.com/latchkey-dev/latchkey/server/users"
)

// Authorization request parameters (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1, RFC 7636 §4.3,
// OpenID Connect Core 1.0 §3.1.2.1).
const (
	paramRedirectURI         = "redirect_uri"
	paramResponseType        = "response_type"
	paramResponseMode        = "response_mode"
	paramState               = "state"
	paramCodeChallenge       = "code_challenge"
	paramCodeChallengeMethod = "code_challenge_method"
	paramNonce               = "nonce"
	paramPrompt              = "prompt"
	paramMaxAge              = "max_age"
	paramLoginHint           = "login_hint"
	paramRequest             = "request"
	paramRequestURI          = "request_uri"
	paramRequestID           = ui.FieldRequestID
)

// Authorization error codes of OpenID Connect Core 1.0 §3.1.2.6, beside RFC 6749's.
const (
	codeLoginRequired          = "login_required"
	codeConsentRequired        = "consent_required"
	codeRequestNotSupported    = "request_not_supported"
	codeRequestURINotSupported = "request_uri_not_supported"
)

// Values and bounds of authorization request parameters.
const (
	responseTypeCode  = "code"
	responseModeQuery = "query"
	promptNone        = "none"
	promptLogin       = "login"
	promptConsent     = "consent"
	maxNonceLength    = 512
	// maxLoginHintLength: a longer login_hint is ignored, not an error (it is only a hint).
	maxLoginHintLength = users.MaxUsernameBytes
	// maxRedirectErrorDescription bounds the error_description put in a redirect URL.
	maxRedirectErrorDescription = 200
)

// MaxStateLength is the longest state accepted. A longer one is refused with invalid_request
// (sent without the state, which cannot be echoed): it is never truncated (SECURITY-CASES 10).
// It leaves room for the 2 KiB states some clients use to carry their own context.
const MaxStateLength = 4096

// promptValues are the prompt values /authorize honours, as discovery advertises them.
var promptValues = []string{promptNone, promptLogin, promptConsent}

// Stages of a pending authorization request.
const (
	stageLogin   = "login"
	stageConsent = "consent"
)

// authRequest is a validated authorization request waiting for the user, stored (as JSON,
// under store.Hash of its id) between /authorize and the last form post. Every field was
// checked at /authorize; the pages only add the user.
type authRequest struct {
	ClientID string `json:"c"`
	// RedirectURI is the verified redirect URI the response goes to (redirect.Resolve), and
	// RedirectSent whether the request named it: only then must the token request repeat it
	// (RFC 6749 §4.1.3).
	RedirectURI  string `json:"r"`
	RedirectSent bool   `json:"rs,omitempty"`
	// Scope is the requested scope, canonical.
	Scope     string `json:"sc"`
	State     string `json:"st,omitempty"`
	Nonce     string `json:"n,omitempty"`
	Challenge string `json:"ch"`
	// Audience is the space-separated aud the grant's access tokens get, as the client named
	// it when the request was made; the code and its family keep it (SECURITY-CASES 40).
	Audience string `json:"au,omitempty"`
	// PromptLogin and PromptConsent: prompt=login (or a max_age that the session's auth_time
	// exceeds) forces the password; prompt=consent forces the consent page.
	PromptLogin   bool   `json:"pl,omitempty"`
	PromptConsent bool   `json:"pc,omitempty"`
	LoginHint     string `json:"lh,omitempty"`
	// Browser is store.Hash of the browser cookie that started the request; CSRF is
	// store.Hash of the CSRF token of the page shown last.
	Browser string `json:"b"`
	CSRF    string `json:"x"`
	// Stage is stageLogin until the user authenticated, then stageConsent with Subject and
	// AuthTime set.
	Stage     string    `json:"sg"`
	Subject   string    `json:"s,omitempty"`
	AuthTime  time.Time `json:"at,omitzero"`
	ExpiresAt time.Time `json:"e"`

	// Checked at /authorize against the session, so never stored: a request that is stored
	// goes to the login page (a fresh authentication) or has passed these checks.
	promptNone bool
	maxAge     time.Duration
	hasMaxAge  bool
}

// handleAuthorize is the authorization endpoint (RFC 6749 §3.1, OAuth 2.1 §4.1.1), GET or
// POST (OpenID Connect Core §3.1.2.1 asks for both; a POST is form-encoded).
//
// Until the client and the redirect URI are verified, every error is an HTML error page with
// status 400 and no redirect (OAuth 2.1 §4.1.2.1; SECURITY-CASES 1, 4, 5): an unparseable query
// (a repeated parameter, a bad escape, invalid UTF-8, more than 64 parameters), an unknown or
// not Ready client, a missing, unregistered or ambiguous redirect_uri. Redirect URIs match
// exactly, except the port of a loopback URI (package redirect).
//
// Once both are verified, every error redirects back at once (decision D3, SECURITY-CASES 12:
// the redirect URIs were registered by a tenant with RBAC rights on an OAuthClient, not by an
// anonymous party, so a bad request does not make the server an open redirector, and sending
// the user to a login page first for a request that will fail anyway helps nobody). The error
// response is a 303 with error, error_description, the exact state and iss (RFC 9207).
//
// Decisions where the specifications leave room:
//   - response_type must be exactly "code"; anything else is unsupported_response_type, so no
//     token ever travels in a URL (OAuth 2.1 §10, SECURITY-CASES 7). response_mode, when
//     sent, must be "query".
//   - PKCE S256 is required of every client (pkce.ValidateChallenge, SECURITY-CASES 18, 19).
//   - A missing scope means every scope of the client's spec.scopes (the pre-defined default
//     RFC 6749 §3.3 allows, as for client_credentials); the consent page shows them.
//   - Unknown parameters are ignored and empty ones are absent (SECURITY-CASES 10); request
//     and request_uri are refused with request_not_supported and request_uri_not_supported
//     (OpenID Connect Core §6), since honouring only the outer parameters of a signed request
//     would silently drop what the client meant to protect.
//   - prompt takes none, login and consent, space-separated; none with another value, or an
//     unknown value, is invalid_request. max_age=0 forces a new login.
//   - login_hint pre-fills the username.
//   - No CORS header is ever sent: a browser calls this endpoint by navigation only.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	info := infoFrom(ctx)
	var form httpx.Form
	var err error
	if r.Method == http.MethodPost {
		form, err = httpx.ReadForm(w, r)
	} else {
		form, err = httpx.ParseForm(r.URL.RawQuery, httpx.MaxFormParams)
	}
	if err != nil {
		// A request that cannot be parsed unambiguously names no client and redirect URI we
		// could trust to be the ones meant (a repeated redirect_uri, say): page, never redirect.
		s.errorPage(w, r, http.StatusBadRequest, formError(err), "The sign-in request is malformed",
			"The application sent a sign-in request this server cannot read. Go back to it and try again.")
		return
	}

	clientID := form.Get(clients.ParamClientID)
	if clientID == "" {
		s.errorPage(w, r, http.StatusBadRequest, oautherr.InvalidRequest("client_id is required"),
			"The sign-in request is incomplete", "The application did not say who it is. Go back to it and try again.")
		return
	}
	c, err := s.registry.Lookup(ctx, clientID)
	if err != nil {
		if errors.Is(err, clients.ErrNotFound) {
			s.errorPage(w, r, http.StatusBadRequest, oautherr.New(oautherr.CodeInvalidClient, "unknown client").WithCause(err),
				"Unknown application", "The application that sent you here is not registered with this server, or is disabled.")
			return
		}
		s.errorPage(w, r, http.StatusServiceUnavailable, oautherr.Unavailable("clients unavailable", err),
			"Signing in is temporarily unavailable", ui.MessageUnavailable)
		return
	}
	info.clientID = clientID
	uri, err := redirect.Resolve(c.Spec.RedirectURIs, form.Get(paramRedirectURI))
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, oautherr.InvalidRequest("redirect_uri").WithCause(err),
			"Invalid redirect address", "The application asked to send you back to an address it has not registered. "+
				"Nothing was sent to it. Tell the application's owner.")
		return
	}

	// From here on the redirect URI is the client's own: errors go back to it (D3).
	req, oerr := s.parseAuthorizeRequest(c, form, uri)
	if oerr != nil {
		state := form.Get(paramState)
		if len(state) > MaxStateLength {
			state = ""
		}
		s.redirectError(w, r, uri, state, oerr)
		return
	}
	s.authorize(w, r, req)
}

// parseAuthorizeRequest checks the parameters of a request whose client and redirect URI are
// verified, in the order that gives the most useful error.
func (s *Server) parseAuthorizeRequest(c *latchkeyv1.OAuthClient, form httpx.Form, uri string) (*authRequest, *oautherr.Error) {
	req := &authRequest{
		ClientID:     c.EffectiveClientID(),
		RedirectURI:  uri,
		RedirectSent: form.Has(paramRedirectURI),
		State:        form.Get(paramState),
		Nonce:        form.Get(paramNonce),
		Audience:     strings.Join(accesstoken.DefaultAudience(c.Spec.Audiences, c.EffectiveClientID()), " "),
	}
	if len(req.State) > MaxStateLength {
		return nil, oautherr.InvalidRequest(fmt.Sprintf("state is longer than %d bytes", MaxStateLength))
	}
	if form.Has(paramRequest) {
		return nil, oautherr.New(codeRequestNotSupported, "request objects are not supported")
	}
	if form.Has(paramRequestURI) {
		return nil, oautherr.New(codeRequestURINotSupported, "request_uri is not supported")
	}
	switch rt := form.Get(paramResponseType); {
	case rt == "":
		return nil, oautherr.InvalidRequest("response_type is required")
	case rt != responseTypeCode:
		return nil, oautherr.New(oautherr.CodeUnsupportedResponseType, "only response_type=code is supported")
	}
	if !c.AllowsGrant(latchkeyv1.GrantAuthorizationCode) {
		return nil, oautherr.UnauthorizedClient("the client may not use the authorization code grant")
	}
	if m := form.Get(paramResponseMode); m != "" && m != responseModeQuery {
		return nil, oautherr.InvalidRequest("only response_mode=query is supported")
	}
	challenge := form.Get(paramCodeChallenge)
	if err := pkce.ValidateChallenge(challenge, form.Get(paramCodeChallengeMethod)); err != nil {
		return nil, oautherr.InvalidRequest(err.Error())
	}
	req.Challenge = challenge

	scopes := scope.Normalize(c.Spec.Scopes)
	if form.Has(paramScope) {
		var err error
		if scopes, err = scope.Parse(form.Get(paramScope)); err != nil {
			return nil, oautherr.InvalidScope("scope is malformed")
		}
		if _, ok := scope.Subset(scopes, c.Spec.Scopes); !ok {
			return nil, oautherr.InvalidScope("the requested scope exceeds what the client may request")
		}
	}
	req.Scope = scope.Join(scopes)

	if p := form.Get(paramPrompt); p != "" {
		values := strings.Split(p, " ")
		for _, v := range values {
			switch v {
			case promptNone:
				if len(values) > 1 {
					return nil, oautherr.InvalidRequest("prompt=none cannot be combined with another value")
				}
				req.promptNone = true
			case promptLogin:
				req.PromptLogin = true
			case promptConsent:
				req.PromptConsent = true
			default:
				return nil, oautherr.InvalidRequest("prompt has an unsupported value")
			}
		}
	}
	if v := form.Get(paramMaxAge); v != "" {
		n, err := strconv.ParseUint(v, 10, 31)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return nil, oautherr.InvalidRequest("max_age must be a non-negative integer")
		}
		// OpenID Connect Core §3.1.2.1: max_age=0 is prompt=login; otherwise the session's
		// auth_time is checked against it in authorize.
		req.PromptLogin = req.PromptLogin || n == 0
		req.maxAge = time.Duration(n) * time.Second
		req.hasMaxAge = true
	}
	if len(req.Nonce) > maxNonceLength {
		return nil, oautherr.InvalidRequest(fmt.Sprintf("nonce is longer than %d bytes", maxNonceLength))
	}
	if h := form.Get(paramLoginHint); len(h) <= maxLoginHintLength {
		req.LoginHint = h
	}
	return req, nil
}

// authorize decides what the user must do for a valid request: sign in, consent, or nothing
// (an existing session and, where needed, a remembered consent give a code at once).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, req *authRequest) {
	ctx := r.Context()
	now := s.now()
	sess, err := s.currentSession(ctx, r, now)
	if err != nil {
		s.redirectError(w, r, req.RedirectURI, req.State, oautherr.From(err))
		return
	}
	needLogin := sess == nil || req.PromptLogin ||
		(req.hasMaxAge && now.Sub(sess.AuthTime) > req.maxAge)
	if needLogin {
		if req.promptNone {
			s.redirectError(w, r, req.RedirectURI, req.State, oautherr.New(codeLoginRequired, "the user is not signed in"))
			return
		}
		req.Stage = stageLogin
		s.startInteraction(w, r, req, pathLogin)
		return
	}
	req.Subject, req.AuthTime = sess.Subject, sess.AuthTime
	need, err := s.needsConsent(ctx, req, now)
	if err != nil {
		s.redirectError(w, r, req.RedirectURI, req.State, oautherr.From(err))
		return
	}
	if need {
		if req.promptNone {
			s.redirectError(w, r, req.RedirectURI, req.State, oautherr.New(codeConsentRequired, "the user has not consented"))
			return
		}
		req.Stage = stageConsent
		s.startInteraction(w, r, req, pathConsent)
		return
	}
	s.issueCode(w, r, req)
}

// needsConsent reports whether the consent page must be shown: prompt=consent, or a client
// with spec.requireConsent whose user has not allowed every requested scope before.
func (s *Server) needsConsent(ctx context.Context, req *authRequest, now time.Time) (bool, error) {
	if req.PromptConsent {
		return true, nil
	}
	c, err := s.registry.Lookup(ctx, req.ClientID)
	if err != nil {
		return false, fmt.Errorf("consent: %w", err)
	}
	if !c.Spec.RequireConsent {
		return false, nil
	}
	ok, err := s.store.HasConsent(ctx, req.Subject, req.ClientID, strings.Fields(req.Scope), now)
	if err != nil {
		return false, fmt.Errorf("consent: %w", err)
	}
	return !ok, nil
}

// startInteraction stores the request, binds it to this browser and sends the browser to the
// login or consent page.
func (s *Server) startInteraction(w http.ResponseWriter, r *http.Request, req *authRequest, page string) {
	browser := s.flow.cookie(r, s.flow.browserCookie)
	if browser == "" {
		browser = tokenid.NewSecret()
	}
	// Set it every time, so its attributes follow the current configuration.
	s.flow.setCookie(w, s.flow.browserCookie, browser, 0)
	req.Browser = store.Hash(browser)
	req.ExpiresAt = s.now().Add(authRequestLifetime)
	id := tokenid.NewSecret()
	if err := s.putAuthRequest(r.Context(), id, req); err != nil {
		s.redirectError(w, r, req.RedirectURI, req.State, oautherr.From(err))
		return
	}
	ui.SetPageHeaders(w.Header())
	w.Header().Set("Location", s.route(page)+"?"+paramRequestID+"="+id)
	w.WriteHeader(http.StatusSeeOther)
	infoFrom(r.Context()).outcome = "ok"
}

func (s *Server) putAuthRequest(ctx context.Context, id string, req *authRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode authorization request: %w", err)
	}
	if err := s.store.PutAuthRequest(ctx, store.Hash(id), b, req.ExpiresAt, s.now()); err != nil {
		return fmt.Errorf("store authorization request: %w", err)
	}
	return nil
}

func decodeAuthRequest(b []byte) (*authRequest, error) {
	var req authRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("decode authorization request: %w", err)
	}
	return &req, nil
}

// issueCode creates the authorization code of a request whose user is known and answers with
// the redirect that carries it (OAuth 2.1 §4.1.2): code, state and iss in the query, never in
// a fragment. The code is stored by hash in the slot of the family its redemption will create,
// with everything the token request must match.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, req *authRequest) {
	ctx := r.Context()
	now := s.now()
	family := tokenid.NewFamilyID()
	code, hash := tokenid.NewCode(family)
	boundURI := ""
	if req.RedirectSent {
		boundURI = req.RedirectURI
	}
	err := s.store.CreateCode(ctx, family, hash, store.Code{
		Grant: store.Grant{
			ClientID:    req.ClientID,
			Subject:     req.Subject,
			Scope:       req.Scope,
			AuthTime:    req.AuthTime,
			Nonce:       req.Nonce,
			RedirectURI: boundURI,
			Audience:    req.Audience,
		},
		CodeChallenge: req.Challenge,
		ExpiresAt:     now.Add(codeLifetime),
	}, now)
	if err != nil {
		s.redirectError(w, r, req.RedirectURI, req.State, oautherr.From(fmt.Errorf("create authorization code: %w", err)))
		return
	}
	infoFrom(ctx).outcome = "ok"
	s.redirectToClient(w, req.RedirectURI, "code", code, "state", req.State, "iss", s.issuer)
}

// redirectError sends an authorization error to the verified redirect URI (OAuth 2.1
// §4.1.2.1): error, error_description, the exact state, and iss (RFC 9207 §2).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, uri, state string, oe *oautherr.Error) {
	info := infoFrom(r.Context())
	info.outcome, info.cause = oe.Code, oe.Cause()
	desc := oe.Description
	if oe.Code == oautherr.CodeServerError || oe.Code == oautherr.CodeTemporarilyUnavailable {
		desc = "" // the code says it all; no internal detail travels in a URL
	}
	if len(desc) > maxRedirectErrorDescription {
		desc = desc[:maxRedirectErrorDescription]
	}
	s.redirectToClient(w, uri, "error", oe.Code, "error_description", desc, "state", state, "iss", s.issuer)
}

// redirectToClient answers 303 with Location uri plus the non-empty pairs of kv in the query,
// form-encoded (RFC 6749 Appendix B), after any query the registered URI already has, which is
// kept as it is (RFC 6749 §3.1.2). 303 also after a POST, so a password never follows the
// browser to the client (RFC 9700 §4.12, SECURITY-CASES 14).
func (s *Server) redirectToClient(w http.ResponseWriter, uri string, kv ...string) {
	var b strings.Builder
	b.WriteString(uri)
	sep := "?"
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		sep = "&"
		if i == len(uri)-1 || strings.HasSuffix(uri, "&") {
			sep = ""
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		b.WriteString(sep)
		b.WriteString(url.QueryEscape(kv[i]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[i+1]))
		sep = "&"
	}
	ui.SetPageHeaders(w.Header())
	w.Header().Set("Location", b.String())
	w.WriteHeader(http.StatusSeeOther)
}

// errorPage renders an error page (never a redirect) and records the outcome for the log.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, oe *oautherr.Error, title, description string) {
	info := infoFrom(r.Context())
	info.outcome, info.cause = oe.Code, oe.Cause()
	if err := s.flow.ui.Render(w, status, ui.ErrorPage{Title: title, Description: description, Code: oe.Code}); err != nil {
		s.log.Error(err, "Rendering a page failed")
	}
}
