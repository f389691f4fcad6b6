package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// rawClaims is the payload of the raw workloads: the claims of a client_credentials access
// token of the --dev sample client, the same size as what the server signs.
func rawClaims() ([]byte, error) {
	now := time.Now().Unix()
	return json.Marshal(map[string]any{
		"iss": defaultIssuer, "sub": "client:" + defaultClientID, "aud": defaultAudience,
		"exp": now + 900, "iat": now, "jti": "kVq0c3cFQ3a1rXk2J7pHnA", "client_id": defaultClientID,
		"scope": "notes.read notes.write",
	})
}

// rawSigner is go-jose's ES256 signer as a server would hold it: built once, header typ
// "at+jwt" and a kid.
func rawSigner() (jose.Signer, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	s, err := newJoseSigner(jose.ES256, key)
	if err != nil {
		return nil, nil, err
	}
	return s, key, nil
}

func newJoseSigner(alg jose.SignatureAlgorithm, key any) (jose.Signer, error) {
	return jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: "raw"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
}

// algSigner is a go-jose signer of alg with a fresh key: ES256 (P-256), RS256 (RSA 2048, the
// size Latchkey generates) or EdDSA (Ed25519).
func algSigner(alg jose.SignatureAlgorithm) (jose.Signer, error) {
	var key any
	var err error
	switch alg {
	case jose.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("no raw signer for %s", alg)
	}
	if err != nil {
		return nil, err
	}
	return newJoseSigner(alg, key)
}

// rawSign is the limit of a token endpoint that signs with go-jose: Sign and CompactSerialize
// of a ready payload, nothing else (no claims to build, no HTTP, no store). The ES256 rate is
// the one the token paths are measured against; RS256 and EdDSA are for the comparison of
// algorithms.
func rawSign(alg jose.SignatureAlgorithm) (newWorkerFunc, error) {
	payload, err := rawClaims()
	if err != nil {
		return nil, err
	}
	signer, err := algSigner(alg)
	if err != nil {
		return nil, err
	}
	return func(context.Context, int) (op, error) {
		return func(context.Context) error {
			jws, err := signer.Sign(payload)
			if err != nil {
				return err
			}
			_, err = jws.CompactSerialize()
			return err
		}, nil
	}, nil
}

// rawVerify is the limit of anything that checks an ES256 token with go-jose:
// ParseSignedCompact and Verify with the public key, no claim checks.
func rawVerify() (newWorkerFunc, error) {
	payload, err := rawClaims()
	if err != nil {
		return nil, err
	}
	signer, key, err := rawSigner()
	if err != nil {
		return nil, err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return nil, err
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return nil, err
	}
	algs := []jose.SignatureAlgorithm{jose.ES256}
	return func(context.Context, int) (op, error) {
		return func(context.Context) error {
			jws, err := jose.ParseSignedCompact(tok, algs)
			if err != nil {
				return err
			}
			if _, err := jws.Verify(&key.PublicKey); err != nil {
				return fmt.Errorf("raw verify: %w", err)
			}
			return nil
		}, nil
	}, nil
}
