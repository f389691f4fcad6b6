package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
	"github.com/latchkey-dev/latchkey/server/store/storetest"
)

type clusterNode struct {
	*redistest.Server
	busPort int
	admin   *redis.Client
	id      string
}

// startCluster starts three masters with cluster mode on, splits the 16384 slots among them,
// introduces them to each other and waits for cluster_state:ok everywhere. nodeTimeout is how
// long a silent node takes to be declared failed.
func startCluster(t *testing.T, nodeTimeout time.Duration) []*clusterNode {
	t.Helper()
	ctx := context.Background()
	ranges := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	nodes := make([]*clusterNode, len(ranges))
	for i := range nodes {
		// The bus port is chosen explicitly: port+10000 may not be free or even valid.
		bus := redistest.FreePort(t)
		srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10))
		n := &clusterNode{Server: srv, busPort: bus, admin: srv.Client(t)}
		id, err := n.admin.ClusterMyID(ctx).Result()
		must(t, err)
		n.id = id
		must(t, n.admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", ranges[i][0], ranges[i][1]).Err())
		nodes[i] = n
	}
	for _, n := range nodes[1:] {
		must(t, nodes[0].admin.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.Port, n.busPort).Err())
	}
	eventually(t, 30*time.Second, "cluster_state:ok on every node", func() error {
		for _, n := range nodes {
			info, err := n.admin.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				return fmt.Errorf("node %s: %s", n.Addr, strings.Fields(info)[0])
			}
			shards, err := n.admin.ClusterShards(ctx).Result()
			if err != nil {
				return err
			}
			ranges := 0
			for _, sh := range shards {
				ranges += len(sh.Slots)
			}
			if ranges != 3 {
				return fmt.Errorf("node %s knows %d slot ranges", n.Addr, ranges)
			}
		}
		return nil
	})
	return nodes
}

func clusterURL(nodes []*clusterNode) string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr
	}
	return "redis://" + strings.Join(addrs, ",")
}

// keyRecorder is a go-redis hook that keeps the KEYS of every script call and notes any
// CROSSSLOT reply.
type keyRecorder struct {
	mu        sync.Mutex
	calls     [][]string
	crossSlot []error
}

func (r *keyRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook records the scripts of the store's batches (concurrent calls share a
// pipeline) like single commands.
func (r *keyRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			r.record(cmd, cmd.Err())
		}
		return err
	}
}
func (r *keyRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.record(cmd, err)
		return err
	}
}

func (r *keyRecorder) record(cmd redis.Cmder, err error) {
	args := cmd.Args()
	name := strings.ToLower(cmd.Name())
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && strings.Contains(err.Error(), "CROSSSLOT") {
		r.crossSlot = append(r.crossSlot, err)
	}
	if (name == "evalsha" || name == "eval") && len(args) >= 3 {
		n, _ := strconv.Atoi(fmt.Sprint(args[2]))
		keys := make([]string, 0, n)
		for _, k := range args[3 : 3+n] {
			keys = append(keys, fmt.Sprint(k))
		}
		r.calls = append(r.calls, keys)
	}
}

// Case 81: the whole conformance suite runs on a three-master Redis Cluster, with no CROSSSLOT
// and every script's keys in one slot (checked with CLUSTER KEYSLOT, not only trusted to the
// server's refusal).
func TestCluster(t *testing.T) {
	nodes := startCluster(t, 5*time.Second)
	rdb := client(t, clusterURL(nodes))
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("ParseURL of %s gave a %T", clusterURL(nodes), rdb)
	}
	rec := &keyRecorder{}
	rdb.AddHook(rec)
	storetest.Run(t, isolated(rdb))

	ctx := context.Background()
	rec.mu.Lock()
	calls, crossSlot := rec.calls, rec.crossSlot
	rec.calls, rec.crossSlot = nil, nil
	rec.mu.Unlock()
	if len(crossSlot) > 0 {
		t.Fatalf("CROSSSLOT: %v", crossSlot[0])
	}
	slotOf := map[string]int64{}
	slots := map[int64]bool{}
	multi := 0
	for _, keys := range calls {
		var first int64 = -1
		for _, k := range keys {
			s, ok := slotOf[k]
			if !ok {
				var err error
				s, err = nodes[0].admin.ClusterKeySlot(ctx, k).Result()
				must(t, err)
				slotOf[k] = s
			}
			if first == -1 {
				first = s
			} else if s != first {
				t.Fatalf("one script call spans slots %d and %d: %v", first, s, keys)
			}
			slots[s] = true
		}
		if len(keys) > 1 {
			multi++
		}
	}
	if multi == 0 || len(slots) < 3 {
		t.Fatalf("checked %d multi-key calls over %d slots: too few to mean anything", multi, len(slots))
	}
	t.Logf("%d script calls (%d multi-key) over %d slots, each within one slot", len(calls), multi, len(slots))

	// WithWaitReplicas on a Cluster waits on the master of the family's slot (WAIT covers only
	// the writes of its own connection). These masters have no replicas, so every WAIT falls
	// short and each rotation fails closed (decision D5), on whichever master it ran.
	var shortfalls atomic.Int64
	ws := redisstore.New(rdb, redisstore.WithWaitReplicas(1, 50*time.Millisecond),
		redisstore.WithWaitObserver(func(op string, acked, wanted int, err error) {
			if acked == 0 && wanted == 1 && err == nil {
				shortfalls.Add(1)
			}
		}))
	plain := redisstore.New(rdb)
	now := storetest.Now()
	masters := map[string]bool{}
	for range 8 {
		f := storetest.NewFamily(t, plain, now)
		_, _, _, err := f.Rotate(t, ws, now, 0)
		wantIs(t, err, store.ErrUnavailable)
		m, err := rdb.(*redis.ClusterClient).MasterForKey(ctx, "lk:{f:"+f.Family+"}:fam")
		must(t, err)
		masters[m.Options().Addr] = true
	}
	if n := shortfalls.Load(); n != 8 {
		t.Fatalf("%d WAIT shortfalls reported, want 8", n)
	}
	t.Logf("WAIT ran on %d of the 3 masters", len(masters))
}

