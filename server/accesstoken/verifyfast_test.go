package accesstoken_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// VerifyJWKS accepts what Verify accepts, with the same claims, for the algorithms it has a
// fast path for and for those it leaves to Verify.
func TestVerifyJWKSAgreesWithVerify(t *testing.T) {
	for _, alg := range []latchkeyv1.SigningAlgorithm{latchkeyv1.AlgorithmES256, latchkeyv1.AlgorithmEdDSA, latchkeyv1.AlgorithmRS256} {
		t.Run(string(alg), func(t *testing.T) {
			m, kr, _, clk := setup(t, alg)
			jwks, err := kr.JWKS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			tok, err := m.Mint(context.Background(), accesstoken.Params{ClientID: "svc", Subject: "client:svc",
				Audience: []string{"api"}, Scope: "read", Roles: []string{"r"}, Lifetime: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			want, err := accesstoken.Verify(tok.Raw, jwks.Keys, servertest.Issuer, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			got, err := accesstoken.VerifyJWKS(tok.Raw, jwks, servertest.Issuer, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("VerifyJWKS %+v, Verify %+v", got, want)
			}
			_, fast := jwks.AccessTokenKey(strings.SplitN(tok.Raw, ".", 2)[0])
			if wantFast := alg != latchkeyv1.AlgorithmRS256; fast != wantFast {
				t.Fatalf("fast path for %s: %v", alg, fast)
			}

			// The same token for another issuer, and with a changed payload or signature.
			if _, err := accesstoken.VerifyJWKS(tok.Raw, jwks, servertest.Issuer+"/other", clk.Now()); !errors.Is(err, accesstoken.ErrInvalid) {
				t.Errorf("another issuer: %v", err)
			}
			parts := strings.Split(tok.Raw, ".")
			for name, raw := range map[string]string{
				"payload of another token": parts[0] + "." + strings.Split(mintOther(t, m), ".")[1] + "." + parts[2],
				"signature cut":            parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4],
				"signature of zeros":       parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
				"padding":                  tok.Raw + "=",
				"two signatures":           tok.Raw + "." + parts[2],
				"empty":                    "",
			} {
				if _, err := accesstoken.VerifyJWKS(raw, jwks, servertest.Issuer, clk.Now()); !errors.Is(err, accesstoken.ErrInvalid) {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

// A signature whose base64url has stray low bits in its last character is the same bytes to a
// lenient decoder; the fast path does not take it, and the general path decides.
func TestVerifyJWKSNonCanonicalSignature(t *testing.T) {
	m, kr, _, clk := setup(t, latchkeyv1.AlgorithmES256)
	jwks, err := kr.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.Mint(context.Background(), accesstoken.Params{ClientID: "svc", Subject: "client:svc",
		Audience: []string{"api"}, Scope: "read", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// 64 bytes are 86 base64url characters; the last carries 4 bits and 2 unused ones.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok.Raw[len(tok.Raw)-1])
	tweaked := tok.Raw[:len(tok.Raw)-1] + string(alphabet[last^1])
	_, gotErr := accesstoken.VerifyJWKS(tweaked, jwks, servertest.Issuer, clk.Now())
	_, wantErr := accesstoken.Verify(tweaked, jwks.Keys, servertest.Issuer, clk.Now())
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("VerifyJWKS %v, Verify %v", gotErr, wantErr)
	}
}

func mintOther(t *testing.T, m *accesstoken.Minter) string {
	t.Helper()
	tok, err := m.Mint(context.Background(), accesstoken.Params{ClientID: "svc", Subject: "client:other",
		Audience: []string{"api"}, Scope: "admin", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Raw
}

// BenchmarkVerifyAccessToken is introspection's check of an ES256 access token: through
// go-jose (Verify, as before) and through the exact-header fast path (VerifyJWKS).
func BenchmarkVerifyAccessToken(b *testing.B) {
	m, kr, _, clk := setup(b, latchkeyv1.AlgorithmES256)
	jwks, err := kr.JWKS(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	tok, err := m.Mint(context.Background(), accesstoken.Params{ClientID: "svc", Subject: "client:svc",
		Audience: []string{"notes-api"}, Scope: "notes.read notes.write", Lifetime: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("go-jose", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := accesstoken.Verify(tok.Raw, jwks.Keys, servertest.Issuer, clk.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("exact-header", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := accesstoken.VerifyJWKS(tok.Raw, jwks, servertest.Issuer, clk.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
