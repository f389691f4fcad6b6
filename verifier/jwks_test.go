package verifier_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/verifier"
)

// freshClaims are valid claims at the clock's current time.
func freshClaims(iss *testIssuer, clk *fakeClock) map[string]any {
	return with(iss.claims(), map[string]any{"iat": clk.Now().Unix(), "exp": clk.Now().Add(15 * time.Minute).Unix()})
}

func TestJWKSCacheHonoursCacheControl(t *testing.T) {
	es := testKey(t, "ES256")
	cases := []struct {
		name         string
		cacheControl string
		fresh        time.Duration // the set is still fresh this long after a fetch
	}{
		{"max-age is honoured", "public, max-age=120", 120 * time.Second},
		{"max-age is honoured whatever its case and spacing", "Public,MAX-AGE=90 ", 90 * time.Second},
		{"a max-age below the minimum interval is raised to it", "max-age=5", verifier.DefaultJWKSMinInterval},
		{"max-age 0 means the minimum interval", "max-age=0", verifier.DefaultJWKSMinInterval},
		{"no-store means the minimum interval", "no-store", verifier.DefaultJWKSMinInterval},
		{"a max-age above the maximum is capped", "max-age=604800", verifier.DefaultJWKSMaxAge},
		{"no Cache-Control means five minutes", "", 5 * time.Minute},
		{"a garbled max-age means the minimum interval", "max-age=soon", verifier.DefaultJWKSMinInterval},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iss := newTestIssuer(t, es)
			iss.SetCacheControl(tc.cacheControl)
			clk := newClock()
			v := newVerifier(t, iss, clk)
			if n := iss.Fetches(); n != 1 {
				t.Fatalf("New fetched the JWKS %d times; want 1", n)
			}
			clk.Advance(tc.fresh - time.Second)
			acceptToken(t, v, mint(t, es, freshClaims(iss, clk), nil))
			if n := iss.Fetches(); n != 1 {
				t.Fatalf("a fresh key set was fetched again (%d fetches)", n)
			}
			clk.Advance(time.Second)
			acceptToken(t, v, mint(t, es, freshClaims(iss, clk), nil))
			if n := iss.Fetches(); n != 2 {
				t.Fatalf("a stale key set was not refreshed (%d fetches); want 2", n)
			}
		})
	}
	t.Run("Age is subtracted from max-age", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		iss.SetCacheControl("max-age=300")
		iss.SetJWKSHeader("Age", "200")
		clk := newClock()
		v := newVerifier(t, iss, clk)
		clk.Advance(100 * time.Second)
		acceptToken(t, v, mint(t, es, freshClaims(iss, clk), nil))
		if n := iss.Fetches(); n != 2 {
			t.Fatalf("%d fetches; want 2 (max-age 300 less Age 200)", n)
		}
	})
	t.Run("WithJWKSRefresh moves the bounds", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		iss.SetCacheControl("max-age=3600")
		clk := newClock()
		v := newVerifier(t, iss, clk, verifier.WithJWKSRefresh(5*time.Second, 10*time.Minute))
		clk.Advance(10 * time.Minute)
		acceptToken(t, v, mint(t, es, freshClaims(iss, clk), nil))
		if n := iss.Fetches(); n != 2 {
			t.Fatalf("%d fetches; want 2 (max-age capped at 10m)", n)
		}
	})
}

