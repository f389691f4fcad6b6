package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// handleRevoke is the revocation endpoint (RFC 7009).
//
//   - The caller authenticates like at the token endpoint; a public client identifies itself
//     with client_id (RFC 7009 §2.1).
//   - token_type_hint is optional and only a hint: the token's form decides, so a wrong or
//     unknown hint still finds the token (RFC 7009 §2.1).
//   - An access token is revoked by its jti: the store keeps it revoked until its exp, so
//     introspection answers active:false. Resource servers that only check the signature still
//     accept it until exp; the short access-token lifetime (15 min by default) bounds that
//     (SECURITY-CASES 69, OAuth 2.1 §7.1.3).
//   - A refresh token revokes its whole family, access tokens included (RFC 7009 §2.1).
//   - Another client's token is 400 unauthorized_client and stays valid (fosite's choice,
//     SECURITY-CASES 67); an unknown, invalid, expired or already revoked token is 200
//     (RFC 7009 §2.2); a store failure is 503, never 200 (SECURITY-CASES 68, CVE-2020-15223).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	caller, token, ok := s.tokenOfCaller(w, r, clients.Policy{AllowPublic: true}, limitRevoke)
	if !ok {
		return
	}
	if err := s.revoke(ctx, caller, token); err != nil {
		s.writeError(w, r, err)
		return
	}
	infoFrom(ctx).outcome = "ok"
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revoke(ctx context.Context, caller *clients.Client, token string) error {
	switch strings.Count(token, ".") {
	case 2:
		return s.revokeAccessToken(ctx, caller, token)
	case 1:
		return s.revokeRefreshToken(ctx, caller, token)
	default:
		return nil
	}
}

func (s *Server) revokeAccessToken(ctx context.Context, caller *clients.Client, token string) error {
	jwks, err := s.keys.JWKS(ctx)
	if err != nil {
		return oautherr.Unavailable("the key set is unavailable, retry later", err)
	}
	now := s.now()
	claims, err := accesstoken.Verify(token, jwks.Keys, s.issuer, now)
	if err != nil {
		return nil // not a token of ours: nothing to revoke
	}
	if claims.ClientID != caller.ID {
		return oautherr.UnauthorizedClient("the token was issued to another client")
	}
	if claims.Expiry <= now.Unix() {
		return nil
	}
	err = s.store.RevokeAccessToken(ctx, claims.ID, claims.Family(), caller.ID, now)
	return s.revokeOutcome(ctx, err, "access_token", caller.ID, claims.Subject, claims.Family())
}

func (s *Server) revokeRefreshToken(ctx context.Context, caller *clients.Client, token string) error {
	family, hash, ok := tokenid.ParseRefreshToken(token)
	if !ok {
		return nil
	}
	err := s.store.RevokeRefresh(ctx, family, hash, caller.ID, s.now())
	return s.revokeOutcome(ctx, err, "refresh_token", caller.ID, "", family)
}

// revokeOutcome answers the store's revocation of a token of tokenType: done (counted and
// audited), unknown or already revoked (also 200, RFC 7009 §2.2), another client's token (400
// unauthorized_client, SECURITY-CASES 67), or a store failure (503, never 200: case 68).
func (s *Server) revokeOutcome(ctx context.Context, err error, tokenType, clientID, subject, family string) error {
	switch {
	case err == nil:
		s.metrics.revoked.WithLabelValues(tokenType).Inc()
		s.emit(ctx, audit.TokenRevoked, clientID, subject, family, slog.String("token_type", tokenType))
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRevoked):
		return nil
	case errors.Is(err, store.ErrClientMismatch):
		return oautherr.UnauthorizedClient("the token was issued to another client")
	default:
		return fmt.Errorf("revoke %s: %w", tokenType, err)
	}
}
