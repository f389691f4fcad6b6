package server

import (
	"context"
	"fmt"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/scope"
)

func init() { registerGrant(latchkeyv1.GrantClientCredentials, newClientCredentialsGrant) }

// newClientCredentialsGrant is the client credentials grant (RFC 6749 §4.4, OAuth 2.1 §4.2): a
// confidential client obtains a token for itself.
//
//   - Only confidential clients that authenticated (OAuth 2.1 §4.2); a public client is
//     unauthorized_client, even if its registration lists the grant.
//   - scope: the requested scope (already checked against spec.scopes); without a scope
//     parameter, all of spec.scopes, the client's registration being the pre-defined default
//     RFC 6749 §3.3 allows.
//   - sub is "client:<client_id>" and the token has no roles, so it can never pass for a user's
//     token (SECURITY-CASES 29).
//   - aud is spec.audiences, or the client_id when there are none.
//   - No refresh token (RFC 6749 §4.4.3).
//   - The token is recorded in the store before it is sent; if the store is down the client
//     gets 503 and the token is dropped.
func newClientCredentialsGrant(s *Server) (grantHandler, error) {
	return grantFunc(func(ctx context.Context, req *tokenRequest) (*tokenResponse, error) {
		c := req.Client
		if c.Spec.Type != latchkeyv1.ClientTypeConfidential || c.Method == latchkeyv1.AuthMethodNone {
			return nil, oautherr.UnauthorizedClient("client_credentials needs a confidential client")
		}
		scopes := req.Scopes
		if !req.ScopeSent {
			scopes = scope.Normalize(c.Spec.Scopes)
		}
		lifetime := accessTokenLifetime(c.OAuthClient)
		tok, err := s.mintAccessToken(ctx, accesstoken.Params{
			ClientID: c.ID,
			Subject:  accesstoken.ClientSubject(c.ID),
			Audience: accesstoken.DefaultAudience(c.Spec.Audiences, c.ID),
			Scope:    scope.Join(scopes),
			Lifetime: lifetime,
		})
		if err != nil {
			return nil, err
		}
		if err := s.recordAdmitted(ctx, req.admission, tok); err != nil {
			return nil, fmt.Errorf("client credentials: %w", err)
		}
		return &tokenResponse{
			AccessToken: tok.Raw,
			TokenType:   "Bearer",
			ExpiresIn:   int64(lifetime.Seconds()),
			Scope:       tok.Claims.Scope,
			subject:     tok.Claims.Subject,
		}, nil
	}), nil
}
