// Package store holds every piece of mutable token state of the token server: authorization
// codes, refresh-token families, access-token records, client-assertion jtis, login sessions,
// pending authorization requests, consents and rate-limit counters.
//
// Two implementations share these interfaces and one conformance suite (storetest): the Redis
// store, which lets any number of replicas serve, and the memory store, used only where the mode
// itself is in-memory (--dev without --redis-url).
//
// Rules every implementation keeps:
//   - Secrets never reach the store. Callers pass Hash(value) for codes, refresh tokens, session
//     ids and request ids; the conformance suite checks that no raw value is stored.
//   - Everything expires: each record carries a TTL, so nothing outlives its token.
//   - Time is passed in (now) by the caller, from the server's injected clock, so tests can move
//     it; implementations never read the wall clock to decide validity.
//   - "Not found" and "expired" are the same answer (ErrNotFound), and no path treats a missing
//     record as valid: after a flush every token fails closed.
//   - A backend failure is ErrUnavailable (wrapped), which the server answers with 503
//     temporarily_unavailable. It is never confused with ErrNotFound.
//   - Each operation that decides a race (redeeming a code, rotating a refresh token, taking an
//     authorization request, using an assertion jti) has exactly one winner.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"
)

// Errors returned by every Store. Callers test them with errors.Is.
var (
	// ErrNotFound: the record does not exist, has expired, or the presented secret does not
	// match. Fail closed.
	ErrNotFound = errors.New("store: not found")
	// ErrUnavailable wraps a backend failure (connection refused, timeout, pool exhausted).
	ErrUnavailable = errors.New("store: unavailable")
	// ErrCodeReused: the authorization code was already redeemed. The family the first
	// redemption created has been revoked (OAuth 2.1 §4.1.3).
	ErrCodeReused = errors.New("store: authorization code reused")
	// ErrRefreshReused: a refresh token that was already rotated was presented outside the reuse
	// interval. The whole family has been revoked (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
	ErrRefreshReused = errors.New("store: refresh token reused")
	// ErrRevoked: the family was revoked earlier.
	ErrRevoked = errors.New("store: revoked")
	// ErrClientMismatch: the record belongs to another client. Nothing was changed, so an
	// invalid request cannot be used to revoke someone else's grant (OAuth 2.1 §7.5.2).
	ErrClientMismatch = errors.New("store: client mismatch")
	// ErrReplay: a client-assertion jti was already used within its lifetime.
	ErrReplay = errors.New("store: replay")
)

