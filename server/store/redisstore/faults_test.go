package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
	"github.com/latchkey-dev/latchkey/server/store/storetest"
)

type call struct {
	name string
	fn   func(ctx context.Context) error
}

// everyMethod calls each method of the Store once, on records of f, as a request would.
func everyMethod(t *testing.T, s store.Store, f *storetest.Fixture, now time.Time) []call {
	ignoreBool := func(_ bool, err error) error { return err }
	return []call{
		{"Ping", s.Ping},
		{"CreateCode", func(ctx context.Context) error {
			return s.CreateCode(ctx, storetest.Secret(t), store.Hash(storetest.Secret(t)), store.Code{ExpiresAt: now.Add(time.Minute)}, now)
		}},
		{"GetCode", func(ctx context.Context) error {
			_, err := s.GetCode(ctx, f.Family, store.Hash(f.Code), now)
			return err
		}},
		{"RedeemCode", func(ctx context.Context) error {
			_, err := s.RedeemCode(ctx, f.Family, store.Hash(f.Code), f.Params(now), now)
			return err
		}},
		{"RotateRefresh", func(ctx context.Context) error {
			_, err := s.RotateRefresh(ctx, store.RotateParams{Family: f.Family, PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(storetest.Secret(t)), ClientID: "client-a", IdleLifetime: time.Hour}, now)
			return err
		}},
		{"LookupRefresh", func(ctx context.Context) error {
			_, err := s.LookupRefresh(ctx, f.Family, store.Hash(f.Refresh), now)
			return err
		}},
		{"RevokeRefresh", func(ctx context.Context) error {
			return s.RevokeRefresh(ctx, f.Family, store.Hash(f.Refresh), "client-a", now)
		}},
		{"RevokeFamily", func(ctx context.Context) error { return s.RevokeFamily(ctx, f.Family, now) }},
		{"RecordAccessToken", func(ctx context.Context) error {
			return s.RecordAccessToken(ctx, store.AccessTokenRecord{JTI: storetest.Secret(t), ClientID: "c", ExpiresAt: now.Add(time.Minute)}, now)
		}},
		{"AccessTokenActive", func(ctx context.Context) error {
			return ignoreBool(s.AccessTokenActive(ctx, f.JTI, f.Family, now))
		}},
		{"RevokeAccessToken", func(ctx context.Context) error { return s.RevokeAccessToken(ctx, f.JTI, f.Family, "client-a", now) }},
		{"UseAssertion", func(ctx context.Context) error {
			return s.UseAssertion(ctx, "c", storetest.Secret(t), now.Add(time.Minute), now)
		}},
		{"CreateSession", func(ctx context.Context) error {
			return s.CreateSession(ctx, "sess", store.Session{Subject: "a", ExpiresAt: now.Add(time.Hour)}, time.Hour, now)
		}},
		{"GetSession", func(ctx context.Context) error {
			_, err := s.GetSession(ctx, "sess", time.Hour, now)
			return err
		}},
		{"DeleteSession", func(ctx context.Context) error { return s.DeleteSession(ctx, "sess") }},
		{"PutAuthRequest", func(ctx context.Context) error {
			return s.PutAuthRequest(ctx, "req", []byte("r"), now.Add(time.Minute), now)
		}},
		{"GetAuthRequest", func(ctx context.Context) error {
			_, err := s.GetAuthRequest(ctx, "req", now)
			return err
		}},
		{"TakeAuthRequest", func(ctx context.Context) error {
			_, err := s.TakeAuthRequest(ctx, "req", now)
			return err
		}},
		{"SaveConsent", func(ctx context.Context) error {
			return s.SaveConsent(ctx, "alice", "c", []string{"openid"}, now.Add(time.Hour), now)
		}},
		{"HasConsent", func(ctx context.Context) error {
			return ignoreBool(s.HasConsent(ctx, "alice", "c", []string{"openid"}, now))
		}},
		{"RevokeConsent", func(ctx context.Context) error { return s.RevokeConsent(ctx, "alice", "c") }},
		{"Hit", func(ctx context.Context) error {
			_, _, err := s.Hit(ctx, "k", 1, time.Minute, now)
			return err
		}},
	}
}

