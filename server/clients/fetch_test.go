package clients

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8":            true,
		"2606:4700::1111":    true,
		"127.0.0.1":          false,
		"::1":                false,
		"10.1.2.3":           false,
		"172.16.0.1":         false,
		"192.168.1.1":        false,
		"169.254.169.254":    false, // cloud metadata
		"100.64.0.1":         false, // shared address space
		"0.0.0.0":            false,
		"224.0.0.1":          false,
		"255.255.255.255":    false,
		"fd00::1":            false, // unique local (cluster IPv6)
		"fe80::1":            false,
		"::ffff:127.0.0.1":   false, // IPv4-mapped loopback
		"::ffff:169.254.1.1": false,
		"64:ff9b::a9fe:a9fe": false, // NAT64 of 169.254.169.254
		"2002:a9fe:a9fe::1":  false, // 6to4 of 169.254.169.254
		"2001:db8::1":        false,
		"198.18.0.1":         false,
		"::":                 false,
		"::127.0.0.1":        false,
	} {
		if got := PublicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

func testKeySet(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tlsFetcher trusts srv and allows loopback (test only), with short limits.
func tlsFetcher(srv *httptest.Server, allowLoopback bool) *KeyFetcher {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	allow := PublicAddr
	if allowLoopback {
		allow = func(a netip.Addr) bool { return a.IsLoopback() || PublicAddr(a) }
	}
	return NewKeyFetcher(FetchOptions{
		Timeout:   500 * time.Millisecond,
		MaxBytes:  64 << 10,
		TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		AllowAddr: allow,
		Clock:     clocktesting.NewFakeClock(time.Unix(1e9, 0)),
	})
}

// Case 52: the fetch of a client's jwksURI is bounded and cannot be pointed inside.
func TestKeyFetcherRefusesWhatItMust(t *testing.T) {
	set := testKeySet(t)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(set) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		chunk := []byte(strings.Repeat(" ", 1<<20))
		for i := 0; i < 50; i++ { // 50 MB, if anyone read it all
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, _ *http.Request) { <-release })
	mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/to-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.Host+"/jwks", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/once", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/jwks", http.StatusFound)
	})
	mux.HandleFunc("/500", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	// Registered after srv.Close, so it runs first and lets the hanging handler return.
	t.Cleanup(func() { close(release) })

	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"a JWKS", "/jwks", true},
		{"one redirect to a JWKS", "/once", true},
		{"50 MB", "/big", false},
		{"a hanging server", "/hang", false},
		{"a redirect to the metadata address", "/to-metadata", false},
		{"a redirect to http", "/to-http", false},
		{"endless redirects", "/loop", false},
		{"an error status", "/500", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tlsFetcher(srv, true)
			keys, err := f.Keys(context.Background(), srv.URL+tc.path, "k1")
			if tc.ok != (err == nil && len(keys) == 1) {
				t.Fatalf("keys %d, err %v", len(keys), err)
			}
		})
	}
	t.Run("loopback is refused by default, even by name", func(t *testing.T) {
		f := tlsFetcher(srv, false)
		byName := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
		for _, u := range []string{srv.URL + "/jwks", byName + "/jwks"} {
			_, err := f.Keys(context.Background(), u, "k1")
			if !errors.Is(err, ErrAddressNotAllowed) {
				t.Fatalf("%s: %v", u, err)
			}
		}
	})
	t.Run("only https", func(t *testing.T) {
		f := tlsFetcher(srv, true)
		if _, err := f.Keys(context.Background(), strings.Replace(srv.URL, "https", "http", 1)+"/jwks", "k1"); err == nil {
			t.Fatal("http jwksURI fetched")
		}
	})
}

// An unknown kid refetches at most once per MinRefetch; concurrent misses share one fetch.
func TestKeyFetcherRateLimit(t *testing.T) {
	set := testKeySet(t)
	var fetches atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(set)
	}))
	t.Cleanup(srv.Close)
	f := tlsFetcher(srv, true)
	clk := f.o.Clock.(*clocktesting.FakeClock)
	ctx := context.Background()
	if _, err := f.Keys(ctx, srv.URL, "k1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := f.Keys(ctx, srv.URL, "unknown"); err == nil {
			t.Fatal("unknown kid found")
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("%d fetches, want 1", got)
	}
	clk.Step(DefaultMinRefetch)
	_, _ = f.Keys(ctx, srv.URL, "unknown")
	if got := fetches.Load(); got != 2 {
		t.Fatalf("%d fetches after the interval, want 2", got)
	}
	// Known kids are served from the cache until the TTL.
	for i := 0; i < 10; i++ {
		if _, err := f.Keys(ctx, srv.URL, "k1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := fetches.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2", got)
	}
	clk.Step(DefaultKeyTTL)
	if _, err := f.Keys(ctx, srv.URL, "k1"); err != nil {
		t.Fatal(err)
	}
	if got := fetches.Load(); got != 3 {
		t.Fatalf("%d fetches after the TTL, want 3", got)
	}
}
