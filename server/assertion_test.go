package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// jwksServer is a client's JWKS endpoint on loopback TLS.
type jwksServer struct {
	srv *httptest.Server

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetches int
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	j := &jwksServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.fetches++
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: j.keys})
	})
	// A redirect to the cloud metadata address (SECURITY-CASES 52).
	mux.HandleFunc("/metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/jwks", http.StatusFound)
	})
	j.srv = httptest.NewTLSServer(mux)
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) set(keys ...jose.JSONWebKey) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = keys
}

func (j *jwksServer) count() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

// fetcher trusts the test server's certificate and allows loopback, as only tests may.
func (j *jwksServer) fetcher(clk clock.PassiveClock) *clients.KeyFetcher {
	pool := x509.NewCertPool()
	pool.AddCert(j.srv.Certificate())
	return clients.NewKeyFetcher(clients.FetchOptions{
		TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		AllowAddr: func(a netip.Addr) bool { return a.IsLoopback() || clients.PublicAddr(a) },
		Clock:     clk,
	})
}

type clientKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newClientKey(t *testing.T, kid string) clientKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{priv: k, kid: kid}
}

func (k clientKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"}
}

func (k clientKey) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	hdr := map[jose.HeaderKey]any{}
	if k.kid != "" {
		hdr["kid"] = k.kid
	}
	return signJWS(t, jose.ES256, k.priv, claims, hdr)
}