// wantAllUnavailable calls every method and requires ErrUnavailable from each; it logs how
// long the slowest took, the budget an outage costs a request. timeout, if not zero, is the
// request deadline of each call.
func wantAllUnavailable(t *testing.T, calls []call, timeout time.Duration) {
	t.Helper()
	var slowest time.Duration
	var slowName string
	for _, c := range calls {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, timeout)
		}
		start := time.Now()
		err := c.fn(ctx)
		d := time.Since(start)
		cancel()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: got %v, want ErrUnavailable", c.name, err)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: an outage must not look like not found: %v", c.name, err)
		}
		if d > slowest {
			slowest, slowName = d, c.name
		}
	}
	t.Logf("every method failed with ErrUnavailable; slowest: %s after %v", slowName, slowest)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Case 76: with redis-server killed every method answers ErrUnavailable within the client's
// timeouts, and the same Store recovers by itself once Redis is back.
func TestKillAndRestart(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(client(t, srv.URL()))
	now := storetest.Now()
	f := storetest.NewCode(t, s, now)
	calls := everyMethod(t, s, f, now)

	srv.Kill()
	wantAllUnavailable(t, calls, 0)
	// Again, now that go-redis's dial circuit breaker may have opened.
	wantAllUnavailable(t, calls, 0)

	srv.Restart()
	start := time.Now()
	eventually(t, 10*time.Second, "store recovers after restart", func() error { return s.Ping(context.Background()) })
	t.Logf("recovered %v after the restart", time.Since(start))
	// Redis came back empty (no persistence): the old code fails closed, new state works.
	_, err := s.GetCode(context.Background(), f.Family, store.Hash(f.Code), now)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCode after restart: %v, want ErrNotFound", err)
	}
	g := storetest.NewFamily(t, s, now)
	if _, _, _, err := g.Rotate(t, s, now, 0); err != nil {
		t.Fatal(err)
	}
}

// Case 84: a Redis that accepts connections but never answers (the process stopped with
// SIGSTOP: the kernel still completes handshakes) is an outage too, ended by the client's read
// timeout or, sooner, by the caller's deadline.
func TestHungRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(client(t, srv.URL()))
	now := storetest.Now()
	f := storetest.NewFamily(t, s, now)
	calls := everyMethod(t, s, f, now)
	pid := srv.Pid()
	must(t, syscall.Kill(pid, syscall.SIGSTOP))
	cont := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)

	// Without a deadline the client's own timeouts end the call.
	wantAllUnavailable(t, calls[:3], 0)
	// With a request deadline every method ends by it.
	wantAllUnavailable(t, calls[3:], 300*time.Millisecond)

	cont()
	eventually(t, 5*time.Second, "store answers after SIGCONT", func() error {
		_, err := s.LookupRefresh(context.Background(), f.Family, store.Hash(f.Refresh), now)
		return err
	})
}

// Case 78: after FLUSHALL (a restart without persistence) every code, refresh token, access
// token, session and request fails closed.
func TestFlushAllFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(client(t, srv.URL()))
	ctx := context.Background()
	now := storetest.Now()
	code := storetest.NewCode(t, s, now)
	f := storetest.NewFamily(t, s, now)
	r0 := f.Refresh
	_, _, jti1, err := f.Rotate(t, s, now, 0)
	must(t, err)
	revoked := storetest.NewFamily(t, s, now)
	must(t, s.RevokeFamily(ctx, revoked.Family, now))
	cc := storetest.Secret(t)
	must(t, s.RecordAccessToken(ctx, store.AccessTokenRecord{JTI: cc, ClientID: "c", ExpiresAt: now.Add(time.Hour)}, now))
	must(t, s.CreateSession(ctx, "sess", store.Session{Subject: "a", ExpiresAt: now.Add(time.Hour)}, time.Hour, now))
	must(t, s.PutAuthRequest(ctx, "req", []byte("r"), now.Add(time.Hour), now))

	must(t, srv.Client(t).FlushAll(ctx).Err())

	_, err = s.GetCode(ctx, code.Family, store.Hash(code.Code), now)
	wantIs(t, err, store.ErrNotFound)
	_, err = s.RedeemCode(ctx, code.Family, store.Hash(code.Code), code.Params(now), now)
	wantIs(t, err, store.ErrNotFound)
	for _, fx := range []*storetest.Fixture{f, revoked} {
		for _, rt := range []string{fx.Refresh, r0} {
			_, err = s.LookupRefresh(ctx, fx.Family, store.Hash(rt), now)
			wantIs(t, err, store.ErrNotFound)
			_, _, _, err = fx.RotateFrom(t, s, rt, now, time.Minute)
			wantIs(t, err, store.ErrNotFound)
		}
	}
	for _, at := range [][2]string{{f.JTI, f.Family}, {jti1, f.Family}, {revoked.JTI, revoked.Family}, {cc, ""}} {
		active, err := s.AccessTokenActive(ctx, at[0], at[1], now)
		must(t, err)
		if active {
			t.Fatalf("access token %s active after FLUSHALL", at[0])
		}
	}
	_, err = s.GetSession(ctx, "sess", time.Hour, now)
	wantIs(t, err, store.ErrNotFound)
	_, err = s.TakeAuthRequest(ctx, "req", now)
	wantIs(t, err, store.ErrNotFound)
}

