// Package keymaterial is the one piece of logic the SigningKey controller and the token server
// share: generating signing keys, and encoding them into and decoding them from the key Secrets
// whose layout api/v1alpha1/wellknown.go fixes. The controller writes what Encode returns; the
// server signs with what Decode returns. Keeping both directions here means they cannot drift.
package keymaterial

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// RSABits is the size of generated RSA keys. MinRSABits is the smallest RSA key ever accepted
// (FAPI 2.0 and RFC 7518 §3.3 require at least 2048).
const (
	RSABits    = 3072
	MinRSABits = 2048
)

// ErrInvalid marks key data that cannot be used: bad PEM, a kid that is not the key's
// thumbprint, an algorithm that does not fit the key, or a weak key.
var ErrInvalid = errors.New("invalid key material")

// Key is a decoded signing key.
type Key struct {
	// KeyID is the RFC 7638 thumbprint of the public key.
	KeyID string
	// Algorithm is the JWS algorithm the key signs with.
	Algorithm latchkeyv1.SigningAlgorithm
	// Signer is the private key.
	Signer crypto.Signer
}

// Generate makes a new private key for alg from crypto/rand.
func Generate(alg latchkeyv1.SigningAlgorithm) (*Key, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch alg {
	case latchkeyv1.AlgorithmRS256, latchkeyv1.AlgorithmPS256:
		signer, err = rsa.GenerateKey(rand.Reader, RSABits)
	case latchkeyv1.AlgorithmES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case latchkeyv1.AlgorithmEdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("generate key: unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	kid, err := Thumbprint(signer.Public())
	if err != nil {
		return nil, err
	}
	return &Key{KeyID: kid, Algorithm: alg, Signer: signer}, nil
}

// Thumbprint is the RFC 7638 SHA-256 JWK thumbprint of pub, base64url without padding.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// SecretData is the Data of the Secret that stores k.
func (k *Key) SecretData() (map[string][]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return map[string][]byte{
		latchkeyv1.KeyDataPrivateKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		latchkeyv1.KeyDataKeyID:      []byte(k.KeyID),
		latchkeyv1.KeyDataAlgorithm:  []byte(k.Algorithm),
	}, nil
}

// Decode reads a key Secret. Every inconsistency is ErrInvalid: a corrupt Secret must never sign.
func Decode(s *corev1.Secret) (*Key, error) {
	block, rest := pem.Decode(s.Data[latchkeyv1.KeyDataPrivateKey])
	if block == nil || block.Type != "PRIVATE KEY" || len(rest) > 0 && len(trimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: %s is not one PKCS#8 PEM block", ErrInvalid, latchkeyv1.KeyDataPrivateKey)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parse private key: %v", ErrInvalid, err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: private key is not a signer", ErrInvalid)
	}
	alg := latchkeyv1.SigningAlgorithm(s.Data[latchkeyv1.KeyDataAlgorithm])
	if err := checkAlgorithm(alg, signer); err != nil {
		return nil, err
	}
	kid, err := Thumbprint(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if got := string(s.Data[latchkeyv1.KeyDataKeyID]); got != kid {
		return nil, fmt.Errorf("%w: kid %q is not the key's thumbprint", ErrInvalid, got)
	}
	return &Key{KeyID: kid, Algorithm: alg, Signer: signer}, nil
}

func checkAlgorithm(alg latchkeyv1.SigningAlgorithm, signer crypto.Signer) error {
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		if alg != latchkeyv1.AlgorithmRS256 && alg != latchkeyv1.AlgorithmPS256 {
			return fmt.Errorf("%w: RSA key with algorithm %q", ErrInvalid, alg)
		}
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("%w: RSA key of %d bits, at least %d required", ErrInvalid, k.N.BitLen(), MinRSABits)
		}
	case *ecdsa.PrivateKey:
		if alg != latchkeyv1.AlgorithmES256 || k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: EC key with algorithm %q", ErrInvalid, alg)
		}
	case ed25519.PrivateKey:
		if alg != latchkeyv1.AlgorithmEdDSA {
			return fmt.Errorf("%w: Ed25519 key with algorithm %q", ErrInvalid, alg)
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrInvalid, signer)
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r' || b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// PublicJWK is the public half of k as a JWK with kid, alg and use "sig" (RFC 7517 §4).
func (k *Key) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.KeyID, Algorithm: string(k.Algorithm), Use: "sig"}
}

// SigningJWK is the private key as a JWK, ready for jose.NewSigner.
func (k *Key) SigningJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer, KeyID: k.KeyID, Algorithm: string(k.Algorithm), Use: "sig"}
}

// MarshalJWKS encodes public keys as a JWKS document. It refuses any private or symmetric key so
// that a programming error can never publish secret material.
func MarshalJWKS(keys []jose.JSONWebKey) ([]byte, error) {
	for _, k := range keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("marshal jwks: key %q is not a public key", k.KeyID)
		}
	}
	if keys == nil {
		keys = []jose.JSONWebKey{}
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("marshal jwks: %w", err)
	}
	return b, nil
}

// ParseJWKS decodes a JWKS document and keeps only public signature keys of an allowed algorithm.
func ParseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	out := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, k := range set.Keys {
		if k.IsPublic() && k.Valid() && (k.Use == "" || k.Use == "sig") {
			out = append(out, k)
		}
	}
	return out, nil
}

// Timeline is the life of one key, recorded as annotations on its Secret.
type Timeline struct {
	CreatedAt   time.Time
	ActivatesAt time.Time
	RetiresAt   time.Time
}

// ParseTimeline reads a key Secret's timeline annotations.
func ParseTimeline(s *corev1.Secret) (Timeline, error) {
	var t Timeline
	for _, f := range []struct {
		key string
		dst *time.Time
	}{
		{latchkeyv1.AnnotationKeyCreatedAt, &t.CreatedAt},
		{latchkeyv1.AnnotationKeyActivatesAt, &t.ActivatesAt},
		{latchkeyv1.AnnotationKeyRetiresAt, &t.RetiresAt},
	} {
		v, ok := s.Annotations[f.key]
		if !ok {
			return Timeline{}, fmt.Errorf("%w: annotation %s missing", ErrInvalid, f.key)
		}
		parsed, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return Timeline{}, fmt.Errorf("%w: annotation %s: %v", ErrInvalid, f.key, err)
		}
		*f.dst = parsed
	}
	if t.RetiresAt.Before(t.ActivatesAt) {
		return Timeline{}, fmt.Errorf("%w: retires before it activates", ErrInvalid)
	}
	return t, nil
}

// Annotations encodes t as key Secret annotations (RFC 3339, second precision).
func (t Timeline) Annotations() map[string]string {
	return map[string]string{
		latchkeyv1.AnnotationKeyCreatedAt:   t.CreatedAt.UTC().Format(time.RFC3339),
		latchkeyv1.AnnotationKeyActivatesAt: t.ActivatesAt.UTC().Format(time.RFC3339),
		latchkeyv1.AnnotationKeyRetiresAt:   t.RetiresAt.UTC().Format(time.RFC3339),
	}
}
