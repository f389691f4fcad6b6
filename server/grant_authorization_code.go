package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/keyring"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/pkce"
	"github.com/latchkey-dev/latchkey/server/redirect"
	"github.com/latchkey-dev/latchkey/server/scope"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
	"github.com/latchkey-dev/latchkey/server/users"
)

func init() { registerGrant(latchkeyv1.GrantAuthorizationCode, newAuthorizationCodeGrant) }

// Token request parameters of the code grant (RFC 6749 §4.1.3, RFC 7636 §4.5).
const (
	paramCode         = "code"
	paramCodeVerifier = "code_verifier"
)

// newAuthorizationCodeGrant is the authorization code grant (RFC 6749 §4.1.3, OAuth 2.1
// §4.1.3): a client exchanges the code of a user's authorization for tokens.
//
// The code is read without changing it, and bound before anything is spent: it must be the
// client's (a code of client A redeemed by client B, even with B's valid credentials, is
// invalid_grant), the redirect_uri must be the one of the authorization request when that
// request sent one (RFC 6749 §4.1.3; when it did not, a redirect_uri that is sent must be the
// client's one registered URI), and the code_verifier must hash to the challenge (pkce.Check,
// constant time). A failure of any of these burns nothing and revokes nothing (decision D2,
// OAuth 2.1 §7.5.2), so a wrong guess cannot be used to destroy someone else's grant.
//
// Then one atomic store step redeems the code, creates the family and records the access
// token (store.RedeemCode). Exactly one redemption wins; every later one that would have
// succeeded (right client, redirect and verifier) revokes what the first issued, access and
// refresh tokens included, and is invalid_grant (OAuth 2.1 §4.1.3; SECURITY-CASES 22, 23).
// The store keeps a tombstone of the used code for 10 minutes so a late replay is recognised.
// A replay that fails the binding checks revokes nothing (SECURITY-CASES 24).
//
// A refresh token is issued whenever the client's spec.grantTypes has refresh_token: the
// registration is the opt-in, so offline_access is not needed (it is accepted like any scope
// the client registers). The family lives refreshTokenPolicy.absoluteLifetime; without a
// refresh token it lives as long as the access token, only so a code replay can revoke it.
//
// The grant is re-checked at the exchange: the client must still allow every granted scope,
// and the user must still be in the users Secret (their roles are read afresh). The scope
// parameter of the request, if any, plays no part (RFC 6749 §4.1.3 defines none).
func newAuthorizationCodeGrant(s *Server) (grantHandler, error) {
	return grantFunc(func(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
		c := req.Client
		raw := req.Form.Get(paramCode)
		if raw == "" {
			return nil, oautherr.InvalidRequest("code is required")
		}
		family, hash, ok := tokenid.ParseCode(raw)
		if !ok {
			return nil, oautherr.InvalidGrant("the authorization code is invalid or expired")
		}
		code, err := s.store.GetCode(ctx, family, hash, req.Now)
		switch {
		case err == nil:
		case errors.Is(err, store.ErrCodeReused):
			// D2: only a replay that would have succeeded revokes the first redemption's
			// tokens; a wrong client, redirect or verifier gets its own error and changes
			// nothing.
			if oe := codeBinding(c, req.Form, &code); oe != nil {
				return nil, oe
			}
			_, err := s.store.RedeemCode(ctx, family, hash, store.FamilyParams{ExpiresAt: req.Now}, req.Now)
			if err != nil && !errors.Is(err, store.ErrCodeReused) && !errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("revoke on code reuse: %w", err)
			}
			s.auditCodeReuse(ctx, c.ID, code.Subject, family)
			return nil, oautherr.InvalidGrant("the authorization code was already used")
		case errors.Is(err, store.ErrNotFound):
			return nil, oautherr.InvalidGrant("the authorization code is invalid or expired")
		default:
			return nil, fmt.Errorf("authorization code: %w", err)
		}
		if oe := codeBinding(c, req.Form, &code); oe != nil {
			return nil, oe
		}
		scopes := strings.Fields(code.Scope)
		user, oe := s.recheckGrant(ctx, c, scopes, code.Grant)
		if oe != nil {
			return nil, oe
		}
		signer, err := s.signer(ctx)
		if err != nil {
			return nil, err
		}
		lifetime := accessTokenLifetime(c.OAuthClient)
		tok, err := s.minterFor(signer).Mint(ctx, accesstoken.Params{
			ClientID: c.ID,
			Subject:  code.Subject,
			Audience: accesstoken.DefaultAudience(c.Spec.Audiences, c.ID),
			Scope:    code.Scope,
			Roles:    user.Roles,
			Family:   family,
			Lifetime: lifetime,
			AuthTime: code.AuthTime,
		})
		if err != nil {
			return nil, fmt.Errorf("authorization code: %w", err)
		}
		fp := store.FamilyParams{ExpiresAt: req.Now.Add(lifetime), AccessToken: tok.Record}
		var refresh string
		if c.AllowsGrant(latchkeyv1.GrantRefreshToken) {
			refresh, fp.RefreshHash = tokenid.NewRefreshToken(family)
			fp.ExpiresAt = req.Now.Add(c.AbsoluteRefreshLifetime())
			fp.IdleLifetime = c.IdleRefreshLifetime()
		}
		if _, err := s.store.RedeemCode(ctx, family, hash, fp, req.Now); err != nil {
			switch {
			case errors.Is(err, store.ErrCodeReused):
				// A concurrent redemption won; this one, equally valid, is a replay and has
				// revoked the winner's family (OAuth 2.1 §4.1.3).
				s.auditCodeReuse(ctx, c.ID, code.Subject, family)
				return nil, oautherr.InvalidGrant("the authorization code was already used")
			case errors.Is(err, store.ErrNotFound):
				return nil, oautherr.InvalidGrant("the authorization code is invalid or expired")
			default:
				return nil, fmt.Errorf("redeem authorization code: %w", err)
			}
		}
		resp := &tokenResponse{
			AccessToken:  tok.Raw,
			TokenType:    "Bearer",
			ExpiresIn:    int64(lifetime.Seconds()),
			RefreshToken: refresh,
			Scope:        code.Scope,
			subject:      code.Subject,
			family:       family,
		}
		if slices.Contains(scopes, scopeOpenID) {
			resp.IDToken, err = s.mintIDToken(signer, idTokenParams{
				ClientID: c.ID, User: user, Scopes: scopes, AuthTime: code.AuthTime, Nonce: code.Nonce, AccessToken: tok,
			})
			if err != nil {
				return nil, err
			}
		}
		return resp, nil
	}), nil
}

