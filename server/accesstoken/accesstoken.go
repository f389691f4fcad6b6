// Package accesstoken mints and verifies Latchkey's access tokens: JWTs per RFC 9068.
//
// Header: typ "at+jwt" (RFC 9068 §2.1), alg of the signing key, kid. Claims (RFC 9068 §2.2):
// iss, sub, aud, exp, iat, jti, client_id, scope (space-separated, canonical order, always
// present), and roles for users. aud is a JSON string when there is one audience and an array
// when there are several.
//
// The jti format is fixed by package tokenid: random for a token outside any grant
// (client_credentials), "<family>.<random>" for a token of a refresh-token family, so that
// introspection can check the family without a lookup by jti.
//
// Minting does not record the token: the caller records Token.Record in the store before it
// sends the token, either with store.RecordAccessToken or inside the atomic step that creates or
// rotates a family (store.FamilyParams.AccessToken, store.RotateParams.AccessToken). No token
// leaves the server unrecorded.
package accesstoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/internal/telemetry/spans"
	"github.com/latchkey-dev/latchkey/server/internal/jwsalg"
	"github.com/latchkey-dev/latchkey/server/keyring"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// ClientSubjectPrefix starts the sub of a token a client obtained for itself
// (client_credentials): "client:<client_id>". A username cannot contain ':' in this position
// for the purpose of confusion, and such tokens carry no roles, so a resource server can never
// mistake a client for the user of the same name (SECURITY-CASES 29, RFC 9700 §4.15).
const ClientSubjectPrefix = "client:"

// ClientSubject is the sub of a client_credentials token of clientID.
func ClientSubject(clientID string) string { return ClientSubjectPrefix + clientID }

// MaxTokenLength bounds a presented token before any parsing.
const MaxTokenLength = 16 << 10

// Leeway is the clock skew tolerated on iat when verifying.
const Leeway = time.Minute

// Audience is the aud claim: a JSON string when it holds one value, an array otherwise
// (RFC 7519 §4.1.3).
type Audience []string

// MarshalJSON writes one audience as a string.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON reads a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud: %w", err)
	}
	*a = many
	return nil
}

// Claims are the claims of an access token.
type Claims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience Audience `json:"aud"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
	ID       string   `json:"jti"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	Roles    []string `json:"roles,omitempty"`
	// AuthTime is when the user authenticated (RFC 9068 §2.2.1); 0 (absent) for clients.
	AuthTime int64 `json:"auth_time,omitempty"`
}

// Params describe a token to mint.
type Params struct {
	ClientID string
	// Subject is the user's sub, or ClientSubject(ClientID) for client_credentials.
	Subject string
	// Audience is the client's spec.audiences; callers pass DefaultAudience when it is empty.
	Audience []string
	// Scope is the granted scope in canonical form (scope.Join).
	Scope string
	// Roles of the user; nil for client tokens.
	Roles []string
	// Family binds the token to a refresh-token family (tokenid); "" for client_credentials.
	Family string
	// Lifetime is the client's access-token lifetime.
	Lifetime time.Duration
	// AuthTime is when the user authenticated; zero for client tokens.
	AuthTime time.Time
	// JTI, when set, is the token's jti: a tokenid.NewJTI(Family) value the caller recorded
	// before signing (the refresh grant records the new token inside the rotation, before it
	// knows the claims). Empty: a new one.
	JTI string
	// IssuedAt, when set, is the iat (truncated to the second) instead of the clock's now, so
	// a token recorded before it was signed gets exactly the recorded expiry.
	IssuedAt time.Time
}

// DefaultAudience is the aud of a client that registered no audiences: its own client_id, so
// the token is at least bound to something and is never audience-less (RFC 9068 §2.2 requires
// aud; RFC 8707 leaves the default to the server).
func DefaultAudience(audiences []string, clientID string) []string {
	if len(audiences) == 0 {
		return []string{clientID}
	}
	return audiences
}

// Token is a minted access token.
type Token struct {
	// Raw is the compact JWS to send.
	Raw string
	// Claims are its claims.
	Claims Claims
	// Record is what the caller must record in the store before sending Raw.
	Record store.AccessTokenRecord
	// ExpiresIn is the lifetime, for the expires_in response member.
	ExpiresIn time.Duration
}

// SignerSource gives the key that signs now; *keyring.Keyring is one.
type SignerSource interface {
	Signer(ctx context.Context) (*keyring.Signer, error)
}

// Minter mints access tokens.
type Minter struct {
	// Issuer is the iss claim, exactly the configured issuer.
	Issuer string
	// Keys gives the signing key.
	Keys SignerSource
	// Clock sets iat and exp.
	Clock clock.PassiveClock
}

// tracer is the global provider's tracer for this package. Mint's signing is the span
// "accesstoken.Sign" when the request is traced (package spans).
var tracer = spans.Tracer("github.com/latchkey-dev/latchkey/server/accesstoken")

// payloads holds the buffers the claims are written into before SignAccessToken encodes them
// into the token: they are garbage once it returns, on every token request.
var payloads = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPayloadCap bounds the buffers kept in payloads.
const maxPayloadCap = 4096

