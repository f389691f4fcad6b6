package keyring

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// compactSigner signs access tokens as compact JWS (RFC 7515 §7.1) without go-jose's general
// machinery, which on every call marshals the protected header through reflection, builds a
// JSON-serialization object and copies the signature around: a key's protected header never
// changes, so it is encoded once, and ES256 and EdDSA signatures are made with crypto/ecdsa and
// crypto/ed25519 directly. The token is byte for byte what go-jose would produce for the same
// header (members in go-jose's sorted order) and signature; the tests check that go-jose
// verifies it. RSA keys keep go-jose (sign is nil): an RSA signature costs 15-40 times an
// ES256 one, so nothing around it matters.
type compactSigner struct {
	// header is the base64url of the protected header followed by ".".
	header string
	// sign returns the JWS signature of the signing input (RFC 7515 §5.1 step 5).
	sign func(signingInput []byte) ([]byte, error)
	// sigLen is the signature's length in bytes.
	sigLen int
}

// atHeader is the protected header of an access token: alg, kid and typ "at+jwt"
// (RFC 9068 §2.1), in the order go-jose writes them.
type atHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// newCompactSigner returns the fast signer of key for tokens of type typ ("at+jwt" for access
// tokens, "JWT" for ID tokens), or nil when the algorithm has none.
func newCompactSigner(key *keymaterial.Key, typ string) (*compactSigner, error) {
	hdr, err := json.Marshal(atHeader{Alg: string(key.Algorithm), Kid: key.KeyID, Typ: typ})
	if err != nil {
		return nil, fmt.Errorf("access token header: %w", err)
	}
	cs := &compactSigner{header: base64.RawURLEncoding.EncodeToString(hdr) + "."}
	switch k := key.Signer.(type) {
	case *ecdsa.PrivateKey:
		if jose.SignatureAlgorithm(key.Algorithm) != jose.ES256 || k.Curve != elliptic.P256() {
			return nil, nil
		}
		cs.sigLen = 64
		cs.sign = func(in []byte) ([]byte, error) { return signES256(k, in) }
	case ed25519.PrivateKey:
		if jose.SignatureAlgorithm(key.Algorithm) != jose.EdDSA {
			return nil, nil
		}
		cs.sigLen = ed25519.SignatureSize
		cs.sign = func(in []byte) ([]byte, error) { return ed25519.Sign(k, in), nil }
	default:
		return nil, nil
	}
	return cs, nil
}

// signES256 is RFC 7518 §3.4: ECDSA P-256 over SHA-256 of the input, with crypto/rand (Go's
// ECDSA hedges the nonce with the key and the digest), serialized as the 32-byte big-endian r
// followed by the 32-byte s.
func signES256(k *ecdsa.PrivateKey, in []byte) ([]byte, error) {
	digest := sha256.Sum256(in)
	der, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		return nil, err
	}
	var (
		sig        [64]byte
		seq        cryptobyte.String
		rInt, sInt []byte
	)
	input := cryptobyte.String(der)
	if !input.ReadASN1(&seq, asn1.SEQUENCE) || !input.Empty() ||
		!seq.ReadASN1Integer(&rInt) || !seq.ReadASN1Integer(&sInt) || !seq.Empty() ||
		len(rInt) > 32 || len(sInt) > 32 {
		return nil, errors.New("es256: malformed signature from crypto/ecdsa")
	}
	copy(sig[32-len(rInt):32], rInt)
	copy(sig[64-len(sInt):], sInt)
	return sig[:], nil
}

// scratch holds the buffers the tokens are assembled in before they are copied into their
// string: a token is signed per request, and the buffers would otherwise be garbage at once.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxScratch bounds the buffers kept in scratch (a token with many roles is not kept).
const maxScratch = 4096

// signCompact returns header.payload.signature, base64url without padding.
func (cs *compactSigner) signCompact(payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	bp := scratch.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxScratch {
			scratch.Put(bp)
		}
	}()
	buf := slices.Grow((*bp)[:0], len(cs.header)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(cs.sigLen))
	*bp = buf
	buf = append(buf, cs.header...)
	buf = enc.AppendEncode(buf, payload)
	sig, err := cs.sign(buf)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// SignAccessToken signs payload, the JSON claims of an access token, as a compact JWS whose
// protected header holds the key's alg, its kid and typ "at+jwt" (RFC 9068 §2.1). It is the
// same token Signer.Sign and CompactSerialize produce, made without go-jose for ES256 and
// EdDSA keys.
func (s *Signer) SignAccessToken(payload []byte) (string, error) {
	if s.compact != nil {
		return s.compact.signCompact(payload)
	}
	jws, err := s.Signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("serialize: %w", err)
	}
	return raw, nil
}

// SignIDToken signs payload, the JSON claims of an OpenID Connect ID token, as a compact JWS
// whose protected header holds the key's alg, its kid and typ "JWT": the token IDToken.Sign and
// CompactSerialize produce, made without go-jose for ES256 and EdDSA keys. An openid refresh
// signs one per rotation, next to the access token.
func (s *Signer) SignIDToken(payload []byte) (string, error) {
	if s.idCompact != nil {
		return s.idCompact.signCompact(payload)
	}
	jws, err := s.IDToken.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("serialize: %w", err)
	}
	return raw, nil
}

// AccessTokenKey is a published key that verifies access tokens whose protected header is
// exactly the one SignAccessToken writes for it.
type AccessTokenKey struct {
	// Algorithm is ES256 or EdDSA, decided by the key (Algorithm), never by a token.
	Algorithm jose.SignatureAlgorithm
	// Key is the public key: *ecdsa.PublicKey (P-256) or ed25519.PublicKey.
	Key any
}

// AccessTokenKey returns the key whose access tokens start with headerSegment, the base64url
// protected header before the first '.'. Only the exact bytes this server writes match, so
// the header needs no parsing at all: alg, kid and typ are known from the match, and any
// other header (another member order, extra members such as crit or jwk, another typ) is left
// to the general path, which parses and checks it. ok is false for such headers and for RSA
// keys.
func (j *JWKS) AccessTokenKey(headerSegment string) (AccessTokenKey, bool) {
	k, ok := j.atHeaders[headerSegment]
	return k, ok
}

// accessTokenHeaders builds the index of AccessTokenKey.
func accessTokenHeaders(keys []jose.JSONWebKey) map[string]AccessTokenKey {
	out := map[string]AccessTokenKey{}
	for _, key := range keys {
		alg, ok := Algorithm(key)
		if !ok || key.KeyID == "" {
			continue
		}
		switch pub := key.Key.(type) {
		case *ecdsa.PublicKey:
			if alg != jose.ES256 || pub.Curve != elliptic.P256() {
				continue
			}
		case ed25519.PublicKey:
			if alg != jose.EdDSA {
				continue
			}
		default:
			continue
		}
		hdr, err := json.Marshal(atHeader{Alg: string(alg), Kid: key.KeyID, Typ: "at+jwt"})
		if err != nil {
			continue
		}
		out[base64.RawURLEncoding.EncodeToString(hdr)] = AccessTokenKey{Algorithm: alg, Key: key.Key}
	}
	return out
}
