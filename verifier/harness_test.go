package verifier_test

// The test issuer: an httptest server that serves discovery and a JWKS from keys made by
// internal/keymaterial (the code the token server signs with), plus helpers that mint valid
// tokens with go-jose and forge invalid ones byte by byte.
//
// Every section F case asserts through acceptToken/rejectToken, which take a token string and a
// *verifier.Verifier. When the token server lands, real-server tokens plug in the same way:
// build a Verifier with verifier.New against the server's issuer URL, get a token from its
// POST /token (golang.org/x/oauth2/clientcredentials), and call acceptToken; or implement
// tokenSource and append it to tokenSources (see TestTokenSourcesAccepted).

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/verifier"
)

// testAudience is the audience every test verifier requires.
const testAudience = "https://notes.example"

// t0 is the fake clock's start; minted tokens are issued at t0 and expire 15 minutes later.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Keys are generated once per test binary: 3072-bit RSA generation is slow.
var (
	keysOnce sync.Once
	keyByAlg map[string]*keymaterial.Key
	// attackerKey is never in any JWKS.
	attackerKey *keymaterial.Key
)

func testKey(t testing.TB, alg string) *keymaterial.Key {
	t.Helper()
	keysOnce.Do(func() {
		keyByAlg = map[string]*keymaterial.Key{}
		for _, a := range []latchkeyv1.SigningAlgorithm{latchkeyv1.AlgorithmES256, latchkeyv1.AlgorithmEdDSA,
			latchkeyv1.AlgorithmRS256, latchkeyv1.AlgorithmPS256} {
			k, err := keymaterial.Generate(a)
			if err != nil {
				panic(err)
			}
			keyByAlg[string(a)] = k
		}
		k, err := keymaterial.Generate(latchkeyv1.AlgorithmES256)
		if err != nil {
			panic(err)
		}
		attackerKey = k
	})
	k := keyByAlg[alg]
	if k == nil {
		t.Fatalf("no test key for %s", alg)
	}
	return k
}

func newES256Key(t testing.TB) *keymaterial.Key {
	t.Helper()
	k, err := keymaterial.Generate(latchkeyv1.AlgorithmES256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fakeClock is the verifier's clock in tests: time moves only when a test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testIssuer serves /.well-known/oauth-authorization-server and /jwks.
type testIssuer struct {
	t   testing.TB
	srv *httptest.Server
	// URL is the issuer identifier (the server's base URL, no trailing slash).
	URL string

	mu           sync.Mutex
	jwks         []byte
	cacheControl string
	jwksStatus   int
	jwksHeader   http.Header
	metadata     map[string]any // overrides merged into the default metadata
	gate         chan struct{}  // when set, a JWKS request waits until it is closed
	entered      chan struct{}  // when set, receives one value per JWKS request that started
	introspect   http.HandlerFunc

	jwksFetches   atomic.Int64
	inflight      atomic.Int64
	maxInflight   atomic.Int64
	discoveryHits atomic.Int64
}

// newTestIssuer starts an issuer whose JWKS holds keys.
func newTestIssuer(t testing.TB, keys ...*keymaterial.Key) *testIssuer {
	t.Helper()
	iss := &testIssuer{t: t, jwksStatus: http.StatusOK, cacheControl: "public, max-age=300"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", iss.serveMetadata)
	mux.HandleFunc("GET /jwks", iss.serveJWKS)
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		iss.mu.Lock()
		h := iss.introspect
		iss.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	iss.URL = iss.srv.URL
	iss.SetKeys(keys...)
	return iss
}

func (iss *testIssuer) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	iss.discoveryHits.Add(1)
	md := map[string]any{
		"issuer":                 iss.URL,
		"jwks_uri":               iss.URL + "/jwks",
		"token_endpoint":         iss.URL + "/token",
		"introspection_endpoint": iss.URL + "/introspect",
	}
	iss.mu.Lock()
	for k, v := range iss.metadata {
		if v == nil {
			delete(md, k)
		} else {
			md[k] = v
		}
	}
	iss.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(md)
}

func (iss *testIssuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	iss.jwksFetches.Add(1)
	n := iss.inflight.Add(1)
	defer iss.inflight.Add(-1)
	for {
		m := iss.maxInflight.Load()
		if n <= m || iss.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	iss.mu.Lock()
	gate, entered := iss.gate, iss.entered
	doc, cc, status := iss.jwks, iss.cacheControl, iss.jwksStatus
	for k, vs := range iss.jwksHeader {
		w.Header()[k] = vs
	}
	iss.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(status)
	_, _ = w.Write(doc)
}

// SetKeys replaces the JWKS with the public halves of keys.
func (iss *testIssuer) SetKeys(keys ...*keymaterial.Key) {
	iss.t.Helper()
	iss.SetJWKS(jwksDoc(iss.t, keys...))
}

// SetJWKS replaces the JWKS document verbatim.
func (iss *testIssuer) SetJWKS(doc []byte) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.jwks = doc
}

func (iss *testIssuer) SetCacheControl(v string) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.cacheControl = v
}

func (iss *testIssuer) SetJWKSHeader(k, v string) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.jwksHeader == nil {
		iss.jwksHeader = http.Header{}
	}
	iss.jwksHeader.Set(k, v)
}

