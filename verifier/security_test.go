package verifier_test

// One test per case of SECURITY-CASES.md section F (53-62, 64; the section has no case 63).
// Valid tokens are minted with go-jose from internal/keymaterial keys the test issuer publishes;
// forged ones are built byte by byte with forge.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"runtime"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/verifier"
)

var allAlgs = []string{"ES256", "EdDSA", "RS256", "PS256"}

// allKeysIssuer publishes one key per algorithm.
func allKeysIssuer(t *testing.T) (*testIssuer, *verifier.Verifier, *fakeClock) {
	t.Helper()
	iss := newTestIssuer(t, testKey(t, "ES256"), testKey(t, "EdDSA"), testKey(t, "RS256"), testKey(t, "PS256"))
	clk := newClock()
	return iss, newVerifier(t, iss, clk), clk
}

// Case 53: a token as the server issues it (typ at+jwt, an asymmetric alg, a kid in the JWKS,
// iss sub aud exp iat jti client_id scope) verifies for every algorithm, and each required claim
// is required.
func TestCase53IssuedTokenShape(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	for _, alg := range allAlgs {
		t.Run("a "+alg+" token from the issuer verifies", func(t *testing.T) {
			c := acceptToken(t, v, mint(t, testKey(t, alg), iss.claims(), nil))
			if c.Subject() != "alice" || c.ClientID() != "demo-spa" || c.ID() != "jti-1" || c.Issuer() != iss.URL {
				t.Fatalf("claims = %v", c.Raw())
			}
			if !c.ExpiresAt().Equal(t0.Add(15*time.Minute)) || !c.IssuedAt().Equal(t0) {
				t.Fatalf("exp/iat = %v/%v", c.ExpiresAt(), c.IssuedAt())
			}
			if !c.HasScope("notes.read") || !c.HasRole("admin") || c.IsClient() {
				t.Fatalf("scopes %v roles %v", c.Scopes(), c.Roles())
			}
		})
	}
	t.Run("a client_credentials token verifies", func(t *testing.T) {
		c := acceptToken(t, v, mint(t, testKey(t, "ES256"), iss.clientClaims(), nil))
		if !c.IsClient() || len(c.Roles()) != 0 || c.Subject() != "client:demo-service" {
			t.Fatalf("claims = %v", c.Raw())
		}
	})
	for _, claim := range []string{"sub", "exp", "iat", "jti", "client_id"} {
		t.Run("a token without "+claim+" is rejected", func(t *testing.T) {
			rejectToken(t, v, mint(t, testKey(t, "ES256"), with(iss.claims(), map[string]any{claim: nil}), nil), verifier.ErrMissingClaim)
		})
		t.Run("a token with an empty "+claim+" is rejected", func(t *testing.T) {
			var empty any = ""
			if claim == "exp" || claim == "iat" {
				empty = json.RawMessage("null")
			}
			rejectToken(t, v, mint(t, testKey(t, "ES256"), with(iss.claims(), map[string]any{claim: empty}), nil), verifier.ErrMissingClaim)
		})
	}
	t.Run("a token without iss is rejected", func(t *testing.T) {
		rejectToken(t, v, mint(t, testKey(t, "ES256"), with(iss.claims(), map[string]any{"iss": nil}), nil), verifier.ErrIssuer)
	})
	t.Run("a token without aud is rejected", func(t *testing.T) {
		rejectToken(t, v, mint(t, testKey(t, "ES256"), with(iss.claims(), map[string]any{"aud": nil}), nil), verifier.ErrAudience)
	})
	t.Run("a token whose claims are not a JSON object is rejected", func(t *testing.T) {
		for _, payload := range []string{`[]`, `"x"`, `null`, `{`, `{"iss":"a","iss":"a"}`} {
			rejectToken(t, v, forge(t, mustJSON(t, header(testKey(t, "ES256"))), payload, "ES256", testKey(t, "ES256").Signer), verifier.ErrMalformed)
		}
	})
}

