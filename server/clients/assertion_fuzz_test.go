package clients_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	clocktesting "k8s.io/utils/clock/testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/store/memstore"
)

// fuzzClientKey is the private_key_jwt client's signing key in FuzzClientAssertion. It is fixed,
// and the clock is fixed at servertest.Epoch, so the valid assertions committed in
// testdata/fuzz/FuzzClientAssertion stay valid: the fuzzer mutates inputs that reach the
// signature check and the claim checks, not only the parser. It signs nothing outside this test.
const fuzzClientKey = `{"use":"sig","kty":"EC","kid":"fuzz-k1","crv":"P-256","alg":"ES256",` +
	`"x":"YlNUkUlbnS2X4CXaCkolboI2tRNUq6S67kYVN1rhJXg","y":"c-yA31bGHQLjuNH99z3lofC2YC91X12IOh99QuqKA1Q",` +
	`"d":"vqBJsHXsaDSDwM3rIXowHOpcDfllp3xpfFEaG91MJBU"}`

// fuzzAssertionEnv is an Authenticator for one private_key_jwt client "pkj" whose jwksURI is a
// loopback TLS server publishing the public half of fuzzClientKey.
type fuzzAssertionEnv struct {
	auth *clients.Authenticator
	priv jose.JSONWebKey
	pub  jose.JSONWebKey
}

func newFuzzAssertionEnv(tb testing.TB) *fuzzAssertionEnv {
	tb.Helper()
	var priv jose.JSONWebKey
	if err := json.Unmarshal([]byte(fuzzClientKey), &priv); err != nil {
		tb.Fatalf("fuzz key: %v", err)
	}
	pub := priv.Public()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	}))
	tb.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	clk := clocktesting.NewFakeClock(servertest.Epoch)
	pkj, _ := servertest.ConfidentialClient("pkj", "apps", servertest.WithClientID("pkj"),
		servertest.WithJWKSURI(srv.URL+"/jwks"))
	return &fuzzAssertionEnv{
		auth: &clients.Authenticator{
			Registry: &clients.Registry{Reader: servertest.NewReader(pkj)},
			Keys: clients.NewKeyFetcher(clients.FetchOptions{
				TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				AllowAddr: func(a netip.Addr) bool { return a.IsLoopback() },
				Clock:     clk,
			}),
			Issuer: servertest.Issuer,
			Clock:  clk,
		},
		priv: priv,
		pub:  pub,
	}
}

