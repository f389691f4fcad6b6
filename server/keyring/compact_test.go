package keyring_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
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

// SignAccessToken and SignIDToken (the fast path for ES256 and EdDSA, go-jose for RSA) make
// tokens that go-jose verifies with the public key, with the header RFC 9068 §2.1 asks for an
// access token (typ "at+jwt") and typ "JWT" for an ID token, byte for byte what go-jose writes.
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
				for range 20 { // ECDSA r and s are sometimes shorter than 32 bytes: padding must hold
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
				// The header is the one go-jose writes for the same key.
				joseJWS, err := kind.jose.Sign(payload)
				if err != nil {
					t.Fatal(err)
				}
				joseRaw, err := joseJWS.CompactSerialize()
				if err != nil {
					t.Fatal(err)
				}
				fast, _ := kind.sign(payload)
				if a, b := strings.Split(fast, ".")[0], strings.Split(joseRaw, ".")[0]; a != b {
					t.Fatalf("header %s, go-jose writes %s", decode(t, a), decode(t, b))
				}
			})
		}
	}
}

func decode(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// AccessTokenKey finds an ES256 or EdDSA key by the exact header segment of its tokens, and
// nothing else: not an RSA key, not a header with the members in another order or another typ.
func TestAccessTokenKey(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			ks := servertest.NewSigningKey(t, servertest.Namespace, "default", alg, servertest.Epoch)
			kr, _ := newKeyring(ks.Objects()...)
			jwks, err := kr.JWKS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			s, err := keyring.NewSigner(ks.Keys[0])
			if err != nil {
				t.Fatal(err)
			}
			raw, err := s.SignAccessToken([]byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := jwks.AccessTokenKey(strings.Split(raw, ".")[0])
			fast := alg == latchkeyv1.AlgorithmES256 || alg == latchkeyv1.AlgorithmEdDSA
			if ok != fast {
				t.Fatalf("AccessTokenKey found = %v, want %v", ok, fast)
			}
			if fast && (got.Algorithm != jose.SignatureAlgorithm(alg) || got.Key == nil) {
				t.Fatalf("key %+v", got)
			}
			for _, hdr := range []map[string]string{
				{"alg": string(alg), "kid": ks.Keys[0].KeyID, "typ": "JWT"},
				{"alg": string(alg), "kid": ks.Keys[0].KeyID},
				{"alg": "HS256", "kid": ks.Keys[0].KeyID, "typ": "at+jwt"},
			} {
				b, _ := json.Marshal(hdr)
				if _, ok := jwks.AccessTokenKey(base64.RawURLEncoding.EncodeToString(b)); ok {
					t.Fatalf("header %s matched", b)
				}
			}
		})
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

// BenchmarkSignAccessToken is the signature of a client_credentials token's payload: go-jose's
// Sign and CompactSerialize (as before), and SignAccessToken's fixed header and direct
// crypto/ecdsa or crypto/ed25519 call.
func BenchmarkSignAccessToken(b *testing.B) {
	payload := []byte(`{"iss":"http://127.0.0.1:8080","sub":"client:demo-service","aud":"notes-api","exp":1900000900,"iat":1900000000,"jti":"kVq0c3cFQ3a1rXk2J7pHnA","client_id":"demo-service","scope":"notes.read notes.write"}`)
	for _, alg := range []latchkeyv1.SigningAlgorithm{latchkeyv1.AlgorithmES256, latchkeyv1.AlgorithmEdDSA} {
		key, err := keymaterial.Generate(alg)
		if err != nil {
			b.Fatal(err)
		}
		s, err := keyring.NewSigner(key)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(alg)+"/go-jose", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				jws, err := s.Signer.Sign(payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := jws.CompactSerialize(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/compact", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.SignAccessToken(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