// Case 54: alg none (any casing, empty signature) and HS256 keyed with the public key (PEM or
// JWKS bytes) are rejected; the algorithm follows from the key, never from the header alone.
func TestCase54AlgorithmConfusion(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	es := testKey(t, "ES256")
	rs := testKey(t, "RS256")
	for _, none := range []string{"none", "None", "NONE", "nOnE"} {
		t.Run("alg "+none+" with an empty signature is rejected", func(t *testing.T) {
			tok := forge(t, mustJSON(t, map[string]any{"alg": none, "kid": es.KeyID, "typ": "at+jwt"}), mustJSON(t, iss.claims()), none, nil)
			if !strings.HasSuffix(tok, ".") {
				t.Fatalf("forged none token %q has a signature", tok)
			}
			rejectToken(t, v, tok, verifier.ErrAlgorithm)
			rejectToken(t, v, strings.TrimSuffix(tok, "."), verifier.ErrMalformed)
		})
	}
	pemOf := func(k *rsa.PublicKey) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	jwkOf := func(k any) []byte {
		b, err := json.Marshal(jose.JSONWebKey{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	secrets := map[string][]byte{
		"the RSA public key PEM":  pemOf(rs.Signer.Public().(*rsa.PublicKey)),
		"the RSA public key JWK":  jwkOf(rs.Signer.Public()),
		"the EC public key JWK":   jwkOf(es.Signer.Public()),
		"the whole JWKS document": jwksDoc(t, es, rs),
	}
	for name, secret := range secrets {
		for _, kid := range []string{rs.KeyID, es.KeyID} {
			t.Run("HS256 keyed with "+name+" is rejected", func(t *testing.T) {
				tok := forge(t, mustJSON(t, map[string]any{"alg": "HS256", "kid": kid, "typ": "at+jwt"}), mustJSON(t, iss.claims()), "HS256", secret)
				rejectToken(t, v, tok, verifier.ErrAlgorithm)
			})
		}
	}
	t.Run("a header alg that does not match the key's is rejected", func(t *testing.T) {
		// RS256 key (JWK alg RS256) with a PS256 signature: both are RSA, the key decides.
		tok := forge(t, mustJSON(t, map[string]any{"alg": "PS256", "kid": rs.KeyID, "typ": "at+jwt"}), mustJSON(t, iss.claims()), "PS256", rs.Signer)
		rejectToken(t, v, tok, verifier.ErrAlgorithm)
		// An EC key named with an EdDSA header.
		rejectToken(t, v, forge(t, mustJSON(t, map[string]any{"alg": "EdDSA", "kid": es.KeyID, "typ": "at+jwt"}),
			mustJSON(t, iss.claims()), "EdDSA", testKey(t, "EdDSA").Signer), verifier.ErrAlgorithm)
	})
	t.Run("an RSA key without alg in the JWKS verifies RS256 and PS256 but nothing else", func(t *testing.T) {
		jwk := rs.PublicJWK()
		jwk.Algorithm = ""
		doc, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
		iss2 := newTestIssuer(t)
		iss2.SetJWKS(doc)
		v2 := newVerifier(t, iss2, newClock())
		for _, alg := range []string{"RS256", "PS256"} {
			acceptToken(t, v2, forge(t, mustJSON(t, map[string]any{"alg": alg, "kid": rs.KeyID, "typ": "at+jwt"}), mustJSON(t, iss2.claims()), alg, rs.Signer))
		}
		rejectToken(t, v2, forge(t, mustJSON(t, map[string]any{"alg": "HS256", "kid": rs.KeyID, "typ": "at+jwt"}), mustJSON(t, iss2.claims()), "HS256", pemOf(rs.Signer.Public().(*rsa.PublicKey))), verifier.ErrAlgorithm)
	})
	t.Run("an algorithm outside WithAlgorithms is rejected", func(t *testing.T) {
		v2 := newVerifier(t, iss, newClock(), verifier.WithAlgorithms("ES256"))
		acceptToken(t, v2, mint(t, es, iss.claims(), nil))
		rejectToken(t, v2, mint(t, rs, iss.claims(), nil), verifier.ErrAlgorithm)
	})
	for _, algs := range [][]string{{"none"}, {"HS256"}, {"ES256", "HS512"}, {"RS512"}, {}} {
		t.Run("New refuses WithAlgorithms"+strings.Join(algs, ","), func(t *testing.T) {
			_, err := verifier.New(t.Context(), iss.URL, verifier.WithAudience(testAudience),
				verifier.WithHTTPClient(iss.srv.Client()), verifier.WithAlgorithms(algs...))
			if err == nil {
				t.Fatal("New accepted an unsafe or empty algorithm list")
			}
		})
	}
	t.Run("a symmetric key in the JWKS is ignored", func(t *testing.T) {
		secret := []byte("0123456789abcdef0123456789abcdef")
		doc := `{"keys":[{"kty":"oct","kid":"hmac","alg":"HS256","k":"` + base64.RawURLEncoding.EncodeToString(secret) + `"}]}`
		iss2 := newTestIssuer(t)
		iss2.SetJWKS([]byte(doc))
		v2 := newVerifier(t, iss2, newClock(), verifier.WithAlgorithms("ES256"))
		tok := forge(t, mustJSON(t, map[string]any{"alg": "ES256", "kid": "hmac", "typ": "at+jwt"}), mustJSON(t, iss2.claims()), "ES256", es.Signer)
		rejectToken(t, v2, tok, verifier.ErrKeyNotFound)
	})
}

// Case 55: a missing, unknown or hostile kid is rejected; kid is only a map key, and an unknown
// kid costs at most one rate-limited refresh.
func TestCase55HostileKeyIDs(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	es := testKey(t, "ES256")
	before := iss.Fetches()
	kids := map[string]any{
		"missing":            nil,
		"empty":              "",
		"unknown":            "no-such-key",
		"a path":             "../../dev/null",
		"an SQL injection":   "' OR 1=1 --",
		"a number":           42,
		"an object":          map[string]any{"$ne": ""},
		"a NUL byte":         "a\x00b",
		"a kid 1 KB long":    strings.Repeat("k", 1024),
		"the kid with a dot": es.KeyID + ".",
	}
	for name, kid := range kids {
		t.Run("a kid that is "+name+" is rejected", func(t *testing.T) {
			h := header(es)
			if kid == nil {
				delete(h, "kid")
			} else {
				h["kid"] = kid
			}
			_, err := v.Verify(t.Context(), forgeWith(t, es, h, iss.claims()))
			if !errors.Is(err, verifier.ErrKeyNotFound) && !errors.Is(err, verifier.ErrMalformed) {
				t.Fatalf("Verify error = %v; want ErrKeyNotFound or ErrMalformed", err)
			}
		})
	}
	t.Run("a kid of 10 KB is rejected before parsing", func(t *testing.T) {
		h := header(es)
		h["kid"] = strings.Repeat("k", 10<<10)
		rejectToken(t, v, forgeWith(t, es, h, iss.claims()), verifier.ErrMalformed)
	})
	if got := iss.Fetches() - before; got != 0 {
		t.Fatalf("hostile kids within the rate-limit interval caused %d JWKS fetches; want 0", got)
	}
}

// Case 56: jku, x5u, jwk and x5c headers that point to or carry an attacker's key are rejected,
// and nothing is fetched.
func TestCase56EmbeddedOrRemoteKeys(t *testing.T) {
	iss, v, clk := allKeysIssuer(t)
	clk.Advance(time.Hour) // past the rate limit: a refresh would be allowed if anything asked
	atk := attackerKeyFor(t)
	atkJWKS := string(jwksDoc(t, atk))
	attacker := newCountingServer(t, atkJWKS)
	before := iss.Fetches()

	cert := selfSigned(t, atk.Signer.(*ecdsa.PrivateKey))
	pubJWK := atk.PublicJWK()
	cases := map[string]map[string]any{
		"jku to the attacker's JWKS":        {"jku": attacker.URL + "/jwks.json"},
		"x5u to the attacker's certificate": {"x5u": attacker.URL + "/cert.pem"},
		"jwk embedding the attacker's key":  {"jwk": pubJWK},
		"x5c embedding the attacker's cert": {"x5c": []string{base64.StdEncoding.EncodeToString(cert.Raw)}},
	}
	for name, extra := range cases {
		for _, kidName := range []string{"the attacker's kid", "a trusted kid"} {
			t.Run(name+" with "+kidName+" is rejected", func(t *testing.T) {
				h := header(atk)
				if kidName == "a trusted kid" {
					h["kid"] = testKey(t, "ES256").KeyID
				}
				for k, val := range extra {
					h[k] = val
				}
				rejectToken(t, v, forgeWith(t, atk, h, iss.claims()), verifier.ErrHeader)
			})
		}
		t.Run(name+" through go-jose is rejected", func(t *testing.T) {
			ex := map[jose.HeaderKey]any{}
			for k, val := range extra {
				ex[jose.HeaderKey(k)] = val
			}
			rejectToken(t, v, mint(t, atk, iss.claims(), ex), verifier.ErrHeader)
		})
	}
	t.Run("go-jose's EmbedJWK is rejected", func(t *testing.T) {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: atk.Signer},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := signer.Sign([]byte(mustJSON(t, iss.claims())))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := obj.CompactSerialize()
		rejectToken(t, v, tok, verifier.ErrHeader)
	})
	if n := attacker.hits.Load(); n != 0 {
		t.Fatalf("the attacker's server was contacted %d times", n)
	}
	if n := iss.Fetches() - before; n != 0 {
		t.Fatalf("forged headers caused %d JWKS fetches", n)
	}
}

func attackerKeyFor(t testing.TB) *keymaterial.Key {
	testKey(t, "ES256")
	return attackerKey
}

func selfSigned(t testing.TB, k *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "attacker"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Case 57: crit naming anything, b64:false, and the JWS JSON serializations are rejected.
func TestCase57CritB64AndJSONSerialization(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	es := testKey(t, "ES256")
	t.Run("crit naming an unknown extension is rejected", func(t *testing.T) {
		h := header(es)
		h["crit"] = []string{"urn:example:unknown"}
		h["urn:example:unknown"] = true
		rejectToken(t, v, forgeWith(t, es, h, iss.claims()), verifier.ErrHeader)
	})
	t.Run("crit naming a registered claim is rejected", func(t *testing.T) {
		h := header(es)
		h["crit"] = []string{"exp"}
		rejectToken(t, v, forgeWith(t, es, h, iss.claims()), verifier.ErrHeader)
	})
	t.Run("an empty crit is rejected", func(t *testing.T) {
		h := header(es)
		h["crit"] = []string{}
		rejectToken(t, v, forgeWith(t, es, h, iss.claims()), verifier.ErrHeader)
	})
	t.Run("b64 false with crit b64, signed by go-jose, is rejected", func(t *testing.T) {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: es.SigningJWK()},
			(&jose.SignerOptions{}).WithType("at+jwt").WithBase64(false))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := signer.Sign([]byte(mustJSON(t, iss.claims())))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(t.Context(), tok)
		if !errors.Is(err, verifier.ErrHeader) && !errors.Is(err, verifier.ErrMalformed) {
			t.Fatalf("Verify error = %v; want ErrHeader or ErrMalformed", err)
		}
	})
	t.Run("b64 false without crit is rejected", func(t *testing.T) {
		h := header(es)
		h["b64"] = false
		rejectToken(t, v, forgeWith(t, es, h, iss.claims()), verifier.ErrHeader)
	})
	t.Run("b64 true is rejected too", func(t *testing.T) {
		h := header(es)
		h["b64"] = true
		h["crit"] = []string{"b64"}
		rejectToken(t, v, forgeWith(t, es, h, iss.claims()), verifier.ErrHeader)
	})

	signWith := func(t *testing.T, keys ...jose.SigningKey) *jose.JSONWebSignature {
		var signer jose.Signer
		var err error
		opts := (&jose.SignerOptions{}).WithType("at+jwt")
		if len(keys) == 1 {
			signer, err = jose.NewSigner(keys[0], opts)
		} else {
			signer, err = jose.NewMultiSigner(keys, opts)
		}
		if err != nil {
			t.Fatal(err)
		}
		obj, err := signer.Sign([]byte(mustJSON(t, iss.claims())))
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	esKey := jose.SigningKey{Algorithm: jose.ES256, Key: es.SigningJWK()}
	edKey := jose.SigningKey{Algorithm: jose.EdDSA, Key: testKey(t, "EdDSA").SigningJWK()}
	t.Run("the flattened JSON serialization is rejected", func(t *testing.T) {
		full := signWith(t, esKey).FullSerialize()
		if !strings.HasPrefix(full, "{") || strings.Contains(full, `"signatures"`) {
			t.Fatalf("not a flattened JWS: %s", full)
		}
		rejectToken(t, v, full, verifier.ErrMalformed)
	})
	t.Run("the general JSON serialization with several signatures is rejected", func(t *testing.T) {
		full := signWith(t, esKey, edKey).FullSerialize()
		if !strings.Contains(full, `"signatures"`) {
			t.Fatalf("not a general JWS: %s", full)
		}
		rejectToken(t, v, full, verifier.ErrMalformed)
	})
	t.Run("a flattened JWS with an unprotected b64 false header is rejected", func(t *testing.T) {
		tok := mint(t, es, iss.claims(), nil)
		p := strings.Split(tok, ".")
		full := `{"protected":"` + p[0] + `","header":{"b64":false},"payload":"` + p[1] + `","signature":"` + p[2] + `"}`
		rejectToken(t, v, full, verifier.ErrMalformed)
	})
	t.Run("a compact token with whitespace is rejected", func(t *testing.T) {
		tok := mint(t, es, iss.claims(), nil)
		acceptToken(t, v, tok)
		for _, bad := range []string{" " + tok, tok + "\n", strings.Replace(tok, ".", ". ", 1), tok[:10] + "\n" + tok[10:]} {
			rejectToken(t, v, bad, verifier.ErrMalformed)
		}
	})
	t.Run("a detached payload is rejected", func(t *testing.T) {
		tok := mint(t, es, iss.claims(), nil)
		p := strings.Split(tok, ".")
		rejectToken(t, v, p[0]+".."+p[2], verifier.ErrMalformed)
	})
}

// Case 58: typ must be at+jwt or application/at+jwt, case-insensitively; ID tokens, client
// assertions and logout tokens from the same issuer and key are rejected.
func TestCase58TokenType(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	es := testKey(t, "ES256")
	for _, typ := range []string{"at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt", "Application/AT+JWT"} {
		t.Run("typ "+typ+" is accepted", func(t *testing.T) {
			h := header(es)
			h["typ"] = typ
			acceptToken(t, v, forgeWith(t, es, h, iss.claims()))
		})
	}
	rejected := map[string]any{
		"missing":                  nil,
		"JWT (an ID token)":        "JWT",
		"jwt":                      "jwt",
		"id-token":                 "id-token",
		"client-authentication":    "client-authentication+jwt",
		"logout+jwt":               "logout+jwt",
		"at+jwt with a parameter":  "at+jwt; charset=utf-8",
		"at+jwt with a space":      "at+jwt ",
		"application/jwt":          "application/jwt",
		"empty":                    "",
		"a number":                 1,
		"an array":                 []string{"at+jwt"},
		"application/at+jwt+junk ": "application/at+jwtx",
	}
	for name, typ := range rejected {
		t.Run("typ "+name+" is rejected", func(t *testing.T) {
			h := header(es)
			if typ == nil {
				delete(h, "typ")
			} else {
				h["typ"] = typ
			}
			rejectToken(t, v, forgeWith(t, es, h, iss.claims()), verifier.ErrType)
		})
	}
	t.Run("an OIDC ID token from the same issuer and key is rejected", func(t *testing.T) {
		idt := with(iss.claims(), map[string]any{"aud": "demo-spa", "nonce": "n", "auth_time": t0.Unix()})
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: es.SigningJWK()}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		obj, _ := signer.Sign([]byte(mustJSON(t, idt)))
		tok, _ := obj.CompactSerialize()
		rejectToken(t, v, tok, verifier.ErrType)
	})
}

// Case 59: exp is required and numeric; nbf and iat in the future and exp in the past are
// rejected beyond the leeway.
func TestCase59TimeClaims(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	es := testKey(t, "ES256")
	tok := func(changes map[string]any) string { return mint(t, es, with(iss.claims(), changes), nil) }
	leeway := verifier.DefaultLeeway
	s := func(d time.Duration) int64 { return t0.Add(d).Unix() }
	cases := []struct {
		name    string
		changes map[string]any
		want    error // nil: accepted
	}{
		{"a token without exp is rejected", map[string]any{"exp": nil}, verifier.ErrMissingClaim},
		{"a string exp is rejected", map[string]any{"exp": "9999999999"}, verifier.ErrMalformed},
		{"a boolean exp is rejected", map[string]any{"exp": true}, verifier.ErrMalformed},
		{"an object exp is rejected", map[string]any{"exp": map[string]any{"$gt": 0}}, verifier.ErrMalformed},
		{"a negative exp is rejected", map[string]any{"exp": -1}, verifier.ErrMalformed},
		{"an exp beyond year 9999 is rejected", map[string]any{"exp": 1e300}, verifier.ErrMalformed},
		{"a fractional exp is accepted", map[string]any{"exp": float64(s(time.Minute)) + 0.5}, nil},
		{"an exp past by more than the leeway is rejected", map[string]any{"exp": s(-leeway - time.Second)}, verifier.ErrExpired},
		{"an exp past by exactly the leeway is rejected", map[string]any{"exp": s(-leeway)}, verifier.ErrExpired},
		{"an exp past within the leeway is accepted", map[string]any{"exp": s(-leeway + time.Second)}, nil},
		{"an nbf in the future beyond the leeway is rejected", map[string]any{"nbf": s(leeway + time.Second)}, verifier.ErrNotYetValid},
		{"an nbf in the future within the leeway is accepted", map[string]any{"nbf": s(leeway)}, nil},
		{"a string nbf is rejected", map[string]any{"nbf": "0"}, verifier.ErrMalformed},
		{"an iat in the future beyond the leeway is rejected", map[string]any{"iat": s(leeway + time.Second)}, verifier.ErrNotYetValid},
		{"an iat in the future within the leeway is accepted", map[string]any{"iat": s(leeway)}, nil},
		{"a string iat is rejected", map[string]any{"iat": "1700000000"}, verifier.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				acceptToken(t, v, tok(tc.changes))
				return
			}
			rejectToken(t, v, tok(tc.changes), tc.want)
		})
	}
	t.Run("WithLeeway(0) rejects what the default leeway accepts", func(t *testing.T) {
		v0 := newVerifier(t, iss, newClock(), verifier.WithLeeway(0))
		rejectToken(t, v0, tok(map[string]any{"nbf": s(time.Second)}), verifier.ErrNotYetValid)
		rejectToken(t, v0, tok(map[string]any{"exp": s(0)}), verifier.ErrExpired)
		acceptToken(t, v0, tok(map[string]any{"exp": s(time.Second)}))
	})
	for _, d := range []time.Duration{-time.Second, verifier.MaxLeeway + time.Second} {
		t.Run("New refuses a leeway of "+d.String(), func(t *testing.T) {
			if _, err := verifier.New(t.Context(), iss.URL, verifier.WithAudience(testAudience),
				verifier.WithHTTPClient(iss.srv.Client()), verifier.WithLeeway(d)); err == nil {
				t.Fatal("New accepted an out-of-bounds leeway")
			}
		})
	}
}

