package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/internal/promreg"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/scope"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

func init() { registerGrant(latchkeyv1.GrantRefreshToken, newRefreshTokenGrant) }

// paramRefreshToken is the refresh token of a refresh request (RFC 6749 §6).
const paramRefreshToken = "refresh_token"

// Bounds of spec.refreshTokenPolicy (the OAuthClient CRD), applied to objects that never went
// through an API server (--dev manifests).
const (
	minIdleRefreshLifetime = time.Minute
	maxReuseInterval       = 5 * time.Minute
)

// refreshGrant is the refresh token grant.
type refreshGrant struct {
	s *Server
	// reuse counts refresh-token reuse detections by client (SECURITY-CASES 31).
	reuse *prometheus.CounterVec
}

// maxRefreshGenerations ends a family after this many rotations (invalid_grant; the user logs
// in again). The family keeps the hash of every token it replaced until it expires, so reuse of
// any old token is detected; the cap bounds that record at about 2 MB. Honest use is far below
// it: a refresh every minute for the default 168 h absoluteLifetime is 10 080 rotations.
const maxRefreshGenerations = 20000

// newRefreshTokenGrant is the refresh token grant (RFC 6749 §6, OAuth 2.1 §4.3) with rotation
// and reuse detection (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
//
// One store step (store.RotateRefresh, one Lua script in Redis) checks the token and rotates
// it, and records the new access token, following decision D1: every grant is a family with
// exactly one live refresh token; presenting it rotates it; presenting a used one revokes the
// whole family, access tokens included; within the client's refreshTokenPolicy.reuseInterval
// (default 0) the token rotated just before may be presented again, which gives it a new
// successor and revokes the one issued before, so the family never forks. FAPI 2.0 clients
// need a non-zero interval: with 0, a client that lost the response to a rotation and retries
// with the previous token revokes its own grant, and its user must sign in again
// (SECURITY-CASES 34). Generations are counted by the store, never inferred from time. Each
// token expires after idleLifetime unused, and the family absoluteLifetime after the grant,
// whatever happens (invalid_grant either way).
//
// A reuse is an audit record (event refresh_token_reuse_detected, with the client, the family and
// the request id; never a token) and is counted in
// latchkey_server_refresh_token_reuse_total{client}.
//
// Binding and re-checks:
//   - A refresh token is bound to its client: another client's token is invalid_grant, and
//     nothing is revoked (OAuth 2.1 §7.5.2, SECURITY-CASES 38); a confidential client must
//     authenticate (the token endpoint answers invalid_client otherwise).
//   - scope may only narrow: a scope beyond the grant is invalid_scope; a narrower one gives a
//     narrower access token, and the new refresh token keeps the grant's scope (OAuth 2.1
//     §4.3.1).
//   - Every refresh re-checks the grant (recheckGrant): a client that is gone, not Ready or no
//     longer allowed refresh_token is stopped by the token endpoint before the store is
//     touched; a client that no longer allows a granted scope, or a user who left the users
//     Secret, makes the refresh invalid_grant and revokes the family, since the grant can never
//     be used again (fosite #332, SECURITY-CASES 40). The same holds for an audience the grant
//     was issued for that the client no longer names in spec.audiences. The access token's aud
//     is the client's spec.audiences now, so an added audience reaches existing grants. A users Secret that
//     cannot be read is 503 and revokes nothing; it is checked before the rotation so that an
//     outage does not consume the token.
//   - An id_token is issued with the new access token when its scope has openid (OpenID
//     Connect Core §12.2).
func newRefreshTokenGrant(s *Server) (grantHandler, error) {
	reuse := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "latchkey", Subsystem: "server", Name: "refresh_token_reuse_total",
		Help: "Refresh tokens presented again after rotation, each of which revoked its family, by client.",
	}, []string{"client"})
	if s.opts.Registerer != nil {
		var err error
		if reuse, err = promreg.Register(s.opts.Registerer, reuse); err != nil {
			return nil, err
		}
	}
	g := &refreshGrant{s: s, reuse: reuse}
	return grantFunc(g.handle), nil
}