// Mint signs a new token. Errors wrapping keyring.ErrNoSigningKey mean no key can sign now.
func (m *Minter) Mint(ctx context.Context, p Params) (*Token, error) {
	if p.ClientID == "" || p.Subject == "" || len(p.Audience) == 0 || p.Lifetime <= 0 {
		return nil, errors.New("mint access token: client, subject, audience and lifetime are required")
	}
	signer, err := m.Keys.Signer(ctx)
	if err != nil {
		return nil, fmt.Errorf("mint access token: %w", err)
	}
	now := p.IssuedAt
	if now.IsZero() {
		now = m.Clock.Now()
	}
	now = now.Truncate(time.Second)
	exp := now.Add(p.Lifetime)
	jti := p.JTI
	if jti == "" {
		jti = tokenid.NewJTI(p.Family)
	} else if f, ok := tokenid.FamilyOfJTI(jti); !ok || f != p.Family {
		return nil, errors.New("mint access token: jti does not belong to the family")
	}
	c := Claims{
		Issuer:   m.Issuer,
		Subject:  p.Subject,
		Audience: Audience(p.Audience),
		Expiry:   exp.Unix(),
		IssuedAt: now.Unix(),
		ID:       jti,
		ClientID: p.ClientID,
		Scope:    p.Scope,
		Roles:    p.Roles,
	}
	if !p.AuthTime.IsZero() {
		c.AuthTime = p.AuthTime.Unix()
	}
	_, span := spans.Start(ctx, tracer, "accesstoken.Sign")
	bp := payloads.Get().(*[]byte)
	*bp = c.appendJSON((*bp)[:0])
	raw, err := signer.SignAccessToken(*bp)
	if cap(*bp) <= maxPayloadCap {
		payloads.Put(bp)
	}
	if span.IsRecording() {
		span.SetAttributes(spans.ClientIDKey.String(p.ClientID), spans.KeyIDKey.String(signer.KeyID),
			spans.AlgorithmKey.String(string(signer.Algorithm)))
		outcome := spans.OutcomeOK
		if err != nil {
			outcome = spans.OutcomeError
		}
		spans.End(span, outcome, err != nil)
	}
	if err != nil {
		return nil, fmt.Errorf("mint access token: %w", err)
	}
	return &Token{
		Raw:    raw,
		Claims: c,
		Record: store.AccessTokenRecord{
			JTI:       c.ID,
			ClientID:  p.ClientID,
			Family:    p.Family,
			ExpiresAt: exp,
		},
		ExpiresIn: p.Lifetime,
	}, nil
}

// ErrInvalid marks a token that is not a valid access token of this issuer.
var ErrInvalid = errors.New("invalid access token")

// Verify checks a presented token against the published keys: compact JWS only, the header alg
// must be the one its key (found by kid) verifies, typ must be at+jwt, the signature must hold,
// iss must be issuer exactly, and every claim must have its type. It does not check exp (the
// caller does, with its clock: revocation accepts an expired token, introspection does not) nor
// the store. Every failure wraps ErrInvalid.
func Verify(raw string, keys map[string]jose.JSONWebKey, issuer string, now time.Time) (*Claims, error) {
	if len(raw) > MaxTokenLength || strings.Count(raw, ".") != 2 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalid)
	}
	jws, err := jose.ParseSignedCompact(raw, jwsalg.Server)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrInvalid)
	}
	h := jws.Signatures[0].Protected
	key, ok := keys[h.KeyID]
	if h.KeyID == "" || !ok {
		return nil, fmt.Errorf("%w: unknown kid", ErrInvalid)
	}
	alg, ok := keyring.Algorithm(key)
	if !ok || string(alg) != h.Algorithm {
		return nil, fmt.Errorf("%w: alg does not match the key", ErrInvalid)
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !IsATType(typ) {
		return nil, fmt.Errorf("%w: typ is not at+jwt", ErrInvalid)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	return checkClaims(payload, issuer, now)
}

// checkClaims decodes a verified payload and checks what Verify promises about the claims.
func checkClaims(payload []byte, issuer string, now time.Time) (*Claims, error) {
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	switch {
	case c.Issuer != issuer:
		return nil, fmt.Errorf("%w: iss", ErrInvalid)
	case c.Subject == "" || c.ClientID == "" || c.ID == "" || len(c.Audience) == 0 || c.Expiry == 0 || c.IssuedAt == 0:
		return nil, fmt.Errorf("%w: missing claim", ErrInvalid)
	case time.Unix(c.IssuedAt, 0).After(now.Add(Leeway)):
		return nil, fmt.Errorf("%w: issued in the future", ErrInvalid)
	}
	if _, ok := tokenid.FamilyOfJTI(c.ID); !ok {
		return nil, fmt.Errorf("%w: jti", ErrInvalid)
	}
	return &c, nil
}

// Family is the family id of the token, "" for a token outside any family.
func (c *Claims) Family() string {
	f, _ := tokenid.FamilyOfJTI(c.ID)
	return f
}

// IsATType reports whether a typ header names an RFC 9068 access token: "at+jwt" or
// "application/at+jwt", compared case-insensitively (RFC 9068 §4, RFC 7515 §4.1.9).
func IsATType(typ string) bool {
	return strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")
}
