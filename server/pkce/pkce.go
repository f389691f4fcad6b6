// Package pkce checks Proof Key for Code Exchange parameters (RFC 7636) the way OAuth 2.1 requires
// them: for every client, with the S256 method only.
//
// The authorization endpoint calls ValidateChallenge on code_challenge and code_challenge_method
// and maps any error to invalid_request (OAuth 2.1 §4.1.2.1). The token endpoint calls Check with
// the code_verifier and the challenge stored with the code, and maps the errors as Check
// documents: a code recorded without a challenge is invalid_request (OAuth 2.1 §3.2.4, the PKCE
// downgrade of RFC 9700 §4.8.2); anything wrong with the verifier is invalid_grant (OAuth 2.1
// §4.1.3).
//
// Error messages name the rule that failed and never echo the input, so the caller may put them
// in error_description as they are.
package pkce

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
)

// MethodS256 is the only code_challenge_method accepted. "plain" exists in RFC 7636 §4.2 but
// OAuth 2.1 §4.1.1 and RFC 9700 §2.1.1 forbid it where S256 is possible, which it always is here.
const MethodS256 = "S256"

// Lengths of a code_verifier and a code_challenge: RFC 7636 §4.1 and §4.2, OAuth 2.1 §4.1.1
// (43*128unreserved).
const (
	MinLength = 43
	MaxLength = 128
)

// Errors of the authorization request. The caller answers invalid_request.
var (
	// ErrChallengeMissing: no code_challenge. PKCE is mandatory for every client (OAuth 2.1
	// §4.1.1, DESIGN.md), so a missing challenge is an error, never a fallback to no PKCE.
	ErrChallengeMissing = errors.New("pkce: code_challenge is required")
	// ErrMethodUnsupported: code_challenge_method is anything but exactly "S256". An omitted
	// method means plain (RFC 7636 §4.3), so it is refused too.
	ErrMethodUnsupported = errors.New("pkce: code_challenge_method must be S256")
	// ErrChallengeMalformed: the challenge has the wrong length or characters.
	ErrChallengeMalformed = errors.New("pkce: code_challenge is malformed")
)

// Errors of the token request. Check documents which OAuth error each one maps to.
var (
	// ErrNoChallengeRecorded: the code was issued without a challenge. That cannot happen when
	// the authorization endpoint validates, so it means a downgrade attempt or a bug; OAuth 2.1
	// §3.2.4 answers invalid_request.
	ErrNoChallengeRecorded = errors.New("pkce: the authorization code has no code_challenge")
	// ErrVerifierMissing: no code_verifier in the token request.
	ErrVerifierMissing = errors.New("pkce: code_verifier is required")
	// ErrVerifierMalformed: the verifier has the wrong length or characters.
	ErrVerifierMalformed = errors.New("pkce: code_verifier is malformed")
	// ErrMismatch: the verifier does not hash to the challenge.
	ErrMismatch = errors.New("pkce: code_verifier does not match the code_challenge")
)

// ValidateChallenge checks the code_challenge and code_challenge_method of an authorization
// request. Every error it returns maps to invalid_request.
func ValidateChallenge(challenge, method string) error {
	if challenge == "" {
		// A method without a challenge is the same error: there is nothing to verify later
		// (node-oidc-provider, "codeChallenge is provided if codeChallengeMethod was").
		return ErrChallengeMissing
	}
	// Exact comparison: "s256" is not S256 (RFC 7636 §4.3 defines the value, not a
	// case-insensitive token), and "" means plain.
	if method != MethodS256 {
		return ErrMethodUnsupported
	}
	if err := checkSyntax(challenge); err != nil {
		return fmt.Errorf("%w: %w", ErrChallengeMalformed, err)
	}
	return nil
}

// ValidateVerifier checks the syntax of a code_verifier (RFC 7636 §4.1): 43 to 128 characters
// of [A-Za-z0-9-._~].
func ValidateVerifier(verifier string) error {
	if verifier == "" {
		return ErrVerifierMissing
	}
	if err := checkSyntax(verifier); err != nil {
		return fmt.Errorf("%w: %w", ErrVerifierMalformed, err)
	}
	return nil
}

// Verify reports whether verifier is well formed and BASE64URL(SHA256(verifier)) equals
// challenge (RFC 7636 §4.6). The comparison takes constant time, so the response time does not
// tell an attacker how much of a guessed challenge was right. An empty challenge never verifies.
func Verify(verifier, challenge string) bool {
	if challenge == "" || ValidateVerifier(verifier) != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(S256(verifier)), []byte(challenge)) == 1
}

// Check is the token endpoint's whole PKCE step: challenge is what was stored with the code,
// verifier what the client sent. It returns nil when the verifier proves possession.
//
// Map the errors like this:
//   - ErrNoChallengeRecorded → invalid_request (OAuth 2.1 §3.2.4);
//   - ErrVerifierMissing, ErrVerifierMalformed, ErrMismatch → invalid_grant (OAuth 2.1 §4.1.3,
//     RFC 7636 §4.6).
//
// A verifier equal to the challenge (a "plain" client) fails with ErrMismatch.
func Check(verifier, challenge string) error {
	if challenge == "" {
		return ErrNoChallengeRecorded
	}
	if err := ValidateVerifier(verifier); err != nil {
		return err
	}
	if !Verify(verifier, challenge) {
		return ErrMismatch
	}
	return nil
}

// S256 returns the S256 code_challenge of verifier: BASE64URL-ENCODE(SHA256(ASCII(verifier)))
// without padding (RFC 7636 §4.2). It does not validate verifier.
func S256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// checkSyntax enforces 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
// (RFC 7636 §4.1 and §4.2). The message reports the length but never the value.
func checkSyntax(s string) error {
	if len(s) < MinLength || len(s) > MaxLength {
		return fmt.Errorf("length %d is outside %d..%d", len(s), MinLength, MaxLength)
	}
	for i := 0; i < len(s); i++ {
		if !isUnreserved(s[i]) {
			return fmt.Errorf("character at offset %d is outside [A-Za-z0-9-._~]", i)
		}
	}
	return nil
}

func isUnreserved(c byte) bool {
	switch {
	case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return true
	case c == '-', c == '.', c == '_', c == '~':
		return true
	}
	return false
}
