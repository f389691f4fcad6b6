package verifier_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/latchkey-dev/latchkey/verifier"
)

// tokenSource is an issuer of real access tokens: setup returns a Verifier for it and one valid
// token. The in-process test issuer is one source per algorithm. Once the token server lands,
// append a source that starts it (or uses the --dev server), builds the Verifier with
// verifier.New against its issuer URL and gets a token from POST /token; every check below then
// runs against real-server tokens too.
type tokenSource struct {
	name  string
	setup func(t *testing.T) (*verifier.Verifier, string)
}

var tokenSources = []tokenSource{
	testIssuerSource("ES256"), testIssuerSource("EdDSA"), testIssuerSource("RS256"), testIssuerSource("PS256"),
}

func testIssuerSource(alg string) tokenSource {
	return tokenSource{name: "test issuer " + alg, setup: func(t *testing.T) (*verifier.Verifier, string) {
		k := testKey(t, alg)
		iss := newTestIssuer(t, k)
		return newVerifier(t, iss, newClock()), mint(t, k, iss.claims(), nil)
	}}
}

// TestTokenSourcesAccepted accepts each source's token and rejects what can be forged from it
// without the private key.
func TestTokenSourcesAccepted(t *testing.T) {
	for _, src := range tokenSources {
		t.Run(src.name, func(t *testing.T) {
			v, tok := src.setup(t)
			checkTokenAndForgeries(t, v, tok)
		})
	}
}

// checkTokenAndForgeries asserts that v accepts tok and rejects every variant of it an attacker
// can build without the signing key.
func checkTokenAndForgeries(t *testing.T, v *verifier.Verifier, tok string) {
	t.Helper()
	c := acceptToken(t, v, tok)
	if c.Subject() == "" || c.ClientID() == "" || c.ID() == "" || c.ExpiresAt().IsZero() || c.IssuedAt().IsZero() {
		t.Fatalf("a valid token lacks RFC 9068 claims: %v", c.Raw())
	}
	p := strings.Split(tok, ".")
	var hdr map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(p[0])
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	if hdr["typ"] != "at+jwt" || hdr["kid"] == "" {
		t.Fatalf("header %v: want typ at+jwt and a kid (case 53)", hdr)
	}
	withHeader := func(changes map[string]any) string {
		h := with(hdr, changes)
		return b64(mustJSON(t, h)) + "." + p[1] + "." + p[2]
	}
	var claims map[string]any
	rawClaims, _ := base64.RawURLEncoding.DecodeString(p[1])
	if err := json.Unmarshal(rawClaims, &claims); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(p[2])
	sig[len(sig)/2] ^= 0x80
	flipped := p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(sig)

	forgeries := []struct {
		name  string
		token string
		want  error
	}{
		{"the payload with more roles", p[0] + "." + b64(mustJSON(t, with(claims, map[string]any{"roles": []string{"admin"}}))) + "." + p[2], verifier.ErrSignature},
		{"the payload with a later exp", p[0] + "." + b64(mustJSON(t, with(claims, map[string]any{"exp": 9999999999}))) + "." + p[2], verifier.ErrSignature},
		{"a flipped signature bit", flipped, verifier.ErrSignature},
		{"no signature", p[0] + "." + p[1] + ".", verifier.ErrSignature},
		{"alg none", withHeader(map[string]any{"alg": "none"}), verifier.ErrAlgorithm},
		{"alg HS256", withHeader(map[string]any{"alg": "HS256"}), verifier.ErrAlgorithm},
		{"a jku header", withHeader(map[string]any{"jku": "https://evil.example/jwks"}), verifier.ErrHeader},
		{"typ JWT", withHeader(map[string]any{"typ": "JWT"}), verifier.ErrType},
		{"an unknown kid", withHeader(map[string]any{"kid": "nope"}), verifier.ErrKeyNotFound},
		{"the flattened JSON serialization", `{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `"}`, verifier.ErrMalformed},
		{"a trailing newline", tok + "\n", verifier.ErrMalformed},
		{"a fourth part", tok + ".", verifier.ErrMalformed},
	}
	for _, f := range forgeries {
		t.Run("rejects "+f.name, func(t *testing.T) {
			rejectToken(t, v, f.token, f.want)
		})
	}
}