// codeBinding checks that the token request may redeem code: same client, same redirect URI,
// and a code_verifier that proves possession of the challenge.
func codeBinding(c *clients.Client, form httpx.Form, code *store.Code) *oautherr.Error {
	if code.ClientID != c.ID {
		return oautherr.InvalidGrant("the authorization code was issued to another client")
	}
	sent := form.Get(paramRedirectURI)
	switch {
	case code.RedirectURI != "":
		// The authorization request named it: the token request must repeat it exactly
		// (RFC 6749 §4.1.3, kept by OAuth 2.1 §10.2 for clients that send it).
		if sent != code.RedirectURI {
			return oautherr.InvalidGrant("redirect_uri does not match the authorization request")
		}
	case sent != "":
		// The authorization request used the client's one registered URI; a token request
		// that names one must name that.
		if want, err := redirect.Resolve(c.Spec.RedirectURIs, ""); err != nil || sent != want {
			return oautherr.InvalidGrant("redirect_uri does not match the authorization request")
		}
	}
	if err := pkce.Check(form.Get(paramCodeVerifier), code.CodeChallenge); err != nil {
		if errors.Is(err, pkce.ErrNoChallengeRecorded) {
			// OAuth 2.1 §3.2.4: a verifier for a code without a challenge (a PKCE downgrade,
			// RFC 9700 §4.8.2).
			return oautherr.InvalidRequest(err.Error())
		}
		return oautherr.InvalidGrant(err.Error())
	}
	return nil
}

// recheckGrant checks, at every code exchange and refresh, that the grant still holds: the
// client (already found Ready and allowed the grant by the token endpoint) still allows every
// granted scope and still serves every audience the grant's tokens were issued for, and the
// user is still in the users Secret (SECURITY-CASES 40). It returns the
// user as the Secret has them now. A grant that no longer holds is invalid_grant; a users
// Secret that cannot be read is temporarily_unavailable.
func (s *Server) recheckGrant(ctx context.Context, c *clients.Client, scopes []string, g store.Grant) (users.User, *oautherr.Error) {
	subject := g.Subject
	if _, ok := scope.Subset(scopes, c.Spec.Scopes); !ok {
		return users.User{}, oautherr.InvalidGrant("the client may no longer request the granted scope")
	}
	if !audienceHolds(g.Audience, accesstoken.DefaultAudience(c.Spec.Audiences, c.ID)) {
		return users.User{}, oautherr.InvalidGrant("the client no longer serves the audience of the grant")
	}
	u, found, err := s.flow.users.Lookup(ctx, subject)
	if err != nil {
		return users.User{}, oautherr.Unavailable("the users directory is unavailable", fmt.Errorf("%w: %w", errDirectory, err))
	}
	if !found {
		return users.User{}, oautherr.InvalidGrant("the user of the grant no longer exists")
	}
	return u, nil
}

// auditCodeReuse records the redemption of a used code, which revoked the first redemption's
// family, in the audit stream. It names the client, the user and the family, never the code.
func (s *Server) auditCodeReuse(ctx context.Context, clientID, subject, family string) {
	s.emit(ctx, audit.CodeReuseDetected, clientID, subject, family)
}

// signer returns the key that signs now; none is 503 temporarily_unavailable.
func (s *Server) signer(ctx context.Context) (*keyring.Signer, error) {
	sg, err := s.keys.Signer(ctx)
	if err != nil {
		return nil, oautherr.Unavailable("no signing key is available, retry later", err)
	}
	return sg, nil
}

// minterFor is a Minter that signs with sg: one key lookup serves the access token and the ID
// token of a response.
func (s *Server) minterFor(sg *keyring.Signer) *accesstoken.Minter {
	return &accesstoken.Minter{Issuer: s.issuer, Keys: fixedSigner{sg}, Clock: s.clock}
}

type fixedSigner struct{ sg *keyring.Signer }

// Signer returns the fixed signer.
func (f fixedSigner) Signer(context.Context) (*keyring.Signer, error) { return f.sg, nil }

// audienceHolds reports whether every audience recorded in a grant (space-separated) is still
// among the client's current audiences. A grant recorded before audiences were kept ("") holds.
func audienceHolds(granted string, current []string) bool {
	for _, a := range strings.Fields(granted) {
		if !slices.Contains(current, a) {
			return false
		}
	}
	return true
}
