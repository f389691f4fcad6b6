package pkce

import (
	"errors"
	"strings"
	"testing"
)

// The example of RFC 7636 Appendix B.
const (
	rfcVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	rfcChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

func TestS256MatchesRFC7636AppendixB(t *testing.T) {
	if got := S256(rfcVerifier); got != rfcChallenge {
		t.Fatalf("S256(%q) = %q, want %q", rfcVerifier, got, rfcChallenge)
	}
}

func TestValidateChallenge(t *testing.T) {
	tests := []struct {
		name      string
		challenge string
		method    string
		want      error // nil, or the sentinel errors.Is must find
	}{
		{"an S256 challenge from the RFC example is accepted", rfcChallenge, "S256", nil},
		{"a 128-character challenge of every unreserved character is accepted", strings.Repeat("aZ09-._~", 16), "S256", nil},
		{"a 43-character challenge is accepted", strings.Repeat("a", 43), "S256", nil},
		// Case 18: PKCE is mandatory, and only S256.
		{"no challenge and no method is refused", "", "", ErrChallengeMissing},
		{"the plain method is refused", rfcChallenge, "plain", ErrMethodUnsupported},
		{"an omitted method, which means plain, is refused", rfcChallenge, "", ErrMethodUnsupported},
		{"a lower-case s256 is refused", rfcChallenge, "s256", ErrMethodUnsupported},
		{"S512 is refused", rfcChallenge, "S512", ErrMethodUnsupported},
		{"S256 with surrounding space is refused", rfcChallenge, " S256", ErrMethodUnsupported},
		// Case 19: syntax.
		{"a method sent without a challenge is refused", "", "S256", ErrChallengeMissing},
		{"a 42-character challenge is refused", strings.Repeat("a", 42), "S256", ErrChallengeMalformed},
		{"a 129-character challenge is refused", strings.Repeat("a", 129), "S256", ErrChallengeMalformed},
		{"a challenge with a plus sign (standard base64) is refused", strings.Repeat("a", 42) + "+", "S256", ErrChallengeMalformed},
		{"a challenge with a slash is refused", "/" + strings.Repeat("a", 42), "S256", ErrChallengeMalformed},
		{"a padded challenge is refused", rfcChallenge + "=", "S256", ErrChallengeMalformed},
		{"a challenge with a space is refused", strings.Repeat("a", 21) + " " + strings.Repeat("a", 21), "S256", ErrChallengeMalformed},
		{"a challenge with a NUL byte is refused", strings.Repeat("a", 43) + "\x00", "S256", ErrChallengeMalformed},
		{"a challenge with a non-ASCII letter is refused", strings.Repeat("a", 42) + "é", "S256", ErrChallengeMalformed},
		{"a challenge with a percent-encoding is refused", strings.Repeat("a", 40) + "%41", "S256", ErrChallengeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateChallenge(tt.challenge, tt.method)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateChallenge: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("ValidateChallenge error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestValidateVerifier(t *testing.T) {
	tests := []struct {
		name     string
		verifier string
		want     error
	}{
		{"the RFC example verifier is accepted", rfcVerifier, nil},
		{"43 characters are accepted", strings.Repeat("~", 43), nil},
		{"128 characters are accepted", strings.Repeat("-._~", 32), nil},
		{"an empty verifier is missing", "", ErrVerifierMissing},
		{"42 characters are refused", strings.Repeat("a", 42), ErrVerifierMalformed},
		{"129 characters are refused", strings.Repeat("a", 129), ErrVerifierMalformed},
		{"an equals sign is refused", strings.Repeat("a", 42) + "=", ErrVerifierMalformed},
		{"a newline is refused", strings.Repeat("a", 42) + "\n", ErrVerifierMalformed},
		{"a multi-byte character is refused", strings.Repeat("a", 41) + "ü", ErrVerifierMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateVerifier(tt.verifier)
			if tt.want == nil && err != nil {
				t.Fatalf("ValidateVerifier: %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("ValidateVerifier error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckAndVerify(t *testing.T) {
	other := strings.Repeat("b", 43)
	tests := []struct {
		name      string
		verifier  string
		challenge string
		want      error
	}{
		{"the verifier of the challenge passes", rfcVerifier, rfcChallenge, nil},
		// Case 20: a wrong, missing, plain-style, short, long or illegal verifier.
		{"a different valid verifier fails", other, rfcChallenge, ErrMismatch},
		{"a missing verifier fails", "", rfcChallenge, ErrVerifierMissing},
		{"a verifier equal to the challenge (plain-style) fails", rfcChallenge, rfcChallenge, ErrMismatch},
		{"a 42-character verifier fails even when it hashes to the challenge", strings.Repeat("a", 42), S256(strings.Repeat("a", 42)), ErrVerifierMalformed},
		{"a 129-character verifier fails even when it hashes to the challenge", strings.Repeat("a", 129), S256(strings.Repeat("a", 129)), ErrVerifierMalformed},
		{"a verifier with an illegal character fails even when it hashes to the challenge", strings.Repeat("a", 42) + "!", S256(strings.Repeat("a", 42) + "!"), ErrVerifierMalformed},
		{"a verifier that differs only in case fails", "D" + rfcVerifier[1:], rfcChallenge, ErrMismatch},
		// Case 21: a code recorded without a challenge is a downgrade, with or without a verifier.
		{"a verifier against a code without a challenge is invalid_request", rfcVerifier, "", ErrNoChallengeRecorded},
		{"no verifier against a code without a challenge is rejected too", "", "", ErrNoChallengeRecorded},
		{"a challenge truncated by one character fails", rfcVerifier, rfcChallenge[:42], ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.verifier, tt.challenge)
			if tt.want == nil && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Check error = %v, want %v", err, tt.want)
			}
			if got := Verify(tt.verifier, tt.challenge); got != (tt.want == nil) {
				t.Fatalf("Verify = %v, want %v", got, tt.want == nil)
			}
		})
	}
}

func TestErrorsNeverEchoTheInput(t *testing.T) {
	secret := strings.Repeat("Z", 40) + "<script>"
	for _, err := range []error{
		ValidateChallenge(secret, "S256"),
		ValidateVerifier(secret),
		Check(secret, rfcChallenge),
	} {
		if err == nil || strings.Contains(err.Error(), "ZZZ") || strings.Contains(err.Error(), "<script>") {
			t.Fatalf("error %q must exist and must not contain the input", err)
		}
	}
}
