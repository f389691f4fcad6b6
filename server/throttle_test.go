package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/ratelimit"
)

// assertThrottled checks a 429: Retry-After in whole seconds, no-store, and the slow_down body.
func assertThrottled(t *testing.T, rec *httptest.ResponseRecorder, retryAfter string) {
	t.Helper()
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429; body %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Retry-After"); got != retryAfter {
		t.Fatalf("Retry-After = %q, want %q", got, retryAfter)
	}
	assertNoStore(t, rec)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var body map[string]string
	decode(t, rec.Body.Bytes(), &body)
	if body["error"] != "slow_down" || body["error_description"] == "" || len(body) != 2 {
		t.Fatalf("body %s, want error slow_down with a description", rec.Body)
	}
}

// spec.rateLimit of an OAuthClient limits its requests per endpoint; another client, and the
// same client at another endpoint, are not affected; the next window admits it again.
func TestClientRateLimit(t *testing.T) {
	limited, limitedSecret := servertest.ConfidentialClient("limited", "apps", servertest.WithClientID("limited"),
		servertest.WithRateLimit(3, time.Minute))
	e := newEnv(t, withObjects(limited, limitedSecret))
	secret := servertest.SecretOf(limitedSecret)
	e.logs.forbid(secret)
	// Align the fake clock 10 s into a minute, so the window's end is known.
	e.clk.SetTime(e.clk.Now().Truncate(time.Minute).Add(10 * time.Second))
	cc := url.Values{"grant_type": {"client_credentials"}}
	token := func() *httptest.ResponseRecorder { return e.post("/token", cc, basic("limited", secret)) }

	for i := range 3 {
		if rec := token(); rec.Code != 200 {
			t.Fatalf("request %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	assertThrottled(t, token(), "50")
	assertThrottled(t, token(), "50")

	t.Run("other clients are not affected", func(t *testing.T) {
		for range 5 {
			e.cc(nil)
		}
	})
	t.Run("each endpoint counts on its own", func(t *testing.T) {
		rec := e.post("/introspect", url.Values{"token": {"x.y.z"}}, basic("limited", secret))
		if rec.Code != 200 {
			t.Fatalf("introspect: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("the next window admits it again", func(t *testing.T) {
		e.clk.Step(50 * time.Second)
		if rec := token(); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
	t.Run("requests 0 turns the limit off", func(t *testing.T) {
		zero := int32(0)
		limited.Spec.RateLimit.Requests = &zero
		servertest.Update(t, e.reader, limited)
		for i := range 10 {
			if rec := token(); rec.Code != 200 {
				t.Fatalf("request %d: %d %s", i+1, rec.Code, rec.Body)
			}
		}
	})
	if got := metricValue(t, e, "latchkey_server_requests_total", map[string]string{"endpoint": "token", "outcome": "slow_down"}); got != 2 {
		t.Fatalf("requests_total{outcome=slow_down} = %v, want 2", got)
	}
}

// SECURITY-CASES 48: wrong secrets for one client_id are throttled, concurrent failures all
// count, the right secret is refused too while the client_id is locked, and other clients are
// not affected.
func TestClientAuthFailuresThrottled(t *testing.T) {
	const limit = 5
	other, otherSecret := servertest.ConfidentialClient("other", "apps", servertest.WithClientID("other"))
	spa := servertest.PublicClient("spa", "apps", servertest.WithClientID("spa"))
	e := newEnv(t, withObjects(other, otherSecret, spa), withOptions(func(o *server.Options) {
		o.ClientAuthFailures = ratelimit.Limit{Requests: limit, Window: 5 * time.Minute}
	}))
	e.clk.SetTime(e.clk.Now().Truncate(5 * time.Minute).Add(time.Minute))
	cc := url.Values{"grant_type": {"client_credentials"}}

	const burst = 50
	codes := make([]int, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			rec := e.post("/token", cc, basic("svc", "wrong-secret-"+string(rune('a'+i%26))))
			codes[i] = rec.Code
		})
	}
	wg.Wait()
	n401, n429 := 0, 0
	for _, c := range codes {
		switch c {
		case 401:
			n401++
		case 429:
			n429++
		default:
			t.Fatalf("status %d in the burst", c)
		}
	}
	if n401 != limit || n429 != burst-limit {
		t.Fatalf("burst of %d wrong secrets: %d x 401, %d x 429; want %d and %d", burst, n401, n429, limit, burst-limit)
	}

	t.Run("the right secret is refused while locked", func(t *testing.T) {
		assertThrottled(t, e.post("/token", cc, basic("svc", e.svcSecret)), "240")
		assertThrottled(t, e.post("/introspect", url.Values{"token": {"x.y.z"}}, basic("svc", e.svcSecret)), "240")
	})
	t.Run("other clients are not affected", func(t *testing.T) {
		if rec := e.post("/token", cc, basic("other", servertest.SecretOf(otherSecret))); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
	t.Run("unknown and public client_ids are not counted", func(t *testing.T) {
		for range limit + 2 {
			assertError(t, e.post("/token", cc, basic("nobody", "x")), 401, "invalid_client", "client authentication failed")
			assertError(t, e.post("/token", cc, basic("spa", "x")), 401, "invalid_client", "client authentication failed")
		}
	})
	t.Run("the lock ends with its window", func(t *testing.T) {
		e.clk.Step(4 * time.Minute)
		if rec := e.post("/token", cc, basic("svc", e.svcSecret)); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
}

// A confidential client whose Secret this server does not hold yet (just created, still
// propagating to the cache) fails authentication for the server's own reason: those failures
// are not counted, so the client is not locked out when its Secret arrives.
func TestClientAuthFailuresWithoutSecretNotCounted(t *testing.T) {
	const limit = 3
	late, lateSecret := servertest.ConfidentialClient("late", "apps", servertest.WithClientID("late"))
	e := newEnv(t, withObjects(late), withOptions(func(o *server.Options) {
		o.ClientAuthFailures = ratelimit.Limit{Requests: limit, Window: 5 * time.Minute}
	}))
	e.clk.SetTime(e.clk.Now().Truncate(5 * time.Minute).Add(time.Minute))
	cc := url.Values{"grant_type": {"client_credentials"}}
	secret := servertest.SecretOf(lateSecret)
	for range 4 * limit {
		assertError(t, e.post("/token", cc, basic("late", secret)), 401, "invalid_client", "client authentication failed")
	}
	if err := e.reader.Create(ctx(), lateSecret); err != nil {
		t.Fatal(err)
	}
	if rec := e.post("/token", cc, basic("late", secret)); rec.Code != 200 {
		t.Fatalf("once its Secret arrived: %d %s", rec.Code, rec.Body)
	}
	// With the Secret present, wrong secrets count again.
	for range limit {
		assertError(t, e.post("/token", cc, basic("late", "wrong")), 401, "invalid_client", "client authentication failed")
	}
	assertThrottled(t, e.post("/token", cc, basic("late", "wrong")), "240")
}

// The limiter fails closed with the store: Redis down is 503 temporarily_unavailable at every
// throttled endpoint, for a right and a wrong secret alike, never 500 and never unthrottled.
func TestClientRateLimitStoreDown(t *testing.T) {
	e := newEnv(t)
	e.redis.Kill()
	cc := url.Values{"grant_type": {"client_credentials"}}
	assertError(t, e.post("/token", cc, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
	assertError(t, e.post("/token", cc, basic("svc", "wrong")), 503, "temporarily_unavailable", unavailable)
	assertError(t, e.post("/introspect", url.Values{"token": {"x.y.z"}}, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
	assertError(t, e.post("/revoke", url.Values{"token": {"x.y"}}, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
}