// Hash is the form in which secrets (codes, refresh tokens, session and request ids) are keyed:
// base64url(SHA-256(value)). The values carry at least 256 bits of randomness, so a fast hash is
// enough to make a stolen database useless.
func Hash(value string) string {
	sum := sha256.Sum256([]byte(value))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Store is every capability the token server needs.
type Store interface {
	Codes
	Families
	AccessTokens
	Assertions
	Sessions
	AuthRequests
	Consents
	Limiter
	// Ping reports whether the backend answers; /readyz uses it.
	Ping(ctx context.Context) error
}

// Grant is what an authorization code grants, and what its refresh-token family carries on.
type Grant struct {
	ClientID string
	Subject  string
	// Scope is the granted scope, space-separated, in canonical (sorted) order.
	Scope    string
	AuthTime time.Time
	// Nonce and RedirectURI matter only for the code (OIDC id_token, RFC 6749 §4.1.3).
	Nonce       string
	RedirectURI string
	// Audience is the space-separated aud of the grant's access tokens, fixed when the code is
	// issued. A refresh re-checks it against the client (SECURITY-CASES 40). Empty in records
	// written before it was kept; those are not re-checked.
	Audience string
}

// Code is a stored authorization code (OAuth 2.1 §4.1.2).
type Code struct {
	Grant
	// CodeChallenge is the S256 PKCE challenge. Always present: PKCE is mandatory.
	CodeChallenge string
	ExpiresAt     time.Time
}

// FamilyParams creates a refresh-token family when a code is redeemed.
type FamilyParams struct {
	// RefreshHash is Hash of the first refresh token, or "" when the client does not use refresh
	// tokens (the family then only tracks the code's access tokens, for revocation on replay).
	RefreshHash string
	// ExpiresAt is the absolute end of the family (refreshTokenPolicy.absoluteLifetime).
	ExpiresAt time.Time
	// IdleLifetime expires a refresh token unused for this long.
	IdleLifetime time.Duration
	// AccessToken is the first access token, recorded in the same atomic step.
	AccessToken AccessTokenRecord
}

// Family is a refresh-token family: one per grant, with exactly one live refresh token.
type Family struct {
	ID string
	Grant
	CreatedAt time.Time
	ExpiresAt time.Time
	// Generation counts rotations: 1 after the code exchange, +1 per rotation.
	Generation int64
	Revoked    bool
}

// Codes stores authorization codes. A code lives in the slot of the family it will create, so
// redeeming it and creating the family are one atomic step.
type Codes interface {
	// CreateCode stores a code under (family, codeHash), valid until c.ExpiresAt (60 s).
	CreateCode(ctx context.Context, family, codeHash string, c Code, now time.Time) error
	// GetCode returns an unredeemed, unexpired code without changing it, so the caller can check
	// the client, redirect URI and PKCE verifier first: a wrong one must not burn the code
	// (OAuth 2.1 §7.5.2). A redeemed code is ErrCodeReused (and revokes nothing); an unknown or
	// expired one ErrNotFound.
	//
	// With ErrCodeReused the stored Code is returned too (its tombstone keeps it), so the caller
	// can check the client and verifier of the replay and call RedeemCode, which revokes, only
	// for a successful-looking one (decision D2, case 24).
	GetCode(ctx context.Context, family, codeHash string, now time.Time) (Code, error)
	// RedeemCode atomically marks the code redeemed, leaving a tombstone for a while so a replay
	// is recognised, and creates its family with p. Exactly one concurrent caller wins. Any later
	// call revokes the family the winner created and returns ErrCodeReused.
	//
	// A retry of the winning call itself (same non-empty p.AccessToken.JTI, e.g. after a lost
	// reply) returns the same family and revokes nothing. p.AccessToken.Family must be "" or
	// family; the token is recorded as a token of family either way.
	RedeemCode(ctx context.Context, family, codeHash string, p FamilyParams, now time.Time) (Family, error)
}

// RotateParams rotates a refresh token.
type RotateParams struct {
	Family        string
	PresentedHash string
	NewHash       string
	// ClientID must own the family; otherwise ErrClientMismatch and nothing changes.
	ClientID string
	// IdleLifetime of the new token; the presented one must not be idle-expired either.
	IdleLifetime time.Duration
	// ReuseInterval: within it, the token rotated just before may be presented again. It then
	// gets NewHash as successor, and the successor issued before is revoked, so the family never
	// forks (decision D1). Zero: any reuse revokes the family.
	ReuseInterval time.Duration
	// MaxGenerations, when positive, ends the family once it has rotated that many times: the
	// rotation revokes it and answers ErrRevoked. Every rotation keeps the hash of the token it
	// replaced until the family expires (to detect reuse), so without a cap a client rotating in
	// a loop would grow one record without bound.
	MaxGenerations int64
	// AccessToken is the new access token, recorded in the same atomic step.
	AccessToken AccessTokenRecord
}

// Families stores refresh-token families.
type Families interface {
	// RotateRefresh checks, in one atomic step and before any write, that the family is live
	// (not revoked, before ExpiresAt), that the presented token is its current one and not
	// idle-expired (or, within ReuseInterval, the one rotated just before), and that ClientID
	// owns it; then makes NewHash the one live token and increments Generation.
	// Errors: ErrNotFound (unknown hash, expired), ErrRevoked, ErrClientMismatch, and
	// ErrRefreshReused, which has revoked the whole family.
	//
	// A retry of the call that rotated (same PresentedHash and NewHash, e.g. after a lost reply
	// or a client-library retry) returns the family unchanged instead of counting as reuse.
	// p.AccessToken.Family must be "" or p.Family.
	RotateRefresh(ctx context.Context, p RotateParams, now time.Time) (Family, error)
	// LookupRefresh returns the family whose live refresh token has hash h, for introspection.
	// A used, expired or revoked token is ErrNotFound.
	LookupRefresh(ctx context.Context, family, h string, now time.Time) (Family, error)
	// RevokeRefresh revokes the family if h is any of its tokens (live or used) and clientID owns
	// it (RFC 7009 §2.1: revoking a refresh token revokes the grant). Unknown: ErrNotFound.
	// Another client's: ErrClientMismatch, and nothing changes.
	RevokeRefresh(ctx context.Context, family, h, clientID string, now time.Time) error
	// RevokeFamily revokes a family and every token in it. Idempotent.
	RevokeFamily(ctx context.Context, family string, now time.Time) error
}

// AccessTokenRecord records an issued access token. Every access token is recorded before it is
// sent, so introspection is authoritative and a store outage never yields an unrecorded token.
type AccessTokenRecord struct {
	JTI       string
	ClientID  string
	Family    string // "" for client_credentials tokens
	ExpiresAt time.Time
}

// AccessTokens stores access-token records.
type AccessTokens interface {
	// RecordAccessToken records r until r.ExpiresAt.
	RecordAccessToken(ctx context.Context, r AccessTokenRecord, now time.Time) error
	// AccessTokenActive reports whether the token (jti, family) was recorded, is not revoked and
	// has not expired, and, for a family token, whether its family is live. A family is live
	// here while its record exists and is not revoked: an access token issued shortly before
	// the family's absolute expiry stays active until its own exp.
	AccessTokenActive(ctx context.Context, jti, family string, now time.Time) (bool, error)
	// RevokeAccessToken revokes the token until its expiry: the record stays, marked revoked. An
	// unknown token is ErrNotFound; another client's is ErrClientMismatch, unchanged.
	RevokeAccessToken(ctx context.Context, jti, family, clientID string, now time.Time) error
}

// Assertions remembers client-assertion jtis (RFC 7523 §3 item 7).
type Assertions interface {
	// UseAssertion records jti for clientID until expiresAt. A jti already recorded is ErrReplay.
	UseAssertion(ctx context.Context, clientID, jti string, expiresAt, now time.Time) error
}

// Session is a browser login session.
type Session struct {
	Subject  string
	AuthTime time.Time
	// ExpiresAt is the absolute end of the session.
	ExpiresAt time.Time
}

// Sessions stores login sessions.
type Sessions interface {
	// CreateSession stores s under idHash. It expires after idle without use, and at
	// s.ExpiresAt in any case.
	CreateSession(ctx context.Context, idHash string, s Session, idle time.Duration, now time.Time) error
	// GetSession returns a live session and restarts its idle timer.
	GetSession(ctx context.Context, idHash string, idle time.Duration, now time.Time) (Session, error)
	// DeleteSession ends a session. Idempotent.
	DeleteSession(ctx context.Context, idHash string) error
}

// AuthRequests stores pending authorization requests between /authorize and the login and
// consent pages. The value is opaque to the store (the server encodes it).
type AuthRequests interface {
	// PutAuthRequest stores (or replaces) the request under idHash until expiresAt.
	PutAuthRequest(ctx context.Context, idHash string, value []byte, expiresAt, now time.Time) error
	// GetAuthRequest returns the stored value.
	GetAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error)
	// TakeAuthRequest returns and deletes the request in one step: exactly one caller completes
	// a request, so a replayed form post finds nothing.
	TakeAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error)
}