func TestPrivateKeyJWT(t *testing.T) {
	js := newJWKSServer(t)
	k1 := newClientKey(t, "k1")
	js.set(k1.public())
	pkj, _ := servertest.ConfidentialClient("pkj", "apps", servertest.WithClientID("pkj"),
		servertest.WithJWKSURI(js.srv.URL+"/jwks"))
	evil, _ := servertest.ConfidentialClient("evil", "apps", servertest.WithClientID("evil"),
		servertest.WithJWKSURI(js.srv.URL+"/metadata"))
	e := newEnv(t, withObjects(pkj, evil), withFetcher(js.fetcher))

	now := func() int64 { return e.clk.Now().Unix() }
	jti := 0
	claims := func(edit func(map[string]any)) map[string]any {
		jti++
		c := map[string]any{"iss": "pkj", "sub": "pkj", "aud": servertest.Issuer,
			"exp": now() + 60, "iat": now(), "jti": "jti-" + string(rune('a'+jti%26)) + time.Now().Format("150405.000000000")}
		if edit != nil {
			edit(c)
		}
		return c
	}
	send := func(assertion string, extra ...string) *httptest.ResponseRecorder {
		form := url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {clients.AssertionType}, "client_assertion": {assertion}}
		for i := 0; i+1 < len(extra); i += 2 {
			form.Set(extra[i], extra[i+1])
		}
		return e.post("/token", form)
	}

	t.Run("a valid assertion authenticates once", func(t *testing.T) {
		a := k1.sign(t, claims(nil))
		e.logs.forbid(a)
		if rec := send(a); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		// Case 51: the same jti again.
		assertError(t, send(a), 401, "invalid_client", "client authentication failed")
	})
	t.Run("client_id may repeat the sub", func(t *testing.T) {
		if rec := send(k1.sign(t, claims(nil)), "client_id", "pkj"); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
	t.Run("an assertion without kid is tried against the set", func(t *testing.T) {
		nokid := clientKey{priv: k1.priv}
		if rec := send(nokid.sign(t, claims(nil))); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})

	other := newClientKey(t, "k1") // same kid, a key the client never published
	attacker := newClientKey(t, "att")
	hsKey, _ := json.Marshal(k1.public())
	b64 := base64.RawURLEncoding.EncodeToString
	bad := []struct {
		name      string
		assertion func() string
		extra     []string
	}{
		{"exp missing", func() string { return k1.sign(t, claims(func(c map[string]any) { delete(c, "exp") })) }, nil},
		{"iss missing", func() string { return k1.sign(t, claims(func(c map[string]any) { delete(c, "iss") })) }, nil},
		{"sub missing", func() string { return k1.sign(t, claims(func(c map[string]any) { delete(c, "sub") })) }, nil},
		{"aud missing", func() string { return k1.sign(t, claims(func(c map[string]any) { delete(c, "aud") })) }, nil},
		{"jti missing", func() string { return k1.sign(t, claims(func(c map[string]any) { delete(c, "jti") })) }, nil},
		{"iss is not sub", func() string { return k1.sign(t, claims(func(c map[string]any) { c["iss"] = "evil" })) }, nil},
		{"sub is not client_id", func() string { return k1.sign(t, claims(nil)) }, []string{"client_id", "svc"}},
		{"exp five minutes past", func() string { return k1.sign(t, claims(func(c map[string]any) { c["exp"] = now() - 300 })) }, nil},
		{"exp an hour ahead", func() string { return k1.sign(t, claims(func(c map[string]any) { c["exp"] = now() + 3600 })) }, nil},
		{"exp as a string", func() string { return k1.sign(t, claims(func(c map[string]any) { c["exp"] = "9999999999" })) }, nil},
		{"iat in the future", func() string { return k1.sign(t, claims(func(c map[string]any) { c["iat"] = now() + 600 })) }, nil},
		{"nbf in the future", func() string { return k1.sign(t, claims(func(c map[string]any) { c["nbf"] = now() + 600 })) }, nil},
		{"aud is the token endpoint", func() string {
			return k1.sign(t, claims(func(c map[string]any) { c["aud"] = servertest.Issuer + "/token" }))
		}, nil},
		{"aud is a one-element array", func() string {
			return k1.sign(t, claims(func(c map[string]any) { c["aud"] = []string{servertest.Issuer} }))
		}, nil},
		{"aud is another server", func() string {
			return k1.sign(t, claims(func(c map[string]any) { c["aud"] = "https://other.example.test" }))
		}, nil},
		{"a key the client never published", func() string { return other.sign(t, claims(nil)) }, nil},
		{"an unknown kid", func() string { return newClientKey(t, "zzz").sign(t, claims(nil)) }, nil},
		{"an embedded jwk header", func() string {
			return signJWS(t, jose.ES256, attacker.priv, claims(nil), map[jose.HeaderKey]any{"kid": "k1", "jwk": attacker.public()})
		}, nil},
		{"a jku header", func() string {
			return signJWS(t, jose.ES256, attacker.priv, claims(nil), map[jose.HeaderKey]any{"kid": "k1", "jku": "https://attacker.example/jwks"})
		}, nil},
		{"alg none", func() string {
			c, _ := json.Marshal(claims(nil))
			return b64([]byte(`{"alg":"none","kid":"k1"}`)) + "." + b64(c) + "."
		}, nil},
		{"alg NONE", func() string {
			c, _ := json.Marshal(claims(nil))
			return b64([]byte(`{"alg":"NONE","kid":"k1"}`)) + "." + b64(c) + "."
		}, nil},
		{"HS256 keyed with the public key", func() string {
			return signJWS(t, jose.HS256, hsKey, claims(nil), map[jose.HeaderKey]any{"kid": "k1"})
		}, nil},
		{"JSON serialization", func() string {
			return `{"payload":"e30","protected":"eyJhbGciOiJFUzI1NiJ9","signature":"AAAA"}`
		}, nil},
		{"wrong assertion type", func() string { return k1.sign(t, claims(nil)) },
			[]string{"client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			assertError(t, send(tc.assertion(), tc.extra...), 401, "invalid_client", "client authentication failed")
		})
	}

	t.Run("a jwksURI that redirects to the metadata address is refused", func(t *testing.T) {
		a := k1.sign(t, map[string]any{"iss": "evil", "sub": "evil", "aud": servertest.Issuer,
			"exp": now() + 60, "jti": "evil-1"})
		assertError(t, send(a), 401, "invalid_client", "client authentication failed")
	})

	t.Run("key rotation refetches once; unknown kids do not flood", func(t *testing.T) {
		e.clk.Step(time.Minute)
		k2 := newClientKey(t, "k2")
		js.set(k2.public())
		before := js.count()
		if rec := send(k2.sign(t, claims(nil))); rec.Code != 200 {
			t.Fatalf("new kid: %d %s", rec.Code, rec.Body)
		}
		if got := js.count() - before; got != 1 {
			t.Fatalf("%d fetches for a new kid, want 1", got)
		}
		for i := 0; i < 20; i++ {
			kid := "flood-" + string(rune('a'+i))
			assertError(t, send(newClientKey(t, kid).sign(t, claims(nil))), 401, "invalid_client", "client authentication failed")
		}
		if got := js.count() - before; got != 1 {
			t.Fatalf("%d fetches after a flood of unknown kids, want still 1", got)
		}
		// The old key left the set: refused.
		assertError(t, send(k1.sign(t, claims(nil))), 401, "invalid_client", "client authentication failed")
	})
}
