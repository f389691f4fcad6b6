package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
	"github.com/latchkey-dev/latchkey/server/store/storetest"
)

// startSentinel starts one Sentinel watching the master on masterPort as "mymaster", quorum 1,
// quick to declare it down. redistest has no Sentinel mode: a Sentinel needs a writable config
// file, given before any option.
func startSentinel(t *testing.T, masterPort int) (string, *redis.SentinelClient) {
	t.Helper()
	dir := t.TempDir()
	port := redistest.FreePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
logfile %s
sentinel monitor mymaster 127.0.0.1 %d 1
sentinel down-after-milliseconds mymaster 500
sentinel failover-timeout mymaster 5000
sentinel parallel-syncs mymaster 1
`, port, dir, filepath.Join(dir, "sentinel.log"), masterPort)), 0o600))
	cmd := exec.Command(redistest.Binary(t), conf, "--sentinel")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = sc.Close() })
	eventually(t, 10*time.Second, "sentinel answers and knows the replica", func() error {
		replicas, err := sc.Replicas(context.Background(), "mymaster").Result()
		if err != nil {
			return err
		}
		if len(replicas) == 0 {
			return errors.New("no replica known yet")
		}
		return nil
	})
	return addr, sc
}

// startReplicated starts a master and a replica of it, and waits until the replica is in sync.
func startReplicated(t *testing.T) (master, replica *redistest.Server) {
	t.Helper()
	master = redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica = redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	waitLinkUp(t, replica)
	return master, replica
}

// waitLinkUp waits until srv is a replica whose link to its master is up.
func waitLinkUp(t *testing.T, srv *redistest.Server) {
	t.Helper()
	rc := srv.Client(t)
	eventually(t, 20*time.Second, "replica "+srv.Addr+" in sync", func() error {
		info, err := rc.Info(context.Background(), "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
			return errors.New("link not up")
		}
		return nil
	})
}

// waitRecorder keeps what WithWaitObserver reports.
type waitRecorder struct {
	mu    sync.Mutex
	waits []waitCall
}

type waitCall struct {
	op            string
	acked, wanted int
	err           error
}

func (r *waitRecorder) option() redisstore.Option {
	return redisstore.WithWaitObserver(func(op string, acked, wanted int, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.waits = append(r.waits, waitCall{op, acked, wanted, err})
	})
}

// take returns the recorded calls and forgets them.
func (r *waitRecorder) take() []waitCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.waits
	r.waits = nil
	return w
}

// famField reads a field of a family's record straight from one Redis node.
func famField(t *testing.T, rdb *redis.Client, family, field string) (string, error) {
	t.Helper()
	return rdb.HGet(context.Background(), "lk:{f:"+family+"}:fam", field).Result()
}

// Decision D5: with WithWaitReplicas each write that decides a token's fate waits for the
// replica on the connection that wrote it, so the replica holds the write when the call
// returns. When no replica acknowledges within the timeout the call fails closed with
// ErrUnavailable (503): the write happened on the master and is not undone, but no token goes
// out on its strength and no revocation is reported done. A repeat of the same call is
// recognised (same result) and succeeds once a replica is back.
func TestWaitReplicas(t *testing.T) {
	master, replica := startReplicated(t)
	ctx := context.Background()
	rc := replica.Client(t)
	rec := &waitRecorder{}
	rdb := client(t, master.URL())
	// WAIT returns as soon as the replica acknowledges; the generous timeout only keeps a
	// loaded test machine from turning replication lag into a shortfall.
	s := redisstore.New(rdb, redisstore.WithWaitReplicas(1, 5*time.Second), rec.option())
	now := storetest.Now()
	f := storetest.NewFamily(t, s, now)
	for range 3 {
		_, _, _, err := f.Rotate(t, s, now, 0)
		must(t, err)
		// The replica already has it: read it there, right away.
		cur, err := famField(t, rc, f.Family, "cur")
		must(t, err)
		if cur != store.Hash(f.Refresh) {
			t.Fatal("the replica lacks the rotation that WAIT acknowledged")
		}
	}
	info, err := master.Client(t).Info(ctx, "commandstats").Result()
	must(t, err)
	if !strings.Contains(info, "cmdstat_wait:calls=4,") {
		t.Fatalf("master did not run WAIT 4 times:\n%s", info)
	}
	waits := rec.take()
	if len(waits) != 4 || waits[0].op != "redeem authorization code" || waits[3].op != "rotate refresh token" {
		t.Fatalf("observer saw %+v", waits)
	}
	for _, w := range waits {
		if w.acked != 1 || w.wanted != 1 || w.err != nil {
			t.Fatalf("observer saw %+v", w)
		}
	}
	// Calls that write nothing durable do not wait.
	_, err = s.LookupRefresh(ctx, f.Family, store.Hash(f.Refresh), now)
	must(t, err)
	if w := rec.take(); len(w) != 0 {
		t.Fatalf("a lookup waited: %+v", w)
	}

	g := storetest.NewFamily(t, s, now)
	rec.take()
	replica.Kill()
	short := redisstore.New(rdb, redisstore.WithWaitReplicas(1, 100*time.Millisecond), rec.option())
	// The same rotation, sent twice as go-redis or the batcher might: both fail closed.
	next := storetest.Secret(t)
	p := store.RotateParams{Family: f.Family, PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(next),
		ClientID: "client-a", IdleLifetime: time.Hour}
	for range 2 {
		_, err = short.RotateRefresh(ctx, p, now)
		wantIs(t, err, store.ErrUnavailable)
		if errors.Is(err, store.ErrRefreshReused) || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a shortfall looks like a token error: %v", err)
		}
	}
	// The write is on the master (WAIT cannot undo it): the token the caller never received is
	// the live one there. A caller who got 503 retries with the old token (reuse, D1) or, after
	// a failover to a replica without the write, finds its old token live (TestSentinelFailover).
	cur, err := famField(t, master.Client(t), f.Family, "cur")
	must(t, err)
	if cur != store.Hash(next) {
		t.Fatal("the rotation is not on the master")
	}
	wantIs(t, short.RevokeFamily(ctx, g.Family, now), store.ErrUnavailable)
	wantIs(t, short.RevokeAccessToken(ctx, g.JTI, g.Family, "client-a", now), store.ErrUnavailable)
	waits = rec.take()
	if len(waits) < 3 {
		t.Fatalf("observer saw %+v, want the shortfalls", waits)
	}
	for _, w := range waits {
		if w.acked != 0 || w.wanted != 1 {
			t.Fatalf("observer saw %+v, want a shortfall", w)
		}
	}

	// A replica comes back: the repeat of the same rotation succeeds, and is on the replica.
	replica.Restart()
	waitLinkUp(t, replica)
	eventually(t, 20*time.Second, "the repeated rotation once a replica is back", func() error {
		_, err := short.RotateRefresh(ctx, p, now)
		return err
	})
	cur, err = famField(t, replica.Client(t), f.Family, "cur")
	must(t, err)
	if cur != store.Hash(next) {
		t.Fatal("the replica lacks the acknowledged rotation")
	}
	// The caller retries its revocation, which now holds on the replica too.
	must(t, short.RevokeFamily(ctx, g.Family, now))
	if rv, err := famField(t, replica.Client(t), g.Family, "rv"); err != nil || rv != "1" {
		t.Fatalf("the replica lacks the acknowledged revocation: %q %v", rv, err)
	}
}

// Decision D5 and case 79, through Sentinel with a master, a replica and one Sentinel. Four
// families are in play when the master dies:
//
//   - acked: rotated with WithWaitReplicas while the replica was connected. The replica
//     acknowledged it, so it survives the failover.
//   - lost: rotated without WAIT after the replica's link broke. The store acknowledged it, and
//     the failover loses it: the old refresh token is live again on the new master and its
//     successor unknown. This is the window docs/operations.md documents for deployments that
//     leave --redis-wait-replicas off.
//   - refused: the same, with WithWaitReplicas. The call failed closed (503), so the client
//     never held the successor; after the failover its old token is the live one, and its
//     retry succeeds as soon as a replica acknowledges again.
//   - revoked: a revocation with WithWaitReplicas after the link broke, failed closed (503);
//     the client retries it on the new master, where it then holds.
//
// Every call during the failover answers ErrUnavailable, and the same Store follows the new
// master by itself.
func TestSentinelFailover(t *testing.T) {
	ctx := context.Background()
	master, replica := startReplicated(t)
	sentinel, sc := startSentinel(t, master.Port)
	url := "redis-sentinel://" + sentinel + "?master=mymaster"
	rec := &waitRecorder{}
	// WAIT returns as soon as the replica acknowledges; the generous timeout only keeps a
	// loaded test machine from turning replication lag into a shortfall.
	waiting := redisstore.New(client(t, url), redisstore.WithWaitReplicas(1, 3*time.Second), rec.option())
	plain := redisstore.New(client(t, url))
	now := storetest.Now()

	acked := storetest.NewFamily(t, waiting, now)
	_, _, _, err := acked.Rotate(t, waiting, now, 0)
	must(t, err)
	lost := storetest.NewFamily(t, waiting, now)
	refused := storetest.NewFamily(t, waiting, now)
	revoked := storetest.NewFamily(t, waiting, now)
	for _, w := range rec.take() {
		if w.acked != 1 {
			t.Fatalf("WAIT before the failover: %+v", w)
		}
	}

	// Break the replication link and keep it broken: the replica is stopped, so it cannot
	// reconnect, and the master drops its link. Writes from now on stay on the master.
	pid := replica.Pid()
	must(t, syscall.Kill(pid, syscall.SIGSTOP))
	cont := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)
	must(t, master.Client(t).Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err())

	r0 := lost.Refresh
	_, r1, _, err := lost.Rotate(t, plain, now, 0)
	must(t, err) // acknowledged to the caller, on the master only
	short := redisstore.New(client(t, url), redisstore.WithWaitReplicas(1, 200*time.Millisecond), rec.option())
	refusedR0 := refused.Refresh
	_, refusedR1, _, err := refused.Rotate(t, short, now, 0)
	wantIs(t, err, store.ErrUnavailable)
	refused.Refresh = refusedR0 // the client never received refusedR1
	wantIs(t, short.RevokeFamily(ctx, revoked.Family, now), store.ErrUnavailable)

	master.Kill()
	cont()
	start := time.Now()
	eventually(t, 60*time.Second, "sentinel promotes the replica", func() error {
		addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
		if err != nil {
			return err
		}
		if got := addr[0] + ":" + addr[1]; got != replica.Addr {
			return fmt.Errorf("master is %s", got)
		}
		return nil
	})
	eventually(t, 30*time.Second, "the store on the new master", func() error {
		_, err := plain.LookupRefresh(ctx, acked.Family, store.Hash(acked.Refresh), now)
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("during the failover: %v", err)
		}
		return err
	})
	t.Logf("failover took %v", time.Since(start))

	// acked: survived, at generation 2.
	fam, err := plain.LookupRefresh(ctx, acked.Family, store.Hash(acked.Refresh), now)
	must(t, err)
	if fam.Generation != 2 {
		t.Fatalf("acknowledged rotation: generation %d after the failover, want 2", fam.Generation)
	}
	// lost: the documented window. R0 is live again and R1 unknown.
	_, err = plain.LookupRefresh(ctx, lost.Family, store.Hash(r1), now)
	wantIs(t, err, store.ErrNotFound)
	_, err = plain.LookupRefresh(ctx, lost.Family, store.Hash(r0), now)
	must(t, err)
	// refused: the client's token is the live one; the successor it never got is unknown.
	_, err = plain.LookupRefresh(ctx, refused.Family, store.Hash(refusedR1), now)
	wantIs(t, err, store.ErrNotFound)
	_, err = plain.LookupRefresh(ctx, refused.Family, store.Hash(refusedR0), now)
	must(t, err)

	// The revocation that failed closed is not on the new master: the client, told 503,
	// retries it below.
	_, err = plain.LookupRefresh(ctx, revoked.Family, store.Hash(revoked.Refresh), now)
	must(t, err)

	// The new master has no replica yet: writes that must be durable fail closed.
	other := storetest.NewFamily(t, plain, now)
	_, _, _, err = other.Rotate(t, short, now, 0)
	wantIs(t, err, store.ErrUnavailable)
	// A new replica of the new master joins (Sentinel would also turn the old master into one
	// when it comes back, but only after its next INFO round, ~10 s), and the client's retry
	// succeeds. The retry is a new request (a new successor), presenting the token the client
	// holds.
	newReplica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(replica.Port))
	waitLinkUp(t, newReplica)
	_, _, _, err = refused.RotateFrom(t, waiting, refusedR0, now, 0)
	must(t, err)
	if cur, err := famField(t, newReplica.Client(t), refused.Family, "cur"); err != nil || cur != store.Hash(refused.Refresh) {
		t.Fatalf("the new replica lacks the acknowledged retry: %q %v", cur, err)
	}
	must(t, waiting.RevokeFamily(ctx, revoked.Family, now))
	_, err = plain.LookupRefresh(ctx, revoked.Family, store.Hash(revoked.Refresh), now)
	wantIs(t, err, store.ErrNotFound)
}
