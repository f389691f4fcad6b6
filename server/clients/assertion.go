package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/internal/jwsalg"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/store"
)

// Bounds on client assertions (RFC 7523 §3).
const (
	// MaxAssertionLifetime is how far in the future an assertion's exp may be. An assertion is
	// meant for one request; a long-lived one is a bearer credential, and its jti would have to
	// be remembered for as long.
	MaxAssertionLifetime = 5 * time.Minute
	// AssertionLeeway is the clock skew tolerated on exp, iat and nbf.
	AssertionLeeway = 30 * time.Second

	maxAssertionLength = 8 << 10
	maxJTILength       = 256
	maxCandidateKeys   = 8
)

// assertionClaims are decoded strictly: a claim of the wrong JSON type fails the decode.
type assertionClaims struct {
	Issuer    *string         `json:"iss"`
	Subject   *string         `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	Expiry    *float64        `json:"exp"`
	IssuedAt  *float64        `json:"iat"`
	NotBefore *float64        `json:"nbf"`
	ID        *string         `json:"jti"`
}

// byAssertion authenticates a private_key_jwt client (RFC 7523 §2.2, §3):
//
//   - client_assertion_type is exactly AssertionType, and client_assertion a compact JWS (the
//     JSON serializations are refused) signed with an asymmetric algorithm of jwsalg.Client;
//     none and HS* never verify (RFC 8725 §3.1);
//   - the key comes from the client's spec.jwksURI only, never from jku, jwk, x5u or x5c
//     headers, by kid (or any key of the set when there is no kid) and must verify exactly the
//     header alg;
//   - iss and sub are both the client_id (and equal to a client_id form parameter, if sent);
//   - aud is the issuer identifier as a JSON string (decision D4, draft-ietf-oauth-rfc7523bis):
//     the token endpoint URL or an array, even ["<issuer>"], is refused. A legacy switch that
//     also accepts the token endpoint URL (RFC 7523 as first published) could be added here;
//     there is none, because such assertions can be replayed at another server that shares
//     the token endpoint's audience;
//   - exp is required and at most MaxAssertionLifetime ahead; iat and nbf, when present, are
//     not in the future (AssertionLeeway tolerated);
//   - jti is required and used once: store.UseAssertion remembers it until exp, so the memory it
//     needs is bounded (SECURITY-CASES 51).
func (a *Authenticator) byAssertion(ctx context.Context, form httpx.Form) (*Client, error) {
	if form.Get(ParamClientAssertionType) != AssertionType {
		return nil, invalidClient(errors.New("client_assertion_type is not jwt-bearer"))
	}
	raw := form.Get(ParamClientAssertion)
	if raw == "" {
		return nil, invalidClient(errors.New("no client_assertion"))
	}
	if len(raw) > maxAssertionLength || strings.Count(raw, ".") != 2 {
		return nil, invalidClient(errors.New("client_assertion is not a compact JWS"))
	}
	jws, err := jose.ParseSignedCompact(raw, jwsalg.Client)
	if err != nil {
		return nil, invalidClient(fmt.Errorf("client_assertion: %w", err))
	}
	if len(jws.Signatures) != 1 {
		return nil, invalidClient(errors.New("client_assertion: want one signature"))
	}
	header := jws.Signatures[0].Protected

	// The client is named by sub; nothing unverified is trusted beyond choosing whose keys to
	// verify with, and iss/sub are checked again after verification.
	var unverified struct {
		Subject string `json:"sub"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil || unverified.Subject == "" {
		return nil, invalidClient(errors.New("client_assertion: no sub"))
	}
	id := unverified.Subject
	if bodyID := form.Get(ParamClientID); bodyID != "" && bodyID != id {
		return nil, invalidClient(errors.New("client_assertion: sub is not client_id"))
	}
	c, err := a.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Spec.Type != latchkeyv1.ClientTypeConfidential || c.EffectiveAuthMethod() != latchkeyv1.AuthMethodPrivateKeyJWT || c.Spec.JWKSURI == "" {
		return nil, invalidClient(fmt.Errorf("client %q is registered for %s, not private_key_jwt", id, c.EffectiveAuthMethod()))
	}
	keys, err := a.Keys.Keys(ctx, c.Spec.JWKSURI, header.KeyID)
	if err != nil {
		return nil, invalidClient(fmt.Errorf("client %q: %w", id, err))
	}
	var payload []byte
	tried := 0
	for _, k := range keys {
		alg, ok := jwsalg.ForKey(k, jwsalg.Client)
		if !ok || string(alg) != header.Algorithm {
			continue
		}
		if tried++; tried > maxCandidateKeys {
			break
		}
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, invalidClient(fmt.Errorf("client %q: client_assertion signature does not verify with a key of its jwksURI", id))
	}
	var claims assertionClaims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, invalidClient(fmt.Errorf("client %q: client_assertion claims: %w", id, err))
	}
	exp, err := a.checkAssertionClaims(&claims, id)
	if err != nil {
		return nil, invalidClient(fmt.Errorf("client %q: client_assertion: %w", id, err))
	}
	if err := a.Assertions.UseAssertion(ctx, id, *claims.ID, exp, a.now()); err != nil {
		if errors.Is(err, store.ErrReplay) {
			return nil, invalidClient(fmt.Errorf("client %q: client_assertion jti replayed", id))
		}
		return nil, oautherr.From(fmt.Errorf("use client assertion: %w", err))
	}
	return &Client{OAuthClient: c, ID: id, Method: latchkeyv1.AuthMethodPrivateKeyJWT}, nil
}