// An unknown-kid flood causes one fetch in flight at a time and at most one per interval.
func TestJWKSUnknownKidFloodIsSingleflightAndRateLimited(t *testing.T) {
	es := testKey(t, "ES256")
	iss := newTestIssuer(t, es)
	clk := newClock()
	v := newVerifier(t, iss, clk)
	atk := attackerKeyFor(t)

	flood := func(n int) []error {
		tokens := make([]string, n)
		for i := range tokens {
			h := header(atk)
			h["kid"] = fmt.Sprintf("random-%d", i)
			tokens[i] = forgeWith(t, atk, h, freshClaims(iss, clk))
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = v.Verify(t.Context(), tokens[i]) })
		}
		wg.Wait()
		return errs
	}

	// Within the interval after New's fetch, no unknown kid fetches anything.
	for _, err := range flood(50) {
		if !errors.Is(err, verifier.ErrKeyNotFound) {
			t.Fatalf("error = %v; want ErrKeyNotFound", err)
		}
	}
	if n := iss.Fetches(); n != 1 {
		t.Fatalf("%d fetches within the rate-limit interval; want 1 (New's)", n)
	}

	// After the interval, a flood held up by a slow JWKS endpoint shares one fetch.
	clk.Advance(verifier.DefaultJWKSMinInterval)
	gate, entered := make(chan struct{}), make(chan struct{}, 100)
	iss.mu.Lock()
	iss.gate, iss.entered = gate, entered
	iss.mu.Unlock()
	done := make(chan []error)
	go func() { done <- flood(100) }()
	<-entered // one fetch is in flight; every other caller joins it or is rate-limited
	close(gate)
	for _, err := range <-done {
		if !errors.Is(err, verifier.ErrKeyNotFound) {
			t.Fatalf("error = %v; want ErrKeyNotFound", err)
		}
	}
	if n := iss.Fetches(); n != 2 {
		t.Fatalf("%d fetches; want 2", n)
	}
	if m := iss.maxInflight.Load(); m != 1 {
		t.Fatalf("%d fetches were in flight at once; want 1", m)
	}

	// And the next interval allows exactly one more.
	flood(20)
	clk.Advance(verifier.DefaultJWKSMinInterval)
	flood(20)
	if n := iss.Fetches(); n != 3 {
		t.Fatalf("%d fetches; want 3", n)
	}
}

// A new key is found by the unknown-kid refresh; a refresh replaces the set (never appends).
func TestJWKSRefreshReplacesTheKeySet(t *testing.T) {
	k1, k2 := newES256Key(t), newES256Key(t)
	iss := newTestIssuer(t, k1)
	clk := newClock()
	v := newVerifier(t, iss, clk)
	tok1 := mint(t, k1, iss.claims(), nil)
	acceptToken(t, v, tok1)

	iss.SetKeys(k2) // rotation with k1 gone at once (revocation)
	clk.Advance(verifier.DefaultJWKSMinInterval)
	acceptToken(t, v, mint(t, k2, freshClaims(iss, clk), nil)) // unknown kid: one refresh
	if n := iss.Fetches(); n != 2 {
		t.Fatalf("%d fetches; want 2", n)
	}
	rejectToken(t, v, mint(t, k1, freshClaims(iss, clk), nil), verifier.ErrKeyNotFound)
}

// A failed refresh keeps the previous keys; an unknown kid then reports ErrUnavailable.
func TestJWKSRefreshFailureKeepsKeys(t *testing.T) {
	es := testKey(t, "ES256")
	iss := newTestIssuer(t, es)
	clk := newClock()
	v := newVerifier(t, iss, clk)

	iss.SetJWKSStatus(http.StatusInternalServerError)
	clk.Advance(10 * time.Minute)
	acceptToken(t, v, mint(t, es, freshClaims(iss, clk), nil))
	rejectToken(t, v, mint(t, newES256Key(t), freshClaims(iss, clk), nil), verifier.ErrUnavailable)
	if n := iss.Fetches(); n != 2 {
		t.Fatalf("%d fetches; want 2 (the failed one is not retried within the interval)", n)
	}

	iss.SetJWKSStatus(http.StatusOK)
	iss.SetJWKS([]byte(`{"keys": "garbage"}`))
	clk.Advance(verifier.DefaultJWKSMinInterval)
	acceptToken(t, v, mint(t, es, freshClaims(iss, clk), nil))

	iss.SetKeys(es)
	clk.Advance(verifier.DefaultJWKSMinInterval)
	rejectToken(t, v, mint(t, newES256Key(t), freshClaims(iss, clk), nil), verifier.ErrKeyNotFound)
}