// Consents remembers consent decisions per user, client and scope set.
type Consents interface {
	// SaveConsent records that subject allowed clientID the scopes, until expiresAt.
	SaveConsent(ctx context.Context, subject, clientID string, scopes []string, expiresAt, now time.Time) error
	// HasConsent reports whether every scope in scopes was allowed before and has not expired.
	HasConsent(ctx context.Context, subject, clientID string, scopes []string, now time.Time) (bool, error)
	// RevokeConsent forgets the decision.
	RevokeConsent(ctx context.Context, subject, clientID string) error
}

// Limiter counts events in fixed windows, atomically, for throttling.
type Limiter interface {
	// Hit adds n (0 only reads) to key's counter in the window that contains now and returns the
	// count after adding and when the window ends. Concurrent hits are all counted.
	Hit(ctx context.Context, key string, n int64, window time.Duration, now time.Time) (count int64, resetAt time.Time, err error)
	// HitGroup is Hit for several named counters of one group (say, one client) in one atomic
	// step, so a caller that must read one counter and add to another pays one round trip
	// (Redis: one script, the group's keys in one hash slot). Each counter has its own window;
	// the counts come back in the order of hits. A group counter is never a Hit key, whatever
	// the names. An empty hits is an error.
	HitGroup(ctx context.Context, group string, hits []LimitHit, now time.Time) ([]LimitCount, error)
}

// RecordAndHitter is implemented by stores that can record an access token and count
// rate-limit hits in one round trip (Redis: both scripts in one pipeline). It is optional; the
// server falls back to RecordAccessToken and HitGroup. The two steps are each atomic but not
// atomic together: either may take effect when the other fails, which is safe because a
// token is sent only when both succeeded (a recorded token that was never sent harms nobody).
type RecordAndHitter interface {
	// RecordAccessTokenAndHit is RecordAccessToken(r) and HitGroup(group, hits) at once. It
	// returns HitGroup's counts and error, and RecordAccessToken's error, separately.
	RecordAccessTokenAndHit(ctx context.Context, r AccessTokenRecord, group string, hits []LimitHit, now time.Time) (counts []LimitCount, hitErr, recordErr error)
}

// LimitHit is one counter of a HitGroup call: add N (0 only reads) to counter Name in the
// fixed window of length Window that contains now.
type LimitHit struct {
	Name   string
	N      int64
	Window time.Duration
}

// LimitCount is a counter after HitGroup: its count after adding, and when its window ends.
type LimitCount struct {
	Count   int64
	ResetAt time.Time
}