// Case 60: aud must contain the expected audience exactly; iss must equal the issuer exactly.
func TestCase60AudienceAndIssuer(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	es := testKey(t, "ES256")
	tok := func(changes map[string]any) string { return mint(t, es, with(iss.claims(), changes), nil) }
	cases := []struct {
		name string
		aud  any
		want error
	}{
		{"another API's audience is rejected", "https://other.example", verifier.ErrAudience},
		{"an empty array is rejected", []string{}, verifier.ErrAudience},
		{"an empty string is rejected", "", verifier.ErrAudience},
		{"an array of an empty string is rejected", []string{""}, verifier.ErrAudience},
		{"null is rejected", json.RawMessage("null"), verifier.ErrAudience},
		{"a case variant is rejected", strings.ToUpper(testAudience), verifier.ErrAudience},
		{"a trailing slash is rejected", testAudience + "/", verifier.ErrAudience},
		{"a prefix is rejected", testAudience[:len(testAudience)-1], verifier.ErrAudience},
		{"a space-joined list is rejected", "https://other.example " + testAudience, verifier.ErrAudience},
		{"a number is rejected", 7, verifier.ErrMalformed},
		{"an array with a number is rejected", []any{testAudience, 7}, verifier.ErrMalformed},
		{"an object is rejected", map[string]any{"aud": testAudience}, verifier.ErrMalformed},
		{"the audience as a string is accepted", testAudience, nil},
		{"an array holding it is accepted", []string{testAudience}, nil},
		{`["other","mine"] is accepted because it contains mine`, []string{"https://other.example", testAudience}, nil},
		{`["mine","other"] is accepted too`, []string{testAudience, "https://other.example"}, nil},
	}
	for _, tc := range cases {
		t.Run("aud: "+tc.name, func(t *testing.T) {
			if tc.want == nil {
				c := acceptToken(t, v, tok(map[string]any{"aud": tc.aud}))
				if len(c.Audience()) == 0 {
					t.Fatal("Audience() is empty")
				}
				return
			}
			rejectToken(t, v, tok(map[string]any{"aud": tc.aud}), tc.want)
		})
	}
	for name, got := range map[string]any{
		"with a trailing slash": iss.URL + "/",
		"in upper case":         strings.ToUpper(iss.URL),
		"with a default port":   strings.Replace(iss.URL, "http://", "HTTP://", 1),
		"as another issuer":     "https://evil.example",
		"empty":                 "",
		"as an array":           []string{iss.URL},
	} {
		t.Run("iss "+name+" is rejected", func(t *testing.T) {
			_, err := v.Verify(t.Context(), tok(map[string]any{"iss": got}))
			if !errors.Is(err, verifier.ErrIssuer) && !errors.Is(err, verifier.ErrMalformed) {
				t.Fatalf("Verify error = %v; want ErrIssuer", err)
			}
		})
	}
}

