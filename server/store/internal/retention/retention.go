// Package retention holds the lifetimes that every store implementation and the conformance
// suite must agree on, so the Redis and memory stores judge expiry identically.
package retention

import "time"

const (
	// CodeTombstone is how long a redeemed authorization code is remembered after its
	// redemption, so a replay is recognised as reuse and revokes the family instead of being
	// answered "not found" (OAuth 2.1 §4.1.3, SECURITY-CASES case 22: replay after 30 s). It is
	// measured from the redemption, not from the code's 60 s expiry.
	CodeTombstone = 10 * time.Minute

	// AccessTokenGrace is how long a family record outlives the family's absolute expiry. An
	// access token issued just before the family ends lives up to the longest access-token
	// lifetime (DESIGN: at most 1h), and it can only be judged (revoked, introspected) while
	// its family record exists.
	AccessTokenGrace = time.Hour

	// MinKeyTTL is the shortest TTL the Redis store puts on a key. Validity is always decided
	// by the deadline stored in the record against the caller's clock; the TTL only collects
	// garbage, so clamping it upward never extends a token's life.
	MinKeyTTL = time.Second
)
