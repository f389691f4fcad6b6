package keymaterial

import (
	"crypto/rsa"
	"testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// SECURITY-CASES 64 (generation side): every RSA key the controller generates has at least
// MinRSABits (FAPI 2.0 and RFC 7518 §3.3 ask for 2048), and a key of that size decodes.
func TestGeneratedRSAKeysAreAtLeast2048Bits(t *testing.T) {
	if RSABits < MinRSABits || MinRSABits < 2048 {
		t.Fatalf("RSABits %d, MinRSABits %d", RSABits, MinRSABits)
	}
	for _, alg := range []latchkeyv1.SigningAlgorithm{latchkeyv1.AlgorithmRS256, latchkeyv1.AlgorithmPS256} {
		k, err := Generate(alg)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		priv, ok := k.Signer.(*rsa.PrivateKey)
		if !ok {
			t.Fatalf("%s: generated a %T", alg, k.Signer)
		}
		if priv.N.BitLen() < MinRSABits {
			t.Fatalf("%s: generated %d bits", alg, priv.N.BitLen())
		}
	}
}