// Case 61: a token that is expired and badly signed is a signature failure; no branch lets an
// "only expired" token through.
func TestCase61SignatureBeforeClaims(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	es := testKey(t, "ES256")
	bad := map[string]map[string]any{
		"expired":               {"exp": t0.Add(-time.Hour).Unix()},
		"expired and wrong aud": {"exp": t0.Add(-time.Hour).Unix(), "aud": "x"},
		"from another issuer":   {"iss": "https://evil.example"},
		"not yet valid":         {"nbf": t0.Add(time.Hour).Unix()},
		"with a string exp":     {"exp": "9999999999"},
	}
	for name, changes := range bad {
		t.Run("a badly signed token "+name+" is a signature failure", func(t *testing.T) {
			// Signed by the attacker's key under a trusted kid: the signature cannot verify.
			h := header(es)
			err := rejection(t, v, forgeWith(t, attackerKeyFor(t), h, with(iss.claims(), changes)), verifier.ErrSignature)
			for _, other := range []error{verifier.ErrExpired, verifier.ErrAudience, verifier.ErrIssuer, verifier.ErrNotYetValid, verifier.ErrMalformed} {
				if errors.Is(err, other) {
					t.Fatalf("error %v also matches %v", err, other)
				}
			}
		})
	}
	t.Run("a valid token with its signature flipped is a signature failure", func(t *testing.T) {
		tok := mint(t, es, with(iss.claims(), map[string]any{"exp": t0.Add(-time.Hour).Unix()}), nil)
		p := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(p[2])
		sig[5] ^= 1
		rejectToken(t, v, p[0]+"."+p[1]+"."+base64.RawURLEncoding.EncodeToString(sig), verifier.ErrSignature)
	})
	t.Run("a valid token with a swapped payload is a signature failure", func(t *testing.T) {
		tok := mint(t, es, iss.claims(), nil)
		p := strings.Split(tok, ".")
		evil := b64(mustJSON(t, with(iss.claims(), map[string]any{"roles": []string{"admin", "root"}})))
		rejectToken(t, v, p[0]+"."+evil+"."+p[2], verifier.ErrSignature)
	})
	t.Run("a token with an empty signature is a signature failure", func(t *testing.T) {
		tok := mint(t, es, iss.claims(), nil)
		rejectToken(t, v, tok[:strings.LastIndex(tok, ".")+1], verifier.ErrSignature)
	})
}

