package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/scope"
)

// Token endpoint parameters (RFC 6749 §4).
const (
	paramGrantType = "grant_type"
	paramScope     = "scope"
)

// grants the OAuth 2.1 draft removed or that Latchkey does not implement get
// unsupported_grant_type like any unknown value (SECURITY-CASES 28); their names are not used as
// metric labels.
const unsupportedGrantLabel = "unsupported"

// handleToken is the token endpoint (RFC 6749 §3.2, OAuth 2.1 §3.2). It owns the steps every
// grant shares, in this order, and only it writes the response:
//
//  1. read the form once (POST, form-encoded, no query, bounded, no repeated parameter);
//  2. authenticate the client (exactly one method, the registered one), and admit it: a
//     client over its spec.rateLimit, or a client_id locked by failed authentications, is 429
//     slow_down (package ratelimit);
//  3. grant_type: missing → invalid_request; not registered → unsupported_grant_type; not in
//     the client's spec.grantTypes → unauthorized_client;
//  4. scope: outside the RFC 6749 §3.3 grammar or beyond spec.scopes → invalid_scope;
//  5. dispatch to the grant, and write its response or error.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	info := infoFrom(ctx)
	form, err := httpx.ReadForm(w, r)
	if err != nil {
		s.writeError(w, r, formError(err))
		return
	}
	c, ok := s.identifyClient(w, r, form, clients.Policy{AllowPublic: true})
	if !ok {
		return
	}
	// Admission (package ratelimit): nothing is answered before it is in, so a client_id locked
	// by failed authentications learns nothing, not even whether the request is well-formed.
	gt := latchkeyv1.GrantType(form.Get(paramGrantType))
	adm := s.admit(ctx, c, limitToken, gt == latchkeyv1.GrantClientCredentials)
	fail := func(err error) {
		if s.admitted(w, r, adm) {
			s.writeError(w, r, err)
		}
	}
	info.clientID = c.ID
	s.corsForClient(w, r, c)

	if gt == "" {
		fail(oautherr.InvalidRequest("grant_type is required"))
		return
	}
	grant, ok := s.grants[gt]
	if !ok {
		info.grant = unsupportedGrantLabel
		fail(oautherr.UnsupportedGrantType("grant_type is not supported"))
		return
	}
	info.grant = string(gt)
	if !c.AllowsGrant(gt) {
		fail(oautherr.UnauthorizedClient("the client may not use this grant_type"))
		return
	}
	req := &tokenRequest{HTTP: r, Form: form, Client: c, GrantType: gt, Now: s.now()}
	if form.Has(paramScope) {
		scopes, err := scope.Parse(form.Get(paramScope))
		if err != nil {
			fail(oautherr.InvalidScope("scope is malformed"))
			return
		}
		if _, ok := scope.Subset(scopes, c.Spec.Scopes); !ok {
			fail(oautherr.InvalidScope("the requested scope exceeds what the client may request"))
			return
		}
		req.Scopes, req.ScopeSent = scopes, true
	}
	// A code or refresh grant changes state (redeems, rotates), so it is admitted first. The
	// client_credentials grant only records a token, and one recorded but never sent (when
	// admission refuses) is harmless, so its admission is counted in the round trip that
	// records the token (recordAdmitted).
	if gt != latchkeyv1.GrantClientCredentials && !s.admitted(w, r, adm) {
		return
	}
	req.admission = adm
	resp, err := grant.handle(ctx, req)
	if !s.admitted(w, r, adm) {
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if resp.TokenType == "" {
		resp.TokenType = "Bearer"
	}
	s.metrics.tokenIssued(string(gt))
	s.emit(ctx, audit.TokenIssued, c.ID, resp.subject, resp.family, slog.String("grant", string(gt)))
	if gt == latchkeyv1.GrantRefreshToken {
		s.emit(ctx, audit.RefreshRotated, c.ID, resp.subject, resp.family)
	}
	info.outcome = "ok"
	httpx.WriteJSONAppend(w, http.StatusOK, true, resp.appendJSON)
}

// appendJSON is json.Marshal(r) and a newline, written by hand: the response of every token
// request has this fixed shape (the tests compare the two encoders).
func (r *tokenResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"access_token":`...)
	b = httpx.AppendJSONString(b, r.AccessToken)
	b = append(b, `,"token_type":`...)
	b = httpx.AppendJSONString(b, r.TokenType)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, r.ExpiresIn, 10)
	if r.RefreshToken != "" {
		b = append(b, `,"refresh_token":`...)
		b = httpx.AppendJSONString(b, r.RefreshToken)
	}
	if r.Scope != "" {
		b = append(b, `,"scope":`...)
		b = httpx.AppendJSONString(b, r.Scope)
	}
	if r.IDToken != "" {
		b = append(b, `,"id_token":`...)
		b = httpx.AppendJSONString(b, r.IDToken)
	}
	return append(b, "}\n"...)
}

// formError turns an httpx form error into invalid_request with a description that names at
// most the parameter, never a value.
func formError(err error) *oautherr.Error {
	var fe *httpx.FormError
	if errors.As(err, &fe) {
		desc := fe.Err.Error()
		if errors.Is(fe.Err, httpx.ErrMalformed) {
			desc = httpx.ErrMalformed.Error()
		}
		if fe.Param != "" {
			desc += ": " + fe.Param
		}
		return oautherr.InvalidRequest(desc).WithCause(err)
	}
	return oautherr.InvalidRequest("malformed request").WithCause(err)
}

// mintAccessToken signs an access token. It does not record it: the caller records
// tok.Record before sending (recordAccessToken, or inside a family operation of the store).
// No signing key is 503 temporarily_unavailable.
func (s *Server) mintAccessToken(ctx context.Context, p accesstoken.Params) (*accesstoken.Token, error) {
	tok, err := s.minter.Mint(ctx, p)
	if err != nil {
		// keyring.ErrNoSigningKey, or the cache could not be read: both are transient for the
		// client, and the cause is logged.
		return nil, oautherr.Unavailable("no signing key is available, retry later", err)
	}
	return tok, nil
}

// recordAccessToken records a token outside any family. A store failure is 503: the token is
// dropped, never sent unrecorded.
func (s *Server) recordAccessToken(ctx context.Context, tok *accesstoken.Token) error {
	if err := s.store.RecordAccessToken(ctx, tok.Record, s.now()); err != nil {
		return fmt.Errorf("record access token: %w", err)
	}
	return nil
}

// accessTokenLifetime is the client's lifetime, clamped to the bounds the CRD enforces, for
// objects that never went through an API server (--dev manifests).
func accessTokenLifetime(c *latchkeyv1.OAuthClient) time.Duration {
	return min(max(c.AccessTokenLifetime(), minAccessTokenLifetime), maxAccessTokenLifetime)
}

// Bounds of spec.accessTokenLifetime (the OAuthClient CRD).
const (
	minAccessTokenLifetime = time.Minute
	maxAccessTokenLifetime = time.Hour
)