func (g *refreshGrant) handle(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
	s, c, now := g.s, req.Client, req.Now
	raw := req.Form.Get(paramRefreshToken)
	if raw == "" {
		return nil, oautherr.InvalidRequest("refresh_token is required")
	}
	family, hash, ok := tokenid.ParseRefreshToken(raw)
	if !ok {
		return nil, invalidRefresh()
	}
	// What could fail after the rotation is checked before it, so that a transient failure
	// does not consume the token: the users Secret and the signing key.
	if err := s.flow.users.Check(ctx); err != nil {
		return nil, oautherr.Unavailable("the users directory is unavailable", fmt.Errorf("%w: %w", errDirectory, err))
	}
	signer, err := s.signer(ctx)
	if err != nil {
		return nil, err
	}
	if req.ScopeSent {
		// A scope beyond the grant must not cost the client its refresh token, so it is
		// checked against the family before rotating. (A token in its reuse interval is not
		// found here; the check after the rotation covers it.)
		fam, err := s.store.LookupRefresh(ctx, family, hash, now)
		switch {
		case err == nil:
			if fam.ClientID != c.ID {
				return nil, invalidRefresh()
			}
			if _, ok := scope.Subset(req.Scopes, strings.Fields(fam.Scope)); !ok {
				return nil, oautherr.InvalidScope("the requested scope exceeds the grant")
			}
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRevoked):
		default:
			return nil, fmt.Errorf("refresh token: %w", err)
		}
	}

	lifetime := accessTokenLifetime(c.OAuthClient)
	issuedAt := now.Truncate(time.Second)
	jti := tokenid.NewJTI(family)
	newToken, newHash := tokenid.NewRefreshToken(family)
	fam, err := s.store.RotateRefresh(ctx, store.RotateParams{
		Family:         family,
		PresentedHash:  hash,
		NewHash:        newHash,
		ClientID:       c.ID,
		IdleLifetime:   max(c.IdleRefreshLifetime(), minIdleRefreshLifetime),
		ReuseInterval:  min(max(c.RefreshReuseInterval(), 0), maxReuseInterval),
		MaxGenerations: maxRefreshGenerations,
		AccessToken: store.AccessTokenRecord{
			JTI: jti, ClientID: c.ID, Family: family, ExpiresAt: issuedAt.Add(lifetime),
		},
	}, now)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrRefreshReused):
		g.reuse.WithLabelValues(c.ID).Inc()
		s.emit(ctx, audit.RefreshReuseDetected, c.ID, "", family)
		return nil, invalidRefresh()
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRevoked), errors.Is(err, store.ErrClientMismatch):
		return nil, invalidRefresh().WithCause(err)
	default:
		return nil, fmt.Errorf("rotate refresh token: %w", err)
	}

	granted := strings.Fields(fam.Scope)
	user, oe := s.recheckGrant(ctx, c, granted, fam.Grant)
	if oe != nil {
		if oe.Code == oautherr.CodeInvalidGrant {
			if err := s.store.RevokeFamily(ctx, family, now); err != nil {
				return nil, fmt.Errorf("revoke family of a grant that no longer holds: %w", err)
			}
		}
		return nil, oe
	}
	scopes := granted
	if req.ScopeSent {
		if _, ok := scope.Subset(req.Scopes, granted); !ok {
			return nil, oautherr.InvalidScope("the requested scope exceeds the grant")
		}
		scopes = req.Scopes
	}
	tok, err := s.minterFor(signer).Mint(ctx, accesstoken.Params{
		ClientID: c.ID,
		Subject:  fam.Subject,
		Audience: accesstoken.DefaultAudience(c.Spec.Audiences, c.ID),
		Scope:    scope.Join(scopes),
		Roles:    user.Roles,
		Family:   family,
		Lifetime: lifetime,
		AuthTime: fam.AuthTime,
		JTI:      jti,
		IssuedAt: issuedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	resp := &tokenResponse{
		AccessToken:  tok.Raw,
		TokenType:    "Bearer",
		ExpiresIn:    int64(lifetime.Seconds()),
		RefreshToken: newToken,
		Scope:        tok.Claims.Scope,
		subject:      fam.Subject,
		family:       family,
	}
	if slices.Contains(scopes, scopeOpenID) {
		resp.IDToken, err = s.mintIDToken(signer, idTokenParams{
			ClientID: c.ID, User: user, Scopes: scopes, AuthTime: fam.AuthTime, AccessToken: tok,
		})
		if err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// invalidRefresh is the one answer for a refresh token that is unknown, expired, revoked,
// reused or another client's: they are not told apart.
func invalidRefresh() *oautherr.Error {
	return oautherr.InvalidGrant("the refresh token is invalid, expired or revoked")
}