// Case 81: moving a family's slot to another master while the family is in use (MIGRATING,
// IMPORTING, MIGRATE, then the new owner) lets each rotation succeed or fail with
// ErrUnavailable, never corrupt the family: at the end exactly one token is live and the
// generation counts exactly the rotations that succeeded.
func TestClusterSlotMigration(t *testing.T) {
	nodes := startCluster(t, 5*time.Second)
	rdb := client(t, clusterURL(nodes))
	s := redisstore.New(rdb)
	ctx := context.Background()
	now := storetest.Now()
	f := storetest.NewFamily(t, s, now)
	famKey := "lk:{f:" + f.Family + "}:fam"
	slot, err := nodes[0].admin.ClusterKeySlot(ctx, famKey).Result()
	must(t, err)
	var src, dst *clusterNode
	for i, n := range nodes {
		if int(slot) >= []int{0, 5461, 10923}[i] && int(slot) <= []int{5460, 10922, 16383}[i] {
			src, dst = n, nodes[(i+1)%len(nodes)]
		}
	}

	successes := 0
	// try makes one rotation, which may succeed or answer ErrUnavailable (503) but nothing
	// else. While the slot is migrating Redis refuses a script whose keys are split between
	// the nodes or not yet created (TRYAGAIN), which is such a 503.
	try := func(phase string) error {
		t.Helper()
		next, jti := storetest.Secret(t), storetest.Secret(t)
		_, err := s.RotateRefresh(ctx, store.RotateParams{
			Family: f.Family, PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(next), ClientID: "client-a",
			IdleLifetime: time.Hour, AccessToken: store.AccessTokenRecord{JTI: jti, ClientID: "client-a", ExpiresAt: now.Add(time.Hour)},
		}, now)
		switch {
		case err == nil:
			f.Refresh = next
			successes++
		case errors.Is(err, store.ErrUnavailable):
			t.Logf("%s: %v", phase, err)
		default:
			t.Fatalf("%s: rotation failed with %v", phase, err)
		}
		return err
	}

	must(t, try("before"))
	must(t, dst.admin.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.id).Err())
	must(t, src.admin.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id).Err())
	_ = try("migrating")
	keys, err := src.admin.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
	must(t, err)
	if len(keys) < 3 {
		t.Fatalf("slot %d holds only %v", slot, keys)
	}
	for i, k := range keys {
		must(t, src.admin.Migrate(ctx, "127.0.0.1", strconv.Itoa(dst.Port), k, 0, 5*time.Second).Err())
		if i == 0 {
			_ = try("one key moved")
		}
	}
	_ = try("all keys moved")
	for _, n := range nodes {
		must(t, n.admin.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.id).Err())
	}
	eventually(t, 10*time.Second, "rotation after the migration", func() error { return try("after") })

	fam, err := s.LookupRefresh(ctx, f.Family, store.Hash(f.Refresh), now)
	must(t, err)
	if fam.Generation != int64(1+successes) || fam.Revoked {
		t.Fatalf("family %+v after %d rotations", fam, successes)
	}
	owner, err := dst.admin.Exists(ctx, famKey).Result()
	must(t, err)
	if owner != 1 {
		t.Fatal("the family did not move")
	}
}

// Case 76 on a Cluster: with one of three masters dead, the others answer CLUSTERDOWN once
// they agree it failed (full slot coverage is required by default), and every method answers
// ErrUnavailable, whichever node its slot is on.
func TestClusterDown(t *testing.T) {
	nodes := startCluster(t, time.Second)
	s := redisstore.New(client(t, clusterURL(nodes)))
	now := storetest.Now()
	f := storetest.NewCode(t, s, now)
	calls := everyMethod(t, s, f, now)
	nodes[0].Kill()
	eventually(t, 30*time.Second, "cluster_state:fail on the survivors", func() error {
		for _, n := range nodes[1:] {
			info, err := n.admin.ClusterInfo(context.Background()).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:fail") {
				return errors.New("cluster still ok")
			}
		}
		return nil
	})
	wantAllUnavailable(t, calls, 0)
}