func (iss *testIssuer) SetJWKSStatus(code int) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.jwksStatus = code
}

func (iss *testIssuer) SetMetadata(k string, v any) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.metadata == nil {
		iss.metadata = map[string]any{}
	}
	iss.metadata[k] = v
}

func (iss *testIssuer) SetIntrospection(h http.HandlerFunc) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.introspect = h
}

func (iss *testIssuer) Fetches() int64 { return iss.jwksFetches.Load() }

func jwksDoc(t testing.TB, keys ...*keymaterial.Key) []byte {
	t.Helper()
	pubs := make([]jose.JSONWebKey, 0, len(keys))
	for _, k := range keys {
		pubs = append(pubs, k.PublicJWK())
	}
	doc, err := keymaterial.MarshalJWKS(pubs)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// newVerifier builds a Verifier for iss with the test audience and clock.
func newVerifier(t testing.TB, iss *testIssuer, clk *fakeClock, opts ...verifier.Option) *verifier.Verifier {
	t.Helper()
	v, err := verifier.New(t.Context(), iss.URL, append([]verifier.Option{
		verifier.WithAudience(testAudience),
		verifier.WithClock(clk.Now),
		verifier.WithHTTPClient(iss.srv.Client()),
	}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// claims are the claims of a valid user token from iss; tests change them to forge others.
func (iss *testIssuer) claims() map[string]any {
	return map[string]any{
		"iss":       iss.URL,
		"sub":       "alice",
		"aud":       testAudience,
		"exp":       t0.Add(15 * time.Minute).Unix(),
		"iat":       t0.Unix(),
		"jti":       "jti-1",
		"client_id": "demo-spa",
		"scope":     "openid notes.read",
		"roles":     []string{"admin", "user"},
	}
}

// clientClaims are the claims of a valid client_credentials token.
func (iss *testIssuer) clientClaims() map[string]any {
	c := iss.claims()
	c["sub"] = "client:demo-service"
	c["client_id"] = "demo-service"
	c["scope"] = "notes.read notes.write"
	delete(c, "roles")
	return c
}

// with returns a copy of claims with changes applied; a nil value deletes the claim.
func with(claims map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// mint signs claims with key through go-jose, the way the token server does: typ at+jwt, the
// key's alg and kid, plus extra header parameters.
func mint(t testing.TB, key *keymaterial.Key, claims map[string]any, extra map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key.SigningJWK()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge builds a compact JWS from a raw header and payload, signed by hand: with a private key
// for RS256, PS256, ES256 and EdDSA, with secret []byte for HS*, and with nothing for "none" in
// any casing. It lets tests write headers go-jose would refuse to produce.
func forge(t testing.TB, header, payload string, alg string, key any) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	h := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch {
	case strings.EqualFold(alg, "none"):
	case alg == "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case alg == "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case alg == "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case alg == "ES256":
		var r, s []byte
		r, s, err = ecdsaSign(key.(*ecdsa.PrivateKey), h[:])
		sig = append(r, s...)
	case alg == "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	default:
		t.Fatalf("forge: unknown alg %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func ecdsaSign(k *ecdsa.PrivateKey, hash []byte) ([]byte, []byte, error) {
	r, s, err := ecdsa.Sign(rand.Reader, k, hash)
	if err != nil {
		return nil, nil, err
	}
	return r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32)), nil
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// forgeWith signs a header and claims (both JSON-marshalled) with a keymaterial key by hand.
func forgeWith(t testing.TB, key *keymaterial.Key, header map[string]any, claims map[string]any) string {
	t.Helper()
	return forge(t, mustJSON(t, header), mustJSON(t, claims), string(key.Algorithm), key.Signer)
}

// header is the header the token server writes for key.
func header(key *keymaterial.Key) map[string]any {
	return map[string]any{"alg": string(key.Algorithm), "kid": key.KeyID, "typ": "at+jwt"}
}

// acceptToken asserts that v accepts token and returns its claims.
func acceptToken(t testing.TB, v *verifier.Verifier, token string) *verifier.Claims {
	t.Helper()
	c, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("Verify rejected a valid token: %v", err)
	}
	if c == nil {
		t.Fatal("Verify returned nil claims and no error")
	}
	return c
}

// rejectToken asserts that v rejects token with an error that wraps want.
func rejectToken(t testing.TB, v *verifier.Verifier, token string, want error) {
	t.Helper()
	_ = rejection(t, v, token, want) // already checked against want
}

// rejection is rejectToken for a test that goes on to inspect the error.
func rejection(t testing.TB, v *verifier.Verifier, token string, want error) error {
	t.Helper()
	c, err := v.Verify(t.Context(), token)
	if err == nil {
		t.Fatalf("Verify accepted a token it must reject (want %v); claims %v", want, c.Raw())
	}
	if c != nil {
		t.Fatalf("Verify returned claims with error %v", err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("Verify error = %v; want one wrapping %v", err, want)
	}
	return err
}

// countingServer is an attacker's server: it counts every request (jku, x5u targets).
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newCountingServer(t testing.TB, body string) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		cs.hits.Add(1)
		_, _ = fmt.Fprint(w, body)
	}))
	t.Cleanup(cs.Close)
	return cs
}
