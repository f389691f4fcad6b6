package accesstoken

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey-dev/latchkey/server/keyring"
)

// VerifyJWKS is Verify against a keyring's key set, with the same checks and errors. A token
// whose protected header is byte for byte the one this server writes for one of its ES256 or
// EdDSA keys (keyring.JWKS.AccessTokenKey) is checked without go-jose: the exact match already
// says alg, kid and typ, so only the signature and the claims remain, and introspection spends
// its time on the signature rather than on parsing a header it wrote itself. Any other token
// takes Verify's general path.
func VerifyJWKS(raw string, jwks *keyring.JWKS, issuer string, now time.Time) (*Claims, error) {
	if len(raw) > MaxTokenLength {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalid)
	}
	header, rest, ok := strings.Cut(raw, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.IndexByte(sig, '.') >= 0 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalid)
	}
	key, ok := jwks.AccessTokenKey(header)
	if !ok {
		return Verify(raw, jwks.Keys, issuer, now)
	}
	// Strict: a non-canonical encoding (stray low bits in the last character) is not ours;
	// the general path decides what it is.
	enc := base64.RawURLEncoding.Strict()
	sigBytes, err := enc.DecodeString(sig)
	if err != nil {
		return Verify(raw, jwks.Keys, issuer, now)
	}
	body, err := enc.DecodeString(payload)
	if err != nil {
		return Verify(raw, jwks.Keys, issuer, now)
	}
	if err := verifySignature(key, raw[:len(header)+1+len(payload)], sigBytes); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	return checkClaims(body, issuer, now)
}

var errBadSignature = errors.New("signature does not verify")

// verifySignature checks a JWS signature (RFC 7518 §3.4 for ES256, RFC 8037 §3.1 for EdDSA)
// over the signing input.
func verifySignature(key keyring.AccessTokenKey, signingInput string, sig []byte) error {
	switch key.Algorithm {
	case jose.ES256:
		pub, ok := key.Key.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return errBadSignature
		}
		digest := sha256.Sum256([]byte(signingInput))
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			return errBadSignature
		}
		return nil
	case jose.EdDSA:
		pub, ok := key.Key.(ed25519.PublicKey)
		if !ok || len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, []byte(signingInput), sig) {
			return errBadSignature
		}
		return nil
	}
	return errBadSignature
}