// Case 62: a token of 100 000 dots or an 8 MB header is rejected fast, with bounded allocation.
func TestCase62OversizedTokens(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	tok := mint(t, testKey(t, "ES256"), iss.claims(), nil)
	p := strings.Split(tok, ".")
	inputs := map[string]string{
		"100 000 dots":                   strings.Repeat(".", 100000),
		"a token with 100 000 dots":      p[0] + strings.Repeat(".", 100000) + p[1] + "." + p[2],
		"an 8 MB header":                 b64(`{"alg":"ES256","typ":"at+jwt","kid":"`+strings.Repeat("A", 6<<20)+`"}`) + "." + p[1] + "." + p[2],
		"8 MB of base64":                 strings.Repeat("A", 8<<20),
		"one byte over the size limit":   tok + strings.Repeat("A", verifier.MaxTokenSize-len(tok)+1),
		"4000 dots under the size limit": strings.Repeat("a.", 4000),
		"four parts":                     tok + ".x",
		"two parts":                      p[0] + "." + p[1],
	}
	for name, in := range inputs {
		t.Run(name+" is rejected with bounded allocation", func(t *testing.T) {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			const runs = 20
			for range runs {
				if _, err := v.Verify(t.Context(), in); !errors.Is(err, verifier.ErrMalformed) {
					t.Fatalf("Verify error = %v; want ErrMalformed", err)
				}
			}
			runtime.ReadMemStats(&m1)
			if per := (m1.TotalAlloc - m0.TotalAlloc) / runs; per > 16<<10 {
				t.Fatalf("rejecting allocated %d bytes per call; want a few KB at most", per)
			}
		})
	}
}

