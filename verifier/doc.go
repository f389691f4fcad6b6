// Package verifier validates Latchkey access tokens in resource servers.
//
// Latchkey issues access tokens as JWTs per RFC 9068: a compact JWS with header typ "at+jwt",
// an asymmetric alg (RS256, PS256, ES256 or EdDSA) and the kid of a key in the issuer's JWKS,
// carrying iss, sub, aud, exp, iat, jti, client_id, scope and, for users, roles. This package
// checks all of that the way RFC 9068 §4 and RFC 8725 ask, caches the JWKS, and wraps it in
// net/http middleware that answers RFC 6750 errors. It depends only on the standard library,
// go-jose v4 and golang.org/x/sync.
//
// # Usage
//
//	v, err := verifier.New(ctx, "https://auth.example.com",
//		verifier.WithAudience("https://notes.example.com"))
//	if err != nil {
//		return err
//	}
//	mux := http.NewServeMux()
//	mux.Handle("GET /api/notes", v.RequireScope("notes.read")(notes))
//	mux.Handle("GET /api/admin", v.RequireRole("admin")(admin))
//	mux.Handle("GET /api/me", v.Middleware(me))
//
// and in a handler:
//
//	claims, _ := verifier.ClaimsFromContext(r.Context())
//	fmt.Fprintf(w, "hello %s", claims.Subject())
//
// Verify checks a token directly, for non-HTTP transports:
//
//	claims, err := v.Verify(ctx, token)
//	if errors.Is(err, verifier.ErrExpired) { ... }
//
// # Keys
//
// New reads the issuer's metadata (RFC 8414; its "issuer" must equal the configured issuer
// exactly) and loads the JWKS from its jwks_uri. The key set is refreshed when the server's
// Cache-Control max-age runs out (clamped to [30 s, 1 h] by default, see WithJWKSRefresh) and
// when a token names an unknown kid; such refreshes run one at a time and at most once per
// minimum interval, so a flood of made-up kids cannot turn into a flood of fetches. A refresh
// replaces the whole set: a key that left the JWKS (rotated out, or revoked after a
// compromise) stops verifying. If a refresh fails, the previous keys stay in use.
//
// In Kubernetes the JWKS is also published in the ConfigMap "<signingkey>-jwks" (key
// "jwks.json"). Mount it and use WithJWKSFile to verify without any call to the issuer:
//
//	v, err := verifier.New(ctx, "https://auth.example.com",
//		verifier.WithAudience("https://notes.example.com"),
//		verifier.WithJWKSFile("/etc/latchkey/jwks.json"))
//
// Only public RSA (at least 2048 bits), P-256 and Ed25519 keys with a kid are used; a key's
// algorithm comes from its "alg" (or, without one, its type), and a token whose header alg
// does not match its key is refused. none and HMAC algorithms are never accepted.
//
// # Revocation
//
// A JWT stays valid until it expires. APIs that must see a revocation at once can add
// WithIntrospection: every token that passes the local checks is then also checked at the
// issuer's introspection endpoint (RFC 7662). Positive answers are cached for a short TTL,
// negative ones never; if the endpoint cannot be reached the token is rejected.
//
// # Errors
//
// Every error from Verify is a rejection and wraps one of ErrMalformed, ErrType, ErrHeader,
// ErrAlgorithm, ErrKeyNotFound, ErrSignature, ErrIssuer, ErrAudience, ErrExpired,
// ErrNotYetValid, ErrMissingClaim, ErrInactive or ErrUnavailable. The signature is checked
// before any claim, so a forged token is reported as ErrSignature whatever its claims say.
package verifier
