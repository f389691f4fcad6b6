package memstore

import (
	"context"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/storetest"
)

// The store does not grow without bound: once every deadline has passed (on the callers'
// clock), the next operation sweeps everything away.
func TestSweepDropsExpiredRecords(t *testing.T) {
	s := New()
	ctx := context.Background()
	now := storetest.Now()
	for range 50 {
		f := storetest.NewFamily(t, s, now)
		if _, _, _, err := f.Rotate(t, s, now, 0); err != nil {
			t.Fatal(err)
		}
		_ = storetest.NewCode(t, s, now)
		must(t, s.RecordAccessToken(ctx, store.AccessTokenRecord{JTI: storetest.Secret(t), ClientID: "c", ExpiresAt: now.Add(time.Hour)}, now))
		must(t, s.UseAssertion(ctx, "c", storetest.Secret(t), now.Add(time.Minute), now))
		must(t, s.CreateSession(ctx, storetest.Secret(t), store.Session{Subject: "a", ExpiresAt: now.Add(time.Hour)}, time.Hour, now))
		must(t, s.PutAuthRequest(ctx, storetest.Secret(t), []byte("r"), now.Add(time.Hour), now))
		must(t, s.SaveConsent(ctx, storetest.Secret(t), "c", []string{"openid"}, now.Add(time.Hour), now))
		if _, _, err := s.Hit(ctx, storetest.Secret(t), 1, time.Minute, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.size(); n < 50*8 {
		t.Fatalf("only %d records before the sweep", n)
	}
	// A week and a day later (the families' absolute end plus their grace), one call sweeps.
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	later := now.Add(8 * 24 * time.Hour)
	if _, err := s.HasConsent(ctx, "x", "y", nil, later); err != nil {
		t.Fatal(err)
	}
	if n := s.size(); n != 0 {
		t.Fatalf("%d records left after the sweep, want 0", n)
	}
}

func (s *Store) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.codes) + len(s.families) + len(s.ats) + len(s.asserts) + len(s.sessions) +
		len(s.requests) + len(s.consents) + len(s.limits)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
