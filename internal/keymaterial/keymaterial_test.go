package keymaterial

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

func secretFor(t *testing.T, k *Key) *corev1.Secret {
	t.Helper()
	data, err := k.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "k"}, Data: data}
}

func TestRoundTripSignsAndVerifies(t *testing.T) {
	for _, alg := range []latchkeyv1.SigningAlgorithm{latchkeyv1.AlgorithmES256, latchkeyv1.AlgorithmEdDSA, latchkeyv1.AlgorithmPS256, latchkeyv1.AlgorithmRS256} {
		t.Run(string(alg), func(t *testing.T) {
			if testing.Short() && (alg == latchkeyv1.AlgorithmRS256 || alg == latchkeyv1.AlgorithmPS256) {
				return // 3072-bit generation is slow; ES256 covers the round trip in -short.
			}
			k, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(secretFor(t, k))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.KeyID != k.KeyID || got.Algorithm != alg {
				t.Fatalf("decoded %s/%s, want %s/%s", got.KeyID, got.Algorithm, k.KeyID, alg)
			}
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: got.SigningJWK()}, nil)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := signer.Sign([]byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			compact, _ := jws.CompactSerialize()
			parsed, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			pub := k.PublicJWK()
			if _, err := parsed.Verify(pub); err != nil {
				t.Fatalf("verify with published key: %v", err)
			}
			doc, err := MarshalJWKS([]jose.JSONWebKey{pub})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := ParseJWKS(doc)
			if err != nil || len(keys) != 1 || keys[0].KeyID != k.KeyID {
				t.Fatalf("jwks round trip: %v %v", keys, err)
			}
		})
	}
}

func TestDecodeRejectsCorruptSecrets(t *testing.T) {
	k, err := Generate(latchkeyv1.AlgorithmES256)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := Generate(latchkeyv1.AlgorithmES256)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakKey := &Key{KeyID: "x", Algorithm: latchkeyv1.AlgorithmRS256, Signer: weak}
	weakKid, _ := Thumbprint(weak.Public())
	weakKey.KeyID = weakKid

	cases := []struct {
		name   string
		mutate func(s *corev1.Secret)
	}{
		{"a secret with no private key", func(s *corev1.Secret) { delete(s.Data, latchkeyv1.KeyDataPrivateKey) }},
		{"a secret whose PEM is garbage", func(s *corev1.Secret) { s.Data[latchkeyv1.KeyDataPrivateKey] = []byte("not pem") }},
		{"a secret whose PEM holds garbage DER", func(s *corev1.Secret) {
			s.Data[latchkeyv1.KeyDataPrivateKey] = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}},
		{"a secret with no kid", func(s *corev1.Secret) { delete(s.Data, latchkeyv1.KeyDataKeyID) }},
		{"a secret whose kid belongs to another key", func(s *corev1.Secret) { s.Data[latchkeyv1.KeyDataKeyID] = []byte(other.KeyID) }},
		{"a secret whose algorithm does not fit the key", func(s *corev1.Secret) { s.Data[latchkeyv1.KeyDataAlgorithm] = []byte("RS256") }},
		{"a secret whose algorithm is HS256", func(s *corev1.Secret) { s.Data[latchkeyv1.KeyDataAlgorithm] = []byte("HS256") }},
		{"a secret with a 1024-bit RSA key", func(s *corev1.Secret) {
			d, _ := weakKey.SecretData()
			s.Data = d
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := secretFor(t, k)
			tc.mutate(s)
			if _, err := Decode(s); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode() error = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestMarshalJWKSRefusesPrivateKeys(t *testing.T) {
	k, _ := Generate(latchkeyv1.AlgorithmES256)
	if _, err := MarshalJWKS([]jose.JSONWebKey{k.SigningJWK()}); err == nil {
		t.Fatal("MarshalJWKS published a private key")
	}
	doc, err := MarshalJWKS(nil)
	if err != nil || string(doc) != `{"keys":[]}` {
		t.Fatalf("empty jwks = %s, %v", doc, err)
	}
}

func TestTimelineRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tl := Timeline{CreatedAt: now, ActivatesAt: now.Add(time.Hour), RetiresAt: now.Add(721 * time.Hour)}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: tl.Annotations()}}
	got, err := ParseTimeline(s)
	if err != nil || got != tl {
		t.Fatalf("ParseTimeline = %+v, %v; want %+v", got, err, tl)
	}
	s.Annotations[latchkeyv1.AnnotationKeyRetiresAt] = "yesterday"
	if _, err := ParseTimeline(s); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad annotation: %v", err)
	}
}
