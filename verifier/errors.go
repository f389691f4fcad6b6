package verifier

import "errors"

// Errors returned by [Verifier.Verify], matched with [errors.Is]. Every error is a rejection:
// there is no error after which a token may still be used. The returned error wraps exactly one
// of these, with a short detail that never contains the token.
var (
	// ErrMalformed: the token is not a compact JWS of at most [MaxTokenSize] bytes with three
	// parts, or its header or claims are not JSON of the expected types (for example a string
	// "exp", or a duplicated member).
	ErrMalformed = errors.New("malformed token")

	// ErrType: the "typ" header is not "at+jwt" or "application/at+jwt" (RFC 9068 §4), so the
	// token may be an ID token, a client assertion or another JWT from the same issuer.
	ErrType = errors.New("token type is not at+jwt")

	// ErrHeader: the header carries a parameter the verifier refuses to act on: "jku", "x5u",
	// "jwk", "x5c" (keys come only from the configured JWKS), or "crit" / "b64" (RFC 7515
	// §4.1.11, RFC 7797).
	ErrHeader = errors.New("forbidden token header")

	// ErrAlgorithm: the "alg" header is not in the allow-list, or does not match the algorithm
	// of the key named by "kid".
	ErrAlgorithm = errors.New("token algorithm not allowed")

	// ErrKeyNotFound: the token has no "kid", or its kid is not in the JWKS even after a
	// refresh (or a refresh was not allowed yet by the rate limit).
	ErrKeyNotFound = errors.New("unknown signing key")

	// ErrSignature: the signature does not verify with the key named by "kid".
	ErrSignature = errors.New("invalid token signature")

	// ErrIssuer: "iss" is not exactly the configured issuer.
	ErrIssuer = errors.New("token issuer mismatch")

	// ErrAudience: "aud" does not contain the configured audience.
	ErrAudience = errors.New("token audience mismatch")

	// ErrExpired: "exp" is in the past by more than the leeway.
	ErrExpired = errors.New("token expired")

	// ErrNotYetValid: "nbf" or "iat" is in the future by more than the leeway.
	ErrNotYetValid = errors.New("token not yet valid")

	// ErrMissingClaim: a claim RFC 9068 §2.2 requires (iss, sub, aud, exp, iat, jti,
	// client_id) is absent or empty.
	ErrMissingClaim = errors.New("required claim missing")

	// ErrInactive: the introspection endpoint answered that the token is not active (revoked,
	// or otherwise no longer valid at the server).
	ErrInactive = errors.New("token not active")

	// ErrUnavailable: the verifier could not decide because a dependency failed: the JWKS
	// could not be fetched to look up an unknown kid, or the introspection endpoint failed.
	// The token is rejected (fail closed); the middleware answers 503 rather than 401 so that
	// clients do not discard a token that may be valid.
	ErrUnavailable = errors.New("token verification unavailable")
)
