package keyring_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/keyring"
)

func newKeyring(objs ...client.Object) (*keyring.Keyring, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(servertest.Epoch)
	return keyring.New(keyring.Options{Reader: servertest.NewReader(objs...), Namespace: servertest.Namespace,
		SigningKey: "default", Clock: clk}), clk
}

func TestSignerNeedsAPublishedActiveKey(t *testing.T) {
	ctx := context.Background()
	ks := servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, servertest.Epoch)

	kr, _ := newKeyring()
	if _, err := kr.Signer(ctx); !errors.Is(err, keyring.ErrNoSigningKey) {
		t.Fatalf("no SigningKey: %v", err)
	}
	kr, _ = newKeyring(ks.SigningKey, ks.Secrets[0])
	if _, err := kr.Signer(ctx); !errors.Is(err, keyring.ErrNoSigningKey) {
		t.Fatalf("no ConfigMap: %v", err)
	}
	kr, clk := newKeyring(ks.Objects()...)
	s, err := kr.Signer(ctx)
	if err != nil || s.KeyID != ks.Keys[0].KeyID {
		t.Fatalf("signer %v %v", s, err)
	}
	again, _ := kr.Signer(ctx)
	if again != s {
		t.Fatal("the signer is rebuilt per call")
	}
	clk.Step(721 * time.Hour)
	if _, err := kr.Signer(ctx); !errors.Is(err, keyring.ErrNoSigningKey) {
		t.Fatalf("after the window: %v", err)
	}
}

// Case 70: only public keys with a kid and a usable alg are published, whatever the ConfigMap
// holds.
func TestJWKSFiltersConfigMap(t *testing.T) {
	ks := servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, servertest.Epoch)
	priv := ks.Keys[0].SigningJWK() // a private key that found its way into the ConfigMap
	doc := `{"keys":[` + string(mustJSON(t, ks.Keys[0].PublicJWK())) + `,` + string(mustJSON(t, priv)) +
		`,{"kty":"oct","k":"c2VjcmV0","kid":"sym","alg":"HS256"}]}`
	ks.ConfigMap.Data[latchkeyv1.JWKSDataKey] = doc
	kr, _ := newKeyring(ks.Objects()...)
	jwks, err := kr.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 1 || strings.Contains(string(jwks.Document), `"d"`) || strings.Contains(string(jwks.Document), `"k"`) {
		t.Fatalf("jwks %s", jwks.Document)
	}
}

func mustJSON(t *testing.T, k jose.JSONWebKey) []byte {
	t.Helper()
	b, err := k.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