// Case 80: after SCRIPT FLUSH the next call reloads the script (NOSCRIPT -> EVAL).
func TestScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(client(t, srv.URL()))
	now := storetest.Now()
	f := storetest.NewFamily(t, s, now)
	_, _, _, err := f.Rotate(t, s, now, 0)
	must(t, err)
	must(t, srv.Client(t).ScriptFlush(context.Background()).Err())
	_, _, _, err = f.Rotate(t, s, now, 0)
	must(t, err)
	g := storetest.NewFamily(t, s, now)
	must(t, srv.Client(t).ScriptFlush(context.Background()).Err())
	active, err := s.AccessTokenActive(context.Background(), g.JTI, g.Family, now)
	must(t, err)
	if !active {
		t.Fatal("access token inactive after SCRIPT FLUSH")
	}
}

// Case 82: a key of the wrong type makes the script fail before its first write, so nothing
// is left half done (no code burned without a family, no token used without a successor).
func TestWrongTypeLeavesNoPartialState(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := redisstore.New(client(t, srv.URL()))
	ctx := context.Background()
	now := storetest.Now()
	tag := func(f *storetest.Fixture) string { return "lk:{f:" + f.Family + "}" }
	plant := func(key string) {
		t.Helper()
		must(t, rdb.Set(ctx, key, "planted", time.Minute).Err())
	}
	wantCorrupt := func(err error) {
		t.Helper()
		if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "LKCORRUPT") {
			t.Fatalf("got %v, want a corrupt-state error", err)
		}
	}

	t.Run("family key at redemption", func(t *testing.T) {
		f := storetest.NewCode(t, s, now)
		plant(tag(f) + ":fam")
		_, err := s.RedeemCode(ctx, f.Family, store.Hash(f.Code), f.Params(now), now)
		wantCorrupt(err)
		_, err = s.GetCode(ctx, f.Family, store.Hash(f.Code), now)
		must(t, err) // not burned
		active, err := s.AccessTokenActive(ctx, f.JTI, "", now)
		must(t, err)
		n, err := rdb.Exists(ctx, tag(f)+":at:"+f.JTI, tag(f)+":used").Result()
		must(t, err)
		if active || n != 0 {
			t.Fatal("redemption wrote before failing")
		}
	})
	t.Run("access token key at redemption", func(t *testing.T) {
		f := storetest.NewCode(t, s, now)
		must(t, rdb.HSet(ctx, tag(f)+":at:"+f.JTI, "x", "y").Err())
		_, err := s.RedeemCode(ctx, f.Family, store.Hash(f.Code), f.Params(now), now)
		wantCorrupt(err)
		_, err = s.GetCode(ctx, f.Family, store.Hash(f.Code), now)
		must(t, err)
		wantNoKey(t, rdb, tag(f)+":fam")
	})
	t.Run("used key at rotation", func(t *testing.T) {
		f := storetest.NewFamily(t, s, now)
		plant(tag(f) + ":used")
		_, next, jti, err := f.Rotate(t, s, now, 0)
		wantCorrupt(err)
		live, err := s.LookupRefresh(ctx, f.Family, store.Hash(f.Refresh), now)
		must(t, err)
		if live.Generation != 1 {
			t.Fatalf("generation = %d, want 1", live.Generation)
		}
		_, err = s.LookupRefresh(ctx, f.Family, store.Hash(next), now)
		wantIs(t, err, store.ErrNotFound)
		wantNoKey(t, rdb, tag(f)+":at:"+jti)
	})
	t.Run("access token key at rotation", func(t *testing.T) {
		f := storetest.NewFamily(t, s, now)
		jti := storetest.Secret(t)
		must(t, rdb.HSet(ctx, tag(f)+":at:"+jti, "x", "y").Err())
		_, err := s.RotateRefresh(ctx, store.RotateParams{
			Family: f.Family, PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(storetest.Secret(t)),
			ClientID: "client-a", IdleLifetime: time.Hour,
			AccessToken: store.AccessTokenRecord{JTI: jti, ClientID: "client-a", ExpiresAt: now.Add(time.Minute)},
		}, now)
		wantCorrupt(err)
		live, err := s.LookupRefresh(ctx, f.Family, store.Hash(f.Refresh), now)
		must(t, err)
		if live.Generation != 1 {
			t.Fatalf("generation = %d, want 1", live.Generation)
		}
		wantNoKey(t, rdb, tag(f)+":used")
	})
	t.Run("family key at replay", func(t *testing.T) {
		f := storetest.NewFamily(t, s, now)
		before, err := rdb.HGetAll(ctx, tag(f)+":code:"+store.Hash(f.Code)).Result()
		must(t, err)
		must(t, rdb.Rename(ctx, tag(f)+":fam", tag(f)+":saved").Err())
		plant(tag(f) + ":fam")
		p := f.Params(now)
		p.AccessToken.JTI = storetest.Secret(t)
		_, err = s.RedeemCode(ctx, f.Family, store.Hash(f.Code), p, now)
		wantCorrupt(err)
		after, err := rdb.HGetAll(ctx, tag(f)+":code:"+store.Hash(f.Code)).Result()
		must(t, err)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatalf("code tombstone changed: %v -> %v", before, after)
		}
	})
	t.Run("other records", func(t *testing.T) {
		jti := storetest.Secret(t)
		must(t, rdb.HSet(ctx, "lk:{j:"+jti+"}:at", "x", "y").Err())
		wantCorrupt(s.RecordAccessToken(ctx, store.AccessTokenRecord{JTI: jti, ClientID: "c", ExpiresAt: now.Add(time.Minute)}, now))
		wantCorrupt(s.RevokeAccessToken(ctx, jti, "", "c", now))
		must(t, rdb.HSet(ctx, "lk:{a:c:"+jti+"}", "x", "y").Err())
		wantCorrupt(s.UseAssertion(ctx, "c", jti, now.Add(time.Minute), now))
		plant("lk:{u:alice}:c:c")
		wantCorrupt(s.SaveConsent(ctx, "alice", "c", []string{"openid"}, now.Add(time.Hour), now))
		_, err := s.HasConsent(ctx, "alice", "c", []string{"openid"}, now)
		if err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("HasConsent on a wrong-type key: %v", err)
		}
	})
}

