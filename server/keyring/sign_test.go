package keyring_test

import (
	"context"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	clocktesting "k8s.io/utils/clock/testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/keyring"
)

var algorithms = []latchkeyv1.SigningAlgorithm{
	latchkeyv1.AlgorithmES256, latchkeyv1.AlgorithmEdDSA, latchkeyv1.AlgorithmRS256, latchkeyv1.AlgorithmPS256,
}

// SignAccessToken and SignIDToken make tokens that go-jose verifies with the public key, with
// the header RFC 9068 §2.1 asks for an access token (typ "at+jwt") and typ "JWT" for an ID
// token.
func TestSignAccessTokenVerifiesWithGoJose(t *testing.T) {
	payload := []byte(`{"iss":"https://auth.example.test","sub":"client:svc","aud":"api","exp":2,"iat":1,"jti":"j","client_id":"svc","scope":"read"}`)
	for _, alg := range algorithms {
		key, err := keymaterial.Generate(alg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := keyring.NewSigner(key)
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []struct {
			typ  string
			sign func([]byte) (string, error)
			jose jose.Signer
		}{
			{"at+jwt", s.SignAccessToken, s.Signer},
			{"JWT", s.SignIDToken, s.IDToken},
		} {
			t.Run(string(alg)+"/"+kind.typ, func(t *testing.T) {
				for range 20 { // ECDSA r and s are sometimes shorter than 32 bytes
					raw, err := kind.sign(payload)
					if err != nil {
						t.Fatal(err)
					}
					jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
					if err != nil {
						t.Fatal(err)
					}
					got, err := jws.Verify(key.Signer.Public())
					if err != nil {
						t.Fatalf("go-jose does not verify the token: %v", err)
					}
					if string(got) != string(payload) {
						t.Fatalf("payload %s", got)
					}
					h := jws.Signatures[0].Protected
					if h.KeyID != key.KeyID || h.Algorithm != string(alg) || h.ExtraHeaders[jose.HeaderType] != kind.typ {
						t.Fatalf("header %+v", h)
					}
				}
			})
		}
	}
}

// With a revision.Source reader, the keys are read once per revision, and a revocation or a
// new ConfigMap through the reader is seen by the next call (decision D6).
func TestSignerRevision(t *testing.T) {
	ctx := context.Background()
	ks := servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, servertest.Epoch)
	rc := revision.NewClient(servertest.NewReader(ks.Objects()...))
	clk := clocktesting.NewFakeClock(servertest.Epoch)
	kr := keyring.New(keyring.Options{Reader: rc, Namespace: servertest.Namespace, SigningKey: "default", Clock: clk})

	s, err := kr.Signer(ctx)
	if err != nil || s.KeyID != ks.Keys[0].KeyID {
		t.Fatalf("signer %v %v", s, err)
	}
	j1, err := kr.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if j2, _ := kr.JWKS(ctx); j2 != j1 {
		t.Fatal("JWKS rebuilt at the same revision")
	}
	// The time still decides which key is active, also from the memo.
	clk.Step(721 * time.Hour)
	if _, err := kr.Signer(ctx); !errors.Is(err, keyring.ErrNoSigningKey) {
		t.Fatalf("after the window: %v", err)
	}
	clk.SetTime(servertest.Epoch)

	sk := ks.SigningKey.DeepCopy()
	sk.Spec.RevokedKeyIDs = []string{ks.Keys[0].KeyID}
	servertest.Update(t, rc, sk)
	if _, err := kr.Signer(ctx); !errors.Is(err, keyring.ErrNoSigningKey) {
		t.Fatalf("a revoked key still signs: %v", err)
	}
	j3, err := kr.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := j3.Keys[ks.Keys[0].KeyID]; ok {
		t.Fatal("a revoked key is still published")
	}
}

// BenchmarkSignAccessToken is the signature of a client_credentials token's payload with the
// signer built once per key, for each algorithm the server offers (docs/benchmarks.md).
func BenchmarkSignAccessToken(b *testing.B) {
	payload := []byte(`{"iss":"http://127.0.0.1:8080","sub":"client:demo-service","aud":"notes-api","exp":1900000900,"iat":1900000000,"jti":"kVq0c3cFQ3a1rXk2J7pHnA","client_id":"demo-service","scope":"notes.read notes.write"}`)
	for _, alg := range algorithms {
		key, err := keymaterial.Generate(alg)
		if err != nil {
			b.Fatal(err)
		}
		s, err := keyring.NewSigner(key)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.SignAccessToken(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