// sign signs claims with the client's key, with hdr as extra protected headers.
func (e *fuzzAssertionEnv) sign(tb testing.TB, claims map[string]any, hdr map[jose.HeaderKey]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", e.priv.KeyID)
	for k, v := range hdr {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: e.priv.Key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// validClaims are the claims of an assertion accepted at servertest.Epoch.
func validClaims(jti string) map[string]any {
	now := servertest.Epoch.Unix()
	return map[string]any{"iss": "pkj", "sub": "pkj", "aud": servertest.Issuer, "exp": now + 60, "iat": now, "jti": jti}
}

// authenticate presents raw as the client assertion, with a fresh jti store so that every
// input is judged on its own.
func (e *fuzzAssertionEnv) authenticate(raw string) (*clients.Client, error) {
	a := *e.auth
	a.Assertions = memstore.New()
	r := httptest.NewRequest(http.MethodPost, "/token", nil)
	form := httpx.Form{clients.ParamClientAssertionType: clients.AssertionType, clients.ParamClientAssertion: raw}
	return a.Authenticate(context.Background(), r, form, clients.Policy{})
}

// acceptable is an independent statement of RFC 7523 §3 as decided for Latchkey (decision D4):
// a compact ES256 JWS of at most 8 KiB, with no kid or the key's kid, that verifies with the
// client's published key, iss and sub "pkj", aud the issuer as a JSON string, a jti of 1 to 256
// bytes, an exp between now-leeway and now+5m+leeway, and no iat or nbf in the future.
func (e *fuzzAssertionEnv) acceptable(raw string) error {
	if len(raw) > 8<<10 {
		return errors.New("longer than 8 KiB")
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return err
	}
	if kid := jws.Signatures[0].Protected.KeyID; kid != "" && kid != e.pub.KeyID {
		return errors.New("another kid")
	}
	payload, err := jws.Verify(e.pub.Key)
	if err != nil {
		return err
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(payload, &c); err != nil {
		return err
	}
	str := func(name string) string {
		var s string
		if raw, ok := c[name]; !ok || bytes.TrimSpace(raw)[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return "\x00absent"
		}
		return s
	}
	num := func(name string) (float64, bool) {
		var f float64
		raw, ok := c[name]
		return f, ok && json.Unmarshal(raw, &f) == nil
	}
	now := float64(servertest.Epoch.Unix())
	leeway := clients.AssertionLeeway.Seconds()
	exp, hasExp := num("exp")
	switch {
	case str("iss") != "pkj" || str("sub") != "pkj":
		return errors.New("iss or sub is not the client")
	case str("aud") != servertest.Issuer:
		return errors.New("aud is not the issuer as a string")
	case str("jti") == "\x00absent" || str("jti") == "" || len(str("jti")) > 256:
		return errors.New("no jti, or a jti over 256 bytes")
	case !hasExp || exp+leeway <= now || exp > now+(clients.MaxAssertionLifetime.Seconds()+leeway):
		return errors.New("exp out of range")
	}
	for _, name := range []string{"iat", "nbf"} {
		if _, present := c[name]; !present {
			continue
		}
		if v, ok := num(name); !ok || v < 0 || v > now+leeway {
			return errors.New(name + " in the future or not a number")
		}
	}
	return nil
}

// FuzzClientAssertion feeds arbitrary client_assertion values to private_key_jwt
// authentication (RFC 7523, SECURITY-CASES 49-51, 54-57). It never panics; every refusal is
// invalid_client (401); and an assertion is accepted exactly when acceptable says it should be:
// nothing that breaks a rule passes, and nothing valid is refused.
func FuzzClientAssertion(f *testing.F) {
	e := newFuzzAssertionEnv(f)
	valid := map[string]bool{}
	addValid := func(s string) {
		valid[s] = true
		f.Add(s)
	}
	addValid(e.sign(f, validClaims("seed-1"), nil))
	withoutIat := validClaims("seed-2")
	delete(withoutIat, "iat")
	addValid(e.sign(f, withoutIat, nil))

	arrayAud := validClaims("seed-3")
	arrayAud["aud"] = []string{servertest.Issuer}
	f.Add(e.sign(f, arrayAud, nil))
	endpointAud := validClaims("seed-4")
	endpointAud["aud"] = servertest.Issuer + "/token"
	f.Add(e.sign(f, endpointAud, nil))
	stringExp := validClaims("seed-5")
	stringExp["exp"] = "9999999999"
	f.Add(e.sign(f, stringExp, nil))
	f.Add(e.sign(f, validClaims("seed-6"), map[jose.HeaderKey]any{"crit": []string{"b64"}, "b64": false}))
	f.Add(e.sign(f, validClaims("seed-7"), map[jose.HeaderKey]any{"jku": "https://attacker.example/jwks"}))
	f.Add(`eyJhbGciOiJub25lIiwia2lkIjoiZnV6ei1rMSJ9.eyJpc3MiOiJwa2oiLCJzdWIiOiJwa2oifQ.`)
	f.Add(`{"payload":"e30","protected":"eyJhbGciOiJFUzI1NiJ9","signature":"AAAA"}`)
	f.Add(strings.Repeat(".", 100))
	f.Add("")

	f.Fuzz(func(t *testing.T, raw string) {
		c, err := e.authenticate(raw)
		if err != nil {
			var oe *oautherr.Error
			if !errors.As(err, &oe) || oe.Code != oautherr.CodeInvalidClient || oe.Status() != http.StatusUnauthorized {
				t.Fatalf("refusal %v, want invalid_client 401", err)
			}
			if valid[raw] || e.acceptable(raw) == nil {
				t.Fatalf("a valid assertion was refused: %v: %q", err, raw)
			}
			return
		}
		if c.ID != "pkj" || c.Method != latchkeyv1.AuthMethodPrivateKeyJWT {
			t.Fatalf("authenticated %q by %s", c.ID, c.Method)
		}
		if why := e.acceptable(raw); why != nil {
			t.Fatalf("accepted an assertion that breaks a rule (%v): %q", why, raw)
		}
	})
}

// The valid seeds really are accepted once and refused on replay, so the fuzz target's oracle
// is exercised on both sides (SECURITY-CASES 51).
func TestFuzzAssertionSeedsAreValid(t *testing.T) {
	e := newFuzzAssertionEnv(t)
	raw := e.sign(t, validClaims("once"), nil)
	a := *e.auth
	a.Assertions = memstore.New()
	r := httptest.NewRequest(http.MethodPost, "/token", nil)
	form := httpx.Form{clients.ParamClientAssertionType: clients.AssertionType, clients.ParamClientAssertion: raw}
	if _, err := a.Authenticate(context.Background(), r, form, clients.Policy{}); err != nil {
		t.Fatalf("valid assertion: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), r, form, clients.Policy{}); err == nil {
		t.Fatal("a replayed jti was accepted")
	}
	if err := e.acceptable(raw); err != nil {
		t.Fatalf("the oracle refuses a valid assertion: %v", err)
	}
	expired := validClaims("late")
	expired["exp"] = servertest.Epoch.Add(-5 * time.Minute).Unix()
	if err := e.acceptable(e.sign(t, expired, nil)); err == nil {
		t.Fatal("the oracle accepts an expired assertion")
	}
}
