package accesstoken_test

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
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/keyring"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

func setup(t testing.TB, alg latchkeyv1.SigningAlgorithm) (*accesstoken.Minter, *keyring.Keyring, *servertest.KeySet, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(servertest.Epoch)
	ks := servertest.NewSigningKey(t, servertest.Namespace, "default", alg, clk.Now())
	kr := keyring.New(keyring.Options{Reader: servertest.NewReader(ks.Objects()...), Namespace: servertest.Namespace,
		SigningKey: "default", Clock: clk})
	return &accesstoken.Minter{Issuer: servertest.Issuer, Keys: kr, Clock: clk}, kr, ks, clk
}

// Case 53 for every algorithm a SigningKey can have.
func TestMintAndVerify(t *testing.T) {
	algs := []latchkeyv1.SigningAlgorithm{latchkeyv1.AlgorithmES256, latchkeyv1.AlgorithmEdDSA}
	if !testing.Short() {
		algs = append(algs, latchkeyv1.AlgorithmRS256, latchkeyv1.AlgorithmPS256)
	}
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			m, kr, ks, clk := setup(t, alg)
			fam := tokenid.NewFamilyID()
			tok, err := m.Mint(context.Background(), accesstoken.Params{ClientID: "web", Subject: "alice",
				Audience: []string{"https://api"}, Scope: "openid read", Roles: []string{"admin"}, Family: fam,
				Lifetime: 15 * time.Minute, AuthTime: clk.Now().Add(-time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			jwks, err := kr.JWKS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			c, err := accesstoken.Verify(tok.Raw, jwks.Keys, servertest.Issuer, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			if c.Family() != fam || c.Subject != "alice" || c.Roles[0] != "admin" || c.Expiry != clk.Now().Add(15*time.Minute).Unix() ||
				tok.Record.Family != fam || tok.Record.JTI != c.ID || tok.Record.ClientID != "web" {
				t.Fatalf("claims %+v record %+v", c, tok.Record)
			}
			h, _ := json.Marshal(jwsHeader(t, tok.Raw))
			want := `{"alg":"` + string(alg) + `","kid":"` + ks.Keys[0].KeyID + `","typ":"at+jwt"}`
			if string(h) != want {
				t.Fatalf("header %s, want %s", h, want)
			}
		})
	}
}

func jwsHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// Case 54, 57, 58, 60, 62 as they concern introspection's own verification.
func TestVerifyRejects(t *testing.T) {
	m, kr, ks, clk := setup(t, latchkeyv1.AlgorithmES256)
	jwks, err := kr.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	good, err := m.Mint(context.Background(), accesstoken.Params{ClientID: "svc", Subject: "client:svc",
		Audience: []string{"x"}, Scope: "read", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	key := ks.Keys[0]
	claims := good.Claims
	sign := func(alg jose.SignatureAlgorithm, k any, hdr map[jose.HeaderKey]any, payload any) string {
		opts := &jose.SignerOptions{}
		for hk, v := range hdr {
			opts = opts.WithHeader(hk, v)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, opts)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(payload)
		jws, err := s.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := jws.CompactSerialize()
		return out
	}
	other, _ := keymaterial.Generate(latchkeyv1.AlgorithmES256)
	pubJSON, _ := json.Marshal(key.PublicJWK())
	at := map[jose.HeaderKey]any{"typ": "at+jwt", "kid": key.KeyID}
	withClaim := func(k string, v any) map[string]any {
		b, _ := json.Marshal(claims)
		var mm map[string]any
		_ = json.Unmarshal(b, &mm)
		if v == nil {
			delete(mm, k)
		} else {
			mm[k] = v
		}
		return mm
	}
	for name, raw := range map[string]string{
		"HS256 keyed with the public key": sign(jose.HS256, pubJSON, at, claims),
		"another key, same kid":           sign(jose.ES256, other.Signer, at, claims),
		"unknown kid":                     sign(jose.ES256, key.Signer, map[jose.HeaderKey]any{"typ": "at+jwt", "kid": "nope"}, claims),
		"no kid":                          sign(jose.ES256, key.Signer, map[jose.HeaderKey]any{"typ": "at+jwt"}, claims),
		"typ JWT":                         sign(jose.ES256, key.Signer, map[jose.HeaderKey]any{"typ": "JWT", "kid": key.KeyID}, claims),
		"iss with a trailing slash":       sign(jose.ES256, key.Signer, at, withClaim("iss", servertest.Issuer+"/")),
		"exp as a string":                 sign(jose.ES256, key.Signer, at, withClaim("exp", "9999999999")),
		"no jti":                          sign(jose.ES256, key.Signer, at, withClaim("jti", nil)),
		"no client_id":                    sign(jose.ES256, key.Signer, at, withClaim("client_id", nil)),
		"iat in the future":               sign(jose.ES256, key.Signer, at, withClaim("iat", clk.Now().Add(time.Hour).Unix())),
		"many dots":                       strings.Repeat(".", 100000),
		"JSON serialization":              `{"payload":"e30","signatures":[]}`,
	} {
		if _, err := accesstoken.Verify(raw, jwks.Keys, servertest.Issuer, clk.Now()); !errors.Is(err, accesstoken.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		// The fast path (the header is byte for byte ours in some of these) rejects them too.
		if _, err := accesstoken.Verify(raw, jwks.Keys, servertest.Issuer, clk.Now()); !errors.Is(err, accesstoken.ErrInvalid) {
			t.Errorf("Verify with the keyring's keys: %s: %v", name, err)
		}
	}
	if !accesstoken.IsATType("application/AT+JWT") || accesstoken.IsATType("jwt") {
		t.Fatal("IsATType")
	}
}

func TestAudienceJSON(t *testing.T) {
	for _, tc := range []struct {
		aud  accesstoken.Audience
		json string
	}{{accesstoken.Audience{"a"}, `"a"`}, {accesstoken.Audience{"a", "b"}, `["a","b"]`}} {
		b, _ := json.Marshal(tc.aud)
		if string(b) != tc.json {
			t.Fatalf("%v: %s", tc.aud, b)
		}
		var back accesstoken.Audience
		if err := json.Unmarshal(b, &back); err != nil || len(back) != len(tc.aud) {
			t.Fatalf("%s: %v %v", b, back, err)
		}
	}
}

// A token recorded before it is signed (the refresh grant) gets the jti and iat it was recorded
// with, so the record's expiry is the token's; a jti of another family is refused.
func TestMintWithPresetJTIAndIssuedAt(t *testing.T) {
	m, _, _, clk := setup(t, latchkeyv1.AlgorithmES256)
	family := tokenid.NewFamilyID()
	jti := tokenid.NewJTI(family)
	iat := clk.Now().Add(-1500 * time.Millisecond)
	p := accesstoken.Params{ClientID: "spa", Subject: "alice", Audience: []string{"api"}, Scope: "read",
		Family: family, Lifetime: time.Minute, JTI: jti, IssuedAt: iat}
	tok, err := m.Mint(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	want := iat.Truncate(time.Second)
	if tok.Claims.ID != jti || tok.Record.JTI != jti || tok.Claims.IssuedAt != want.Unix() ||
		!tok.Record.ExpiresAt.Equal(want.Add(time.Minute)) || tok.Claims.Expiry != want.Add(time.Minute).Unix() {
		t.Fatalf("claims %+v, record %+v", tok.Claims, tok.Record)
	}
	p.JTI = tokenid.NewJTI(tokenid.NewFamilyID())
	if _, err := m.Mint(context.Background(), p); err == nil {
		t.Fatal("a jti of another family was accepted")
	}
	p.JTI = tokenid.NewJTI("")
	if _, err := m.Mint(context.Background(), p); err == nil {
		t.Fatal("a jti outside any family was accepted for a family token")
	}
}
