package timesync_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/internal/timesync"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
)

func TestOffset(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		t0, t1     time.Duration // local times around the read, from base
		ref        time.Duration // reference time read, from base
		wantOffset time.Duration
	}{
		{"same clock, instant", 0, 0, 0, 0},
		{"same clock, 10ms round trip", 0, 10 * time.Millisecond, 5 * time.Millisecond, 0},
		{"local 2s ahead", 2 * time.Second, 2*time.Second + 4*time.Millisecond, 2 * time.Millisecond, -2 * time.Second},
		{"local 2s behind", -2 * time.Second, -2*time.Second + 4*time.Millisecond, 2 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := timesync.Offset(base.Add(tc.t0), base.Add(tc.t1), base.Add(tc.ref))
			if got != tc.wantOffset {
				t.Fatalf("Offset = %s, want %s", got, tc.wantOffset)
			}
		})
	}
}

type fixedSource struct {
	t   time.Time
	err error
}

func (f fixedSource) Time(context.Context) (time.Time, error) { return f.t, f.err }

func TestSyncRefusesAHugeOffsetAndKeepsTheLastOne(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	local := clocktesting.NewFakePassiveClock(now)
	c := timesync.New(local, fixedSource{t: now.Add(3 * time.Second)})
	if c.Synced() {
		t.Fatal("synced before any Sync")
	}
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.Now(); !got.Equal(now.Add(3 * time.Second)) {
		t.Fatalf("Now = %s, want the reference %s", got, now.Add(3*time.Second))
	}
	// A reference an hour off is a broken clock: refused, and the last offset stays.
	c2 := timesync.New(local, fixedSource{t: now.Add(time.Hour)})
	if err := c2.Sync(context.Background()); err == nil {
		t.Fatal("an hour's offset was accepted")
	}
	if c2.Offset() != 0 || c2.Synced() {
		t.Fatalf("offset %s after a refused sync", c2.Offset())
	}
	// An unreachable source keeps the last offset rather than jumping back.
	c3 := timesync.New(local, &flaky{ok: fixedSource{t: now.Add(time.Second)}})
	if err := c3.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c3.Sync(context.Background()); err == nil {
		t.Fatal("the second sync should have failed")
	}
	if c3.Offset() != time.Second {
		t.Fatalf("offset = %s after a failed sync, want the last one (1s)", c3.Offset())
	}
}

type flaky struct {
	ok    fixedSource
	calls int
}

func (f *flaky) Time(ctx context.Context) (time.Time, error) {
	f.calls++
	if f.calls > 1 {
		return time.Time{}, errors.New("connection refused")
	}
	return f.ok.Time(ctx)
}

// TestReplicasWithSkewedClocksAgree is SECURITY-CASES 84's clock clause: three replicas whose
// local clocks are 2 s apart, sharing one real Redis, read the same time once synced, so they
// agree on every expiry.
func TestReplicasWithSkewedClocksAgree(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	st := redisstore.New(rdb)

	var clocks []*timesync.Clock
	for _, skew := range []time.Duration{-2 * time.Second, 0, 2 * time.Second} {
		c := timesync.New(skewed(skew), st)
		if err := c.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		clocks = append(clocks, c)
	}
	// Read all three at one instant (as far as one goroutine can).
	a, b, c := clocks[0].Now(), clocks[1].Now(), clocks[2].Now()
	for _, d := range []time.Duration{b.Sub(a), c.Sub(b), c.Sub(a)} {
		if d < 0 {
			d = -d
		}
		// Unsynced they would be 2 s and 4 s apart; synced, within a loopback round trip.
		if d > 250*time.Millisecond {
			t.Fatalf("synced replicas disagree by %s (offsets %s, %s, %s)", d,
				clocks[0].Offset(), clocks[1].Offset(), clocks[2].Offset())
		}
	}
	// A code created at replica A's now with a 60 s lifetime is judged alike by B and C.
	expires := a.Add(60 * time.Second)
	for i, cl := range clocks {
		if left := expires.Sub(cl.Now()); left < 59*time.Second || left > 61*time.Second {
			t.Fatalf("replica %d sees %s left on a 60 s code", i, left)
		}
	}

	// Redis stops: Run logs, keeps the offset, and the clock does not jump.
	before := clocks[2].Offset()
	srv.Kill()
	if err := clocks[2].Sync(context.Background()); err == nil {
		t.Fatal("sync succeeded with Redis down")
	}
	if clocks[2].Offset() != before {
		t.Fatal("offset changed while Redis was down")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- clocks[2].Run(ctx, 10*time.Millisecond, logr.Discard()) }()
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := clocks[2].Sync(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no sync after Redis restarted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// skewed is the real clock shifted by d.
type skewed time.Duration

func (s skewed) Now() time.Time                  { return time.Now().Add(time.Duration(s)) }
func (s skewed) Since(t time.Time) time.Duration { return s.Now().Sub(t) }