// Case 64: a key revoked or removed from the JWKS stops verifying after the next refresh; RSA
// keys under 2048 bits are never accepted.
func TestCase64RemovedKeysAndWeakRSA(t *testing.T) {
	es := testKey(t, "ES256")
	next := newES256Key(t)
	iss := newTestIssuer(t, es, next)
	clk := newClock()
	v := newVerifier(t, iss, clk)
	oldTok := mint(t, es, iss.claims(), nil)
	acceptToken(t, v, oldTok)

	t.Run("a key revoked from the JWKS stops verifying when the cache expires", func(t *testing.T) {
		iss.SetKeys(next)         // SigningKey.revokedKeyIDs: [es] drops it from the JWKS at once
		acceptToken(t, v, oldTok) // still cached: max-age=300
		clk.Advance(300 * time.Second)
		rejectToken(t, v, oldTok, verifier.ErrKeyNotFound)
		acceptToken(t, v, mint(t, next, iss.claims(), nil))
	})
	t.Run("a key that comes back is trusted again only after a refresh", func(t *testing.T) {
		iss.SetKeys(es, next)
		clk.Advance(verifier.DefaultJWKSMinInterval) // the unknown-kid refresh is allowed again
		acceptToken(t, v, mint(t, es, with(iss.claims(), map[string]any{"exp": clk.Now().Add(time.Minute).Unix()}), nil))
	})

	t.Run("an RSA key under 2048 bits in the JWKS is ignored", func(t *testing.T) {
		weak, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &weak.PublicKey, KeyID: "weak", Algorithm: "RS256", Use: "sig"}}})
		iss2 := newTestIssuer(t)
		iss2.SetJWKS(doc)
		v2 := newVerifier(t, iss2, newClock())
		rejectToken(t, v2, forge(t, `{"alg":"RS256","kid":"weak","typ":"at+jwt"}`, mustJSON(t, iss2.claims()), "RS256", weak), verifier.ErrKeyNotFound)
	})
	t.Run("an RSA key of 2048 bits is accepted", func(t *testing.T) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "ok", Algorithm: "RS256", Use: "sig"}}})
		iss2 := newTestIssuer(t)
		iss2.SetJWKS(doc)
		v2 := newVerifier(t, iss2, newClock())
		acceptToken(t, v2, forge(t, `{"alg":"RS256","kid":"ok","typ":"at+jwt"}`, mustJSON(t, iss2.claims()), "RS256", k))
	})
	t.Run("a JWKS entry with private members is ignored", func(t *testing.T) {
		priv := jose.JSONWebKey{Key: es.Signer, KeyID: es.KeyID, Algorithm: "ES256", Use: "sig"}
		doc, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{priv}})
		iss2 := newTestIssuer(t)
		iss2.SetJWKS(doc)
		v2 := newVerifier(t, iss2, newClock())
		rejectToken(t, v2, mint(t, es, iss2.claims(), nil), verifier.ErrKeyNotFound)
		// A public key with a stray "p" member is not trusted either.
		var m map[string]any
		_ = json.Unmarshal([]byte(mustJSON(t, es.PublicJWK())), &m)
		m["p"] = "AQAB"
		iss2.SetJWKS([]byte(mustJSON(t, map[string]any{"keys": []any{m}})))
		rejectToken(t, newVerifier(t, iss2, newClock()), mint(t, es, iss2.claims(), nil), verifier.ErrKeyNotFound)
	})
	t.Run("keys for encryption, other curves, or with a duplicated kid are ignored", func(t *testing.T) {
		enc := es.PublicJWK()
		enc.Use = "enc"
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		other := next.PublicJWK()
		other.KeyID = es.KeyID // two different keys claim the same kid
		doc, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			enc, {Key: &p384.PublicKey, KeyID: "p384", Algorithm: "ES384", Use: "sig"},
		}})
		iss2 := newTestIssuer(t)
		iss2.SetJWKS(doc)
		v2 := newVerifier(t, iss2, newClock())
		rejectToken(t, v2, mint(t, es, iss2.claims(), nil), verifier.ErrKeyNotFound)

		doc, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{es.PublicJWK(), other}})
		iss2.SetJWKS(doc)
		v3 := newVerifier(t, iss2, newClock())
		rejectToken(t, v3, mint(t, es, iss2.claims(), nil), verifier.ErrKeyNotFound)
	})
}

// Non-canonical base64 (RFC 4648 §3.5) would give one token several spellings that all verify.
func TestCase57NonCanonicalBase64(t *testing.T) {
	iss, v, _ := allKeysIssuer(t)
	for range 20 {
		tok := mint(t, testKey(t, "ES256"), with(iss.claims(), map[string]any{"jti": randomJTI(t)}), nil)
		acceptToken(t, v, tok)
		parts := strings.Split(tok, ".")
		for i, p := range parts {
			if len(p)%4 == 0 {
				continue
			}
			alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alphabet, p[len(p)-1])
			mut := make([]string, 3)
			copy(mut, parts)
			mut[i] = p[:len(p)-1] + string(alphabet[last|1])
			if mut[i] == p {
				mut[i] = p[:len(p)-1] + string(alphabet[last+1])
			}
			rejectToken(t, v, strings.Join(mut, "."), verifier.ErrMalformed)
		}
	}
}

func randomJTI(t *testing.T) string {
	b := make([]byte, 9)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
