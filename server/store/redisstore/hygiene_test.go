package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/internal/retention"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
	"github.com/latchkey-dev/latchkey/server/store/storetest"
)

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the fault tests cause hundreds on purpose.
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

// Cases 41 and DESIGN "State in Redis": after a full flow every key has a TTL, and no key or
// value holds a raw code, refresh token, PKCE verifier, session id or request id.
func TestHygiene(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := redisstore.New(client(t, srv.URL()))
	ctx := context.Background()
	now := storetest.Now()
	var raw []string

	f := storetest.NewFamily(t, s, now)
	raw = append(raw, f.Code, f.Verifier, f.Refresh)
	r0 := f.Refresh
	_, r1, _, err := f.Rotate(t, s, now, time.Minute)
	must(t, err)
	_, r2, _, err := f.RotateFrom(t, s, r0, now.Add(time.Second), time.Minute) // replaces r1
	must(t, err)
	raw = append(raw, r1, r2)

	pending := storetest.NewCode(t, s, now)
	raw = append(raw, pending.Code, pending.Verifier)

	replayed := storetest.NewFamily(t, s, now)
	raw = append(raw, replayed.Code, replayed.Verifier, replayed.Refresh)
	p := replayed.Params(now)
	p.AccessToken.JTI = storetest.Secret(t)
	_, err = s.RedeemCode(ctx, replayed.Family, store.Hash(replayed.Code), p, now)
	wantIs(t, err, store.ErrCodeReused)

	revoked := storetest.NewFamily(t, s, now)
	raw = append(raw, revoked.Code, revoked.Verifier, revoked.Refresh)
	must(t, s.RevokeRefresh(ctx, revoked.Family, store.Hash(revoked.Refresh), "client-a", now))

	must(t, s.RecordAccessToken(ctx, store.AccessTokenRecord{JTI: storetest.Secret(t), ClientID: "c", ExpiresAt: now.Add(time.Hour)}, now))
	must(t, s.UseAssertion(ctx, "c", storetest.Secret(t), now.Add(time.Minute), now))
	sessionID, requestID := storetest.Secret(t), storetest.Secret(t)
	raw = append(raw, sessionID, requestID)
	must(t, s.CreateSession(ctx, store.Hash(sessionID), store.Session{Subject: "alice", AuthTime: now, ExpiresAt: now.Add(12 * time.Hour)}, time.Hour, now))
	_, err = s.GetSession(ctx, store.Hash(sessionID), time.Hour, now.Add(time.Minute))
	must(t, err)
	must(t, s.PutAuthRequest(ctx, store.Hash(requestID), []byte(`{"client_id":"c","state":"xyz"}`), now.Add(10*time.Minute), now))
	must(t, s.SaveConsent(ctx, "alice", "c", []string{"openid", "profile"}, now.Add(24*time.Hour), now))
	_, _, err = s.Hit(ctx, "login:alice", 1, time.Minute, now)
	must(t, err)

	keys, err := rdb.Keys(ctx, "*").Result()
	must(t, err)
	sort.Strings(keys)
	kinds := map[string]bool{}
	for _, k := range keys {
		ttl, err := rdb.PTTL(ctx, k).Result()
		must(t, err)
		if ttl <= 0 {
			t.Errorf("key %s has TTL %v", k, ttl)
		}
		dump := k + "\n" + value(t, rdb, k)
		for _, r := range raw {
			if strings.Contains(dump, r) {
				t.Errorf("key %s holds a raw secret", k)
			}
		}
		kinds[kind(k)] = true
		t.Logf("%-70s TTL %v", k, ttl.Round(time.Second))
	}
	for _, want := range []string{"code", "fam", "used", "famat", "ccat", "assertion", "session", "request", "consent", "limit"} {
		if !kinds[want] {
			t.Errorf("no %s key found; kinds: %v", want, kinds)
		}
	}

	// TTLs follow the records: a pending code its 60 s, a tombstone its 10 min, a family its
	// absolute expiry plus the access-token grace.
	tag := "lk:{f:" + pending.Family + "}"
	wantTTL(t, rdb, tag+":code:"+store.Hash(pending.Code), 60*time.Second)
	tag = "lk:{f:" + f.Family + "}"
	wantTTL(t, rdb, tag+":code:"+store.Hash(f.Code), retention.CodeTombstone)
	wantTTL(t, rdb, tag+":fam", f.Expires.Sub(now)+retention.AccessTokenGrace)
	wantTTL(t, rdb, tag+":used", f.Expires.Sub(now)+retention.AccessTokenGrace)
}

// wantTTL requires a TTL within max and not far below it (the test takes well under a minute).
func wantTTL(t *testing.T, rdb *redis.Client, key string, max time.Duration) {
	t.Helper()
	ttl, err := rdb.PTTL(context.Background(), key).Result()
	must(t, err)
	if ttl > max || ttl < max-time.Minute {
		t.Errorf("TTL of %s = %v, want about %v", key, ttl, max)
	}
}

func value(t *testing.T, rdb *redis.Client, key string) string {
	ctx := context.Background()
	typ, err := rdb.Type(ctx, key).Result()
	must(t, err)
	switch typ {
	case "string":
		v, err := rdb.Get(ctx, key).Result()
		must(t, err)
		return v
	case "hash":
		v, err := rdb.HGetAll(ctx, key).Result()
		must(t, err)
		return fmt.Sprint(v)
	}
	t.Fatalf("key %s is a %s", key, typ)
	return ""
}

func kind(key string) string {
	switch {
	case strings.HasPrefix(key, "lk:{f:") && strings.Contains(key, "}:code:"):
		return "code"
	case strings.HasPrefix(key, "lk:{f:") && strings.HasSuffix(key, "}:fam"):
		return "fam"
	case strings.HasPrefix(key, "lk:{f:") && strings.HasSuffix(key, "}:used"):
		return "used"
	case strings.HasPrefix(key, "lk:{f:") && strings.Contains(key, "}:at:"):
		return "famat"
	case strings.HasPrefix(key, "lk:{j:"):
		return "ccat"
	case strings.HasPrefix(key, "lk:{a:"):
		return "assertion"
	case strings.HasPrefix(key, "lk:{s:"):
		return "session"
	case strings.HasPrefix(key, "lk:{r:"):
		return "request"
	case strings.HasPrefix(key, "lk:{u:"):
		return "consent"
	case strings.HasPrefix(key, "lk:{l:"):
		return "limit"
	}
	return "unknown:" + key
}