func wantNoKey(t *testing.T, rdb *redis.Client, key string) {
	t.Helper()
	n, err := rdb.Exists(context.Background(), key).Result()
	must(t, err)
	if n != 0 {
		t.Fatalf("key %s was written", key)
	}
}

func wantIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got %v, want %v", err, target)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// loseReply is a go-redis hook that, once armed, lets the next script run on the server and
// then loses its reply, as when Redis or the network dies between the commit and the answer.
type loseReply struct{ armed atomic.Bool }

func (l *loseReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *loseReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (l *loseReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		name := strings.ToLower(cmd.Name())
		if err == nil && (name == "evalsha" || name == "eval") && l.armed.CompareAndSwap(true, false) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
}

// Cases 34 and 77: a rotation commits but its reply is lost. The caller sees ErrUnavailable
// (503); the client then retries with the old token. With reuseInterval 0 that is reuse and
// the family is revoked (the user logs in again); within a reuse interval it gets a new
// successor that replaces the lost one. Either way there are never two live successors.
func TestLostRotationReply(t *testing.T) {
	srv := redistest.Start(t)
	rdb := client(t, srv.URL())
	lose := &loseReply{}
	rdb.AddHook(lose)
	s := redisstore.New(rdb)
	now := storetest.Now()
	for _, reuse := range []time.Duration{0, 10 * time.Second} {
		t.Run(reuse.String(), func(t *testing.T) {
			f := storetest.NewFamily(t, s, now)
			r0 := f.Refresh
			lose.armed.Store(true)
			_, lost, _, err := f.Rotate(t, s, now, reuse)
			wantIs(t, err, store.ErrUnavailable)
			// The rotation did commit.
			_, err = s.LookupRefresh(context.Background(), f.Family, store.Hash(lost), now)
			must(t, err)
			retry := now.Add(time.Second)
			_, next, _, err := f.RotateFrom(t, s, r0, retry, reuse)
			if reuse == 0 {
				wantIs(t, err, store.ErrRefreshReused)
			} else {
				must(t, err)
			}
			live := 0
			for _, rt := range []string{r0, lost, next} {
				if _, err := s.LookupRefresh(context.Background(), f.Family, store.Hash(rt), retry); err == nil {
					live++
				}
			}
			if want := map[time.Duration]int{0: 0, 10 * time.Second: 1}[reuse]; live != want {
				t.Fatalf("%d live refresh tokens, want %d", live, want)
			}
		})
	}
}
