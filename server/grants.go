package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
)

// A grant plugs into the token endpoint by registering itself from its own file:
//
//	func init() { registerGrant(latchkeyv1.GrantAuthorizationCode, newAuthorizationCodeGrant) }
//
//	func newAuthorizationCodeGrant(s *Server) (grantHandler, error) {
//		return grantFunc(func(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
//			...
//		}), nil
//	}
//
// New builds every registered grant once; discovery's grant_types_supported lists exactly the
// registered grants. The dispatcher (token.go) is never edited to add one.

// grantHandler is one grant of the token endpoint (RFC 6749 §4, OAuth 2.1 §4).
type grantHandler interface {
	// handle runs the grant for an authenticated client that is allowed to use it. It returns
	// the response, or an error (an *oautherr.Error, or any error, which becomes
	// temporarily_unavailable for store.ErrUnavailable and server_error otherwise). It never
	// writes to the client itself.
	handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error)
}

// grantFunc adapts a function to grantHandler.
type grantFunc func(ctx context.Context, req *tokenRequest) (*tokenResponse, error)

func (f grantFunc) handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
	return f(ctx, req)
}

// grantBuilders is filled by registerGrant from init functions only.
var grantBuilders = map[latchkeyv1.GrantType]func(*Server) (grantHandler, error){}

// registerGrant adds a grant to every Server built afterwards. Call it from an init function;
// registering one grant type twice panics (a programming error).
func registerGrant(g latchkeyv1.GrantType, build func(*Server) (grantHandler, error)) {
	if _, dup := grantBuilders[g]; dup {
		panic(fmt.Sprintf("server: grant %q registered twice", g))
	}
	grantBuilders[g] = build
}

func buildGrants(s *Server) (map[latchkeyv1.GrantType]grantHandler, error) {
	out := make(map[latchkeyv1.GrantType]grantHandler, len(grantBuilders))
	for g, build := range grantBuilders {
		h, err := build(s)
		if err != nil {
			return nil, fmt.Errorf("build grant %s: %w", g, err)
		}
		out[g] = h
	}
	return out, nil
}

// grantTypes lists the registered grants, sorted: discovery's grant_types_supported.
func (s *Server) grantTypes() []string {
	out := make([]string, 0, len(s.grants))
	for g := range s.grants {
		out = append(out, string(g))
	}
	slices.Sort(out)
	return out
}

// tokenRequest is what the token endpoint hands a grant once the shared steps passed.
type tokenRequest struct {
	// HTTP is the request, for headers and the client address (httpx.ClientIP). Its body has
	// been read; use Form.
	HTTP *http.Request
	// Form is the body, parsed once: no parameter repeated, no empty value.
	Form httpx.Form
	// Client authenticated (or, public, identified itself) and may use GrantType.
	Client *clients.Client
	// GrantType is the grant_type parameter, a registered grant.
	GrantType latchkeyv1.GrantType
	// Scopes is the scope parameter, parsed (RFC 6749 §3.3 grammar, sorted, duplicates removed)
	// and already a subset of the client's spec.scopes. ScopeSent is false when the request
	// had no scope parameter; each grant decides what that means (RFC 6749 §3.3: a default or
	// an error). A grant bound to earlier consent (a code, a refresh token) must still narrow
	// Scopes to what was granted.
	Scopes    []string
	ScopeSent bool
	// admission is the request's pending client rate-limit decision (throttle.go); a grant
	// that records a token outside any family passes it to recordAdmitted.
	admission *admission
	// Now is the server clock at the start of the request.
	Now time.Time
}

// tokenResponse is a successful token response (RFC 6749 §5.1). The endpoint sends it as JSON
// with Cache-Control: no-store.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	// TokenType is "Bearer" (RFC 6750).
	TokenType string `json:"token_type"`
	// ExpiresIn is the access token's lifetime in seconds.
	ExpiresIn int64 `json:"expires_in"`
	// RefreshToken is never set by client_credentials (RFC 6749 §4.4.3).
	RefreshToken string `json:"refresh_token,omitempty"`
	// Scope is the granted scope (RFC 6749 §5.1), canonical form.
	Scope string `json:"scope,omitempty"`
	// IDToken is for the OpenID Connect code flow.
	IDToken string `json:"id_token,omitempty"`

	// subject and family name the grant in the audit record (never sent).
	subject, family string
}