// checkAssertionClaims checks the verified claims and returns when the jti may be forgotten.
func (a *Authenticator) checkAssertionClaims(c *assertionClaims, clientID string) (time.Time, error) {
	now := a.now()
	switch {
	case c.Issuer == nil || *c.Issuer != clientID:
		return time.Time{}, errors.New("iss is not the client_id")
	case c.Subject == nil || *c.Subject != clientID:
		return time.Time{}, errors.New("sub is not the client_id")
	case c.ID == nil || *c.ID == "" || len(*c.ID) > maxJTILength:
		return time.Time{}, errors.New("jti missing or too long")
	case c.Expiry == nil:
		return time.Time{}, errors.New("exp missing")
	case !numericDate(c.Expiry) || !numericDate(c.IssuedAt) || !numericDate(c.NotBefore):
		return time.Time{}, errors.New("a date claim is out of range")
	}
	// aud must be a JSON string equal to the issuer: not an array, not the token endpoint.
	var aud string
	if len(c.Audience) == 0 || bytes.TrimSpace(c.Audience)[0] != '"' || json.Unmarshal(c.Audience, &aud) != nil || aud != a.Issuer {
		return time.Time{}, errors.New("aud is not the issuer as a JSON string")
	}
	exp := unixTime(*c.Expiry)
	switch {
	case !now.Before(exp.Add(AssertionLeeway)):
		return time.Time{}, errors.New("expired")
	case exp.After(now.Add(MaxAssertionLifetime + AssertionLeeway)):
		return time.Time{}, fmt.Errorf("exp more than %s ahead", MaxAssertionLifetime)
	case c.IssuedAt != nil && unixTime(*c.IssuedAt).After(now.Add(AssertionLeeway)):
		return time.Time{}, errors.New("iat in the future")
	case c.NotBefore != nil && unixTime(*c.NotBefore).After(now.Add(AssertionLeeway)):
		return time.Time{}, errors.New("not yet valid (nbf)")
	}
	// Remember the jti for as long as the assertion could be accepted.
	return exp.Add(AssertionLeeway), nil
}

// numericDate reports whether a NumericDate claim (absent is fine) lies between 1970 and 5138,
// so converting it cannot overflow.
func numericDate(f *float64) bool {
	return f == nil || (*f >= 0 && *f < 1e11)
}

func unixTime(f float64) time.Time {
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}
