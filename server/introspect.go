package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// paramToken is the token of an introspection (RFC 7662 §2.1) or revocation (RFC 7009 §2.1)
// request.
const paramToken = "token"

// introspection is the RFC 7662 §2.2 response. An inactive token gets {"active":false} and
// nothing else: every other member is omitted.
type introspection struct {
	Active    bool                 `json:"active"`
	Scope     string               `json:"scope,omitempty"`
	ClientID  string               `json:"client_id,omitempty"`
	Subject   string               `json:"sub,omitempty"`
	Audience  accesstoken.Audience `json:"aud,omitempty"`
	Issuer    string               `json:"iss,omitempty"`
	Expiry    int64                `json:"exp,omitempty"`
	IssuedAt  int64                `json:"iat,omitempty"`
	TokenType string               `json:"token_type,omitempty"`
	ID        string               `json:"jti,omitempty"`
}

// handleIntrospect is the introspection endpoint (RFC 7662).
//
// The caller must authenticate as a confidential client (RFC 7662 §2.1: "to prevent token
// scanning attacks"); public clients and missing credentials are 401 invalid_client. By
// decision D7 a caller may introspect the tokens issued to itself, and access tokens whose aud
// intersects its own spec.audiences (a resource server registers as a confidential client
// naming the APIs it serves). Everything else, and every invalid, expired, revoked, unknown or
// malformed token, is exactly {"active":false} (RFC 7662 §2.2). A store outage is 503, never
// active:false, so a resource server cannot mistake an outage for a revocation or the reverse
// (SECURITY-CASES 68).
//
// token_type_hint is accepted and ignored: the token's form (a JWS has two dots, a refresh
// token one) says where to look, so a wrong hint still finds the token.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	caller, token, ok := s.tokenOfCaller(w, r, clients.Policy{AllowPublic: false}, limitIntrospect)
	if !ok {
		return
	}
	resp, err := s.introspect(ctx, caller, token)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	infoFrom(ctx).outcome = "ok"
	httpx.WriteJSONAppend(w, http.StatusOK, true, resp.appendJSON)
}

// appendJSON is json.Marshal(in) and a newline, written by hand for this fixed shape (the
// tests compare the two encoders): every resource server that introspects asks for it.
func (in *introspection) appendJSON(b []byte) []byte {
	b = append(b, `{"active":`...)
	b = strconv.AppendBool(b, in.Active)
	b = appendStringMember(b, "scope", in.Scope)
	b = appendStringMember(b, "client_id", in.ClientID)
	b = appendStringMember(b, "sub", in.Subject)
	switch len(in.Audience) {
	case 0: // omitempty
	case 1:
		b = appendStringMember(b, "aud", in.Audience[0])
	default:
		b = append(b, `,"aud":`...)
		b = httpx.AppendJSONStrings(b, in.Audience)
	}
	b = appendStringMember(b, "iss", in.Issuer)
	b = appendIntMember(b, "exp", in.Expiry)
	b = appendIntMember(b, "iat", in.IssuedAt)
	b = appendStringMember(b, "token_type", in.TokenType)
	b = appendStringMember(b, "jti", in.ID)
	return append(b, "}\n"...)
}

// appendStringMember appends ,"name":"v" unless v is empty (omitempty).
func appendStringMember(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return httpx.AppendJSONString(b, v)
}

// appendIntMember appends ,"name":v unless v is 0 (omitempty).
func appendIntMember(b []byte, name string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

var inactive = introspection{Active: false}

func (s *Server) introspect(ctx context.Context, caller *clients.Client, token string) (introspection, error) {
	switch strings.Count(token, ".") {
	case 2:
		return s.introspectAccessToken(ctx, caller, token)
	case 1:
		return s.introspectRefreshToken(ctx, caller, token)
	default:
		return inactive, nil
	}
}

func (s *Server) introspectAccessToken(ctx context.Context, caller *clients.Client, token string) (introspection, error) {
	jwks, err := s.keys.JWKS(ctx)
	if err != nil {
		return inactive, oautherr.Unavailable("the key set is unavailable, retry later", err)
	}
	now := s.now()
	claims, err := accesstoken.Verify(token, jwks.Keys, s.issuer, now)
	if err != nil || claims.Expiry <= now.Unix() {
		return inactive, nil
	}
	if claims.ClientID != caller.ID && !intersects(claims.Audience, caller.Spec.Audiences) {
		return inactive, nil
	}
	active, err := s.store.AccessTokenActive(ctx, claims.ID, claims.Family(), now)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrRevoked) {
			return inactive, nil
		}
		return inactive, fmt.Errorf("introspect access token: %w", err)
	}
	if !active {
		return inactive, nil
	}
	return introspection{
		Active:    true,
		Scope:     claims.Scope,
		ClientID:  claims.ClientID,
		Subject:   claims.Subject,
		Audience:  claims.Audience,
		Issuer:    claims.Issuer,
		Expiry:    claims.Expiry,
		IssuedAt:  claims.IssuedAt,
		TokenType: "Bearer",
		ID:        claims.ID,
	}, nil
}

// introspectRefreshToken answers for a refresh token of the caller's own: a refresh token is
// a credential of the client it was issued to, so another client learns nothing about it
// (SECURITY-CASES 66).
func (s *Server) introspectRefreshToken(ctx context.Context, caller *clients.Client, token string) (introspection, error) {
	family, hash, ok := tokenid.ParseRefreshToken(token)
	if !ok {
		return inactive, nil
	}
	now := s.now()
	fam, err := s.store.LookupRefresh(ctx, family, hash, now)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrRevoked) {
			return inactive, nil
		}
		return inactive, fmt.Errorf("introspect refresh token: %w", err)
	}
	if fam.Revoked || fam.ClientID != caller.ID || !now.Before(fam.ExpiresAt) {
		return inactive, nil
	}
	return introspection{
		Active:    true,
		Scope:     fam.Scope,
		ClientID:  fam.ClientID,
		Subject:   fam.Subject,
		Issuer:    s.issuer,
		Expiry:    fam.ExpiresAt.Unix(),
		TokenType: "refresh_token",
	}, nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