// writeJWKS writes the JWKS of keys to path atomically.
func writeJWKS(t *testing.T, path string, keys ...*keymaterial.Key) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, jwksDoc(t, keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newFileVerifier(t *testing.T, path string, clk *fakeClock, opts ...verifier.Option) *verifier.Verifier {
	t.Helper()
	v, err := verifier.New(t.Context(), "https://auth.example", append([]verifier.Option{
		verifier.WithAudience(testAudience),
		verifier.WithClock(clk.Now),
		verifier.WithJWKSFile(path),
	}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func fileClaims(clk *fakeClock) map[string]any {
	return map[string]any{
		"iss": "https://auth.example", "sub": "alice", "aud": testAudience, "jti": "j", "client_id": "c",
		"iat": clk.Now().Unix(), "exp": clk.Now().Add(15 * time.Minute).Unix(), "scope": "notes.read",
	}
}

func TestJWKSFileIsReReadWhenItChanges(t *testing.T) {
	k1, k2 := newES256Key(t), newES256Key(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, path, k1)
	clk := newClock()
	v := newFileVerifier(t, path, clk)
	acceptToken(t, v, mint(t, k1, fileClaims(clk), nil))

	writeJWKS(t, path, k2)
	// Within the interval the file is not read again, even for an unknown kid.
	rejectToken(t, v, mint(t, k2, fileClaims(clk), nil), verifier.ErrKeyNotFound)
	acceptToken(t, v, mint(t, k1, fileClaims(clk), nil))

	clk.Advance(verifier.DefaultJWKSMinInterval)
	acceptToken(t, v, mint(t, k2, fileClaims(clk), nil))
	rejectToken(t, v, mint(t, k1, fileClaims(clk), nil), verifier.ErrKeyNotFound)

	t.Run("a broken or missing file keeps the previous keys", func(t *testing.T) {
		if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
		clk.Advance(verifier.DefaultJWKSMinInterval)
		acceptToken(t, v, mint(t, k2, fileClaims(clk), nil))
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		clk.Advance(verifier.DefaultJWKSMinInterval)
		acceptToken(t, v, mint(t, k2, fileClaims(clk), nil))
		rejectToken(t, v, mint(t, k1, fileClaims(clk), nil), verifier.ErrUnavailable)
	})
	t.Run("New fails without the file", func(t *testing.T) {
		_, err := verifier.New(t.Context(), "https://auth.example", verifier.WithAudience(testAudience),
			verifier.WithJWKSFile(filepath.Join(t.TempDir(), "absent.json")))
		if err == nil {
			t.Fatal("New succeeded without a JWKS file")
		}
	})
}

// The kubelet updates a ConfigMap volume by writing a new timestamped directory and swapping
// the ..data symlink to it; jwks.json is a symlink to ..data/jwks.json.
func TestJWKSFileFollowsConfigMapSymlinkSwap(t *testing.T) {
	k1, k2, k3 := newES256Key(t), newES256Key(t), newES256Key(t)
	dir := t.TempDir()
	generation := 0
	publish := func(keys ...*keymaterial.Key) {
		t.Helper()
		generation++
		ts := fmt.Sprintf("..2026_03_01_12_00_%02d.%d", generation, generation)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ts, "jwks.json"), jwksDoc(t, keys...), 0o644); err != nil {
			t.Fatal(err)
		}
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(k1)
	if err := os.Symlink(filepath.Join("..data", "jwks.json"), filepath.Join(dir, "jwks.json")); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	v := newFileVerifier(t, filepath.Join(dir, "jwks.json"), clk)
	acceptToken(t, v, mint(t, k1, fileClaims(clk), nil))

	// Pre-publication: k2 joins, so both verify after the next re-read (here: stale set).
	publish(k1, k2)
	clk.Advance(verifier.DefaultJWKSMinInterval)
	acceptToken(t, v, mint(t, k1, fileClaims(clk), nil))
	acceptToken(t, v, mint(t, k2, fileClaims(clk), nil))

	// Revocation of k1 and a new k3: k1 stops verifying, k3 verifies.
	publish(k2, k3)
	clk.Advance(verifier.DefaultJWKSMinInterval)
	acceptToken(t, v, mint(t, k3, fileClaims(clk), nil))
	rejectToken(t, v, mint(t, k1, fileClaims(clk), nil), verifier.ErrKeyNotFound)
	acceptToken(t, v, mint(t, k2, fileClaims(clk), nil))
}
