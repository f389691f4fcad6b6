package ratelimit_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/server/ratelimit"
	"github.com/latchkey-dev/latchkey/server/store/memstore"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestAdmitCountsPerClientAndEndpoint(t *testing.T) {
	ctx := context.Background()
	l := &ratelimit.Limiter{Store: memstore.New()}
	lim := ratelimit.Limit{Requests: 2, Window: time.Minute}
	now := epoch.Add(15 * time.Second)
	for i := range 2 {
		d, err := l.Admit(ctx, "a", "token", lim, true, now)
		if err != nil || d.Refused() {
			t.Fatalf("request %d: %+v, %v", i+1, d, err)
		}
	}
	d, err := l.Admit(ctx, "a", "token", lim, true, now)
	if err != nil || !d.Refused() || d.Reason != ratelimit.ReasonRequests || d.RetryAfter != 45*time.Second {
		t.Fatalf("third request: %+v, %v; want refused for 45s", d, err)
	}
	for _, other := range []struct{ client, endpoint string }{{"b", "token"}, {"a", "introspect"}} {
		if d, err := l.Admit(ctx, other.client, other.endpoint, lim, true, now); err != nil || d.Refused() {
			t.Fatalf("%v: %+v, %v", other, d, err)
		}
	}
	if d, err := l.Admit(ctx, "a", "token", ratelimit.Limit{}, false, now); err != nil || d.Refused() {
		t.Fatalf("no limit: %+v, %v", d, err)
	}
}

func TestFailuresLockTheClientID(t *testing.T) {
	ctx := context.Background()
	l := &ratelimit.Limiter{Store: memstore.New(), AuthFailures: ratelimit.Limit{Requests: 3, Window: 5 * time.Minute}}
	now := epoch.Add(time.Minute)
	for i := range 3 {
		if d, err := l.Fail(ctx, "a", now); err != nil || d.Refused() {
			t.Fatalf("failure %d: %+v, %v", i+1, d, err)
		}
	}
	d, err := l.Fail(ctx, "a", now)
	if err != nil || !d.Refused() || d.Reason != ratelimit.ReasonAuthFailures || d.RetryAfter != 4*time.Minute {
		t.Fatalf("fourth failure: %+v, %v", d, err)
	}
	// A locked client_id is refused even when it authenticates, with the longer of the waits.
	d, err = l.Admit(ctx, "a", "token", ratelimit.Limit{Requests: 100, Window: time.Minute}, true, now)
	if err != nil || d.Reason != ratelimit.ReasonAuthFailures || d.RetryAfter != 4*time.Minute {
		t.Fatalf("admit while locked: %+v, %v", d, err)
	}
	// Public clients (no credential) are not checked; other clients are not locked.
	for _, c := range []struct {
		id    string
		check bool
	}{{"a", false}, {"b", true}} {
		if d, err := l.Admit(ctx, c.id, "token", ratelimit.Limit{}, c.check, now); err != nil || d.Refused() {
			t.Fatalf("%+v: %+v, %v", c, d, err)
		}
	}
	if d, _ := l.Admit(ctx, "a", "token", ratelimit.Limit{}, true, now.Add(4*time.Minute)); d.Refused() {
		t.Fatalf("still locked in the next window: %+v", d)
	}
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	ratelimit.Write(rec, ratelimit.Decision{RetryAfter: 1500 * time.Millisecond, Reason: ratelimit.ReasonRequests})
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" || rec.Header().Get("Cache-Control") != "no-store" ||
		rec.Body.String() != `{"error":"slow_down","error_description":"too many requests, retry after 2 seconds"}`+"\n" {
		t.Fatalf("%d %v %q", rec.Code, rec.Header(), rec.Body)
	}
}
