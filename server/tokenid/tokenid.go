// Package tokenid is the one place that fixes the formats of the identifiers the token server
// hands out. Every other package builds and splits them only through these functions.
//
//	family id      base64url(16 random bytes)                    22 characters, no '.'
//	jti            base64url(16 random bytes)                     client_credentials tokens
//	               "<family>.<base64url(16 random bytes)>"       tokens of a grant (code flow)
//	refresh token  "<family>.<base64url(32 random bytes)>"       opaque to clients
//	code           "<family>.<base64url(32 random bytes)>"       authorization code, opaque
//
// A family is one grant: the tokens one authorization code and its refresh-token chain issue.
// Access tokens of a family carry the family id in their jti, so introspection can ask the
// store whether the family is still live (store.AccessTokens.AccessTokenActive). Refresh tokens
// carry it so the store can find the family in one hash slot (store.Families). The store only
// ever sees store.Hash of a refresh token, never the token.
//
// All randomness comes from crypto/rand: a jti is 128 bits (RFC 9068 §2.2 wants a unique
// identifier), a refresh token 256 bits (DESIGN: opaque, 256 bits).
package tokenid

import (
	"crypto/rand"
	"encoding/base64"
	"strings"

	"github.com/latchkey-dev/latchkey/server/store"
)

const (
	idBytes      = 16
	refreshBytes = 32
	// maxFamilyLen bounds a family id read back from a client.
	maxFamilyLen = 64
	// refreshSecretLen is the length of the random part of a refresh token.
	refreshSecretLen = 43 // base64url of 32 bytes, unpadded
)

func random(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails on supported platforms (Go 1.24+ panics instead).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewFamilyID returns a new family id.
func NewFamilyID() string { return random(idBytes) }

// NewSecret returns 256 bits from crypto/rand, base64url without padding (43 characters): the
// browser cookie, session ids, request ids and CSRF tokens of the login flow.
func NewSecret() string { return random(refreshBytes) }

// ValidSecret reports whether s has the form NewSecret gives, so that nothing else is hashed
// or looked up.
func ValidSecret(s string) bool { return len(s) == refreshSecretLen && validID(s, refreshSecretLen) }

// NewJTI returns a new jti: random for a token outside any family (family == ""), else
// "<family>.<random>".
func NewJTI(family string) string {
	if family == "" {
		return random(idBytes)
	}
	return family + "." + random(idBytes)
}

// FamilyOfJTI returns the family a jti names, "" for a token outside any family, and false for
// a jti that does not have one of the two forms.
func FamilyOfJTI(jti string) (string, bool) {
	family, rest, dotted := strings.Cut(jti, ".")
	if !dotted {
		return "", validID(jti, 128)
	}
	if !validID(family, maxFamilyLen) || !validID(rest, 128) {
		return "", false
	}
	return family, true
}

// NewRefreshToken returns a refresh token of family and the hash under which the store keeps
// it.
func NewRefreshToken(family string) (token, hash string) {
	token = family + "." + random(refreshBytes)
	return token, store.Hash(token)
}

// NewCode returns an authorization code for the family its redemption will create, and the
// hash under which the store keeps it. A code carries 256 bits from crypto/rand (OAuth 2.1
// §7.7 asks for at least 128, and SHOULD 160; SECURITY-CASES 11). It has the shape of a
// refresh token, but the stores keep codes and refresh tokens under different keys, so one is
// never accepted as the other.
func NewCode(family string) (code, hash string) {
	code = family + "." + random(refreshBytes)
	return code, store.Hash(code)
}

// ParseCode splits a presented authorization code into its family and its store hash; ok is
// false when the value cannot be a code of ours.
func ParseCode(code string) (family, hash string, ok bool) {
	return ParseRefreshToken(code)
}

// ParseRefreshToken splits a presented refresh token into its family and its store hash. ok is
// false when the value cannot be a refresh token (then it is not one, and the caller answers
// invalid_grant or active:false without asking the store).
func ParseRefreshToken(token string) (family, hash string, ok bool) {
	family, secret, dotted := strings.Cut(token, ".")
	if !dotted || !validID(family, maxFamilyLen) || len(secret) != refreshSecretLen || !validID(secret, refreshSecretLen) {
		return "", "", false
	}
	return family, store.Hash(token), true
}

// validID reports whether s is 1 to maxLen characters of the base64url alphabet.
func validID(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBase64URLChar(s[i]) {
			return false
		}
	}
	return true
}

// isBase64URLChar reports whether c is in the base64url alphabet of RFC 4648 §5 (no padding).
func isBase64URLChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
