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
func startSentinel(t *testing.T, masterPort int) string {
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
	t.Cleanup(func() { sc.Close() })
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
	return addr
}

// Decision D5 and case 79: through Sentinel, with WithWaitReplicas, a rotation acknowledged
// before the master dies survives the failover (the replica had acknowledged it), every call
// during the failover answers ErrUnavailable, and the same Store works on the new master by
// itself. With no replica left, WAIT falls short, is reported, and the call still succeeds.
func TestSentinelFailover(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	eventually(t, 20*time.Second, "replica in sync", func() error {
		info, err := replica.Client(t).Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("link not up")
		}
		return nil
	})
	sentinel := startSentinel(t, master.Port)

	var mu sync.Mutex
	acks := map[int]int{}
	s := redisstore.New(client(t, "redis-sentinel://"+sentinel+"?master=mymaster"),
		// WAIT returns as soon as the replica acknowledges; the generous timeout only keeps a
		// loaded test machine from turning replication lag into a shortfall.
		redisstore.WithWaitReplicas(1, 3*time.Second),
		redisstore.WithWaitObserver(func(op string, acked, wanted int, err error) {
			mu.Lock()
			defer mu.Unlock()
			acks[acked]++
		}))
	now := storetest.Now()
	f := storetest.NewFamily(t, s, now)
	for range 2 {
		_, _, _, err := f.Rotate(t, s, now, 0)
		must(t, err)
	}
	mu.Lock()
	if acks[1] != 3 || len(acks) != 1 {
		t.Fatalf("WAIT acknowledgements before the failover: %v, want 3 x 1", acks)
	}
	mu.Unlock()

	master.Kill()
	start := time.Now()
	// The client retries the same rotation, as the server's caller would retry after a 503; a
	// retry of a call that did commit is recognised by its new hash.
	next := storetest.Secret(t)
	p := store.RotateParams{
		Family: f.Family, PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(next), ClientID: "client-a",
		IdleLifetime: time.Hour,
	}
	unavailable := 0
	eventually(t, 60*time.Second, "rotation on the new master", func() error {
		_, err := s.RotateRefresh(ctx, p, now)
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("during the failover: %v", err)
		}
		if err != nil {
			unavailable++
		}
		return err
	})
	t.Logf("failover took %v; %d calls answered ErrUnavailable meanwhile", time.Since(start), unavailable)
	fam, err := s.LookupRefresh(ctx, f.Family, store.Hash(next), now)
	must(t, err)
	// Generation 1 at redemption, two rotations before the failover, one after: nothing the
	// store acknowledged was lost.
	if fam.Generation != 4 {
		t.Fatalf("generation after failover = %d, want 4", fam.Generation)
	}
	mu.Lock()
	defer mu.Unlock()
	if acks[0] == 0 {
		t.Fatalf("no WAIT shortfall reported with no replica left: %v", acks)
	}
}
