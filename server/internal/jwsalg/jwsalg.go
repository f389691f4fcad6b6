// Package jwsalg decides which JWS algorithm a public key verifies, from the key and an
// allow-list, never from a token header (RFC 8725 §2.1, §3.1).
package jwsalg

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// MinRSABits is the smallest RSA key accepted (RFC 7518 §3.3, FAPI 2.0).
const MinRSABits = 2048

// Server is the allow-list for Latchkey's own keys: the SigningKey algorithms.
var Server = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// Client is the allow-list for private_key_jwt client assertions: asymmetric algorithms only,
// never none or HS* (RFC 7523 §3, RFC 8725 §3.1).
var Client = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// ForKey returns the algorithm key verifies: its "alg" when that is in allowed and fits the key
// type; without an "alg", the one algorithm a P-256/P-384/P-521 or Ed25519 key implies. An RSA
// key without "alg" fits several algorithms; it gets none, so a token header cannot pick
// between them. RSA keys under MinRSABits, private keys and symmetric keys get none.
func ForKey(key jose.JSONWebKey, allowed []jose.SignatureAlgorithm) (jose.SignatureAlgorithm, bool) {
	if !key.IsPublic() {
		return "", false
	}
	var fits []jose.SignatureAlgorithm
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return "", false
		}
		fits = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			fits = []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			fits = []jose.SignatureAlgorithm{jose.ES384}
		case elliptic.P521():
			fits = []jose.SignatureAlgorithm{jose.ES512}
		}
	case ed25519.PublicKey:
		fits = []jose.SignatureAlgorithm{jose.EdDSA}
	}
	if key.Algorithm != "" {
		alg := jose.SignatureAlgorithm(key.Algorithm)
		if slices.Contains(fits, alg) && slices.Contains(allowed, alg) {
			return alg, true
		}
		return "", false
	}
	if len(fits) == 1 && slices.Contains(allowed, fits[0]) {
		return fits[0], true
	}
	return "", false
}
