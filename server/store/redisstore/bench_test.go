package redisstore_test

import (
	"context"
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

// BenchmarkRotateRefresh measures one rotation (one EVALSHA round trip, case 84) against a
// real redis-server on loopback.
func BenchmarkRotateRefresh(b *testing.B) {
	srv := redistest.Start(b)
	rdb := client(b, srv.URL())
	s := redisstore.New(rdb)
	ctx := context.Background()
	now := storetest.Now()
	f := storetest.NewFamily(b, s, now)
	cmds := &commandCounter{}
	rdb.AddHook(cmds)
	hashes := make([]string, b.N)
	jtis := make([]string, b.N)
	for i := range hashes {
		hashes[i], jtis[i] = store.Hash(storetest.Secret(b)), storetest.Secret(b)
	}
	cur := store.Hash(f.Refresh)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := s.RotateRefresh(ctx, store.RotateParams{
			Family: f.Family, PresentedHash: cur, NewHash: hashes[i], ClientID: "client-a", IdleLifetime: time.Hour,
			AccessToken: store.AccessTokenRecord{JTI: jtis[i], ClientID: "client-a", ExpiresAt: now.Add(15 * time.Minute)},
		}, now)
		if err != nil {
			b.Fatal(err)
		}
		cur = hashes[i]
	}
	b.StopTimer()
	b.ReportMetric(float64(cmds.n.Load())/float64(b.N), "cmds/op")
}

// BenchmarkRecordAccessToken measures recording one client-credentials access token.
func BenchmarkRecordAccessToken(b *testing.B) {
	srv := redistest.Start(b)
	rdb := client(b, srv.URL())
	s := redisstore.New(rdb)
	ctx := context.Background()
	now := storetest.Now()
	cmds := &commandCounter{}
	rdb.AddHook(cmds)
	jtis := make([]string, b.N)
	for i := range jtis {
		jtis[i] = storetest.Secret(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := s.RecordAccessToken(ctx, store.AccessTokenRecord{JTI: jtis[i], ClientID: "client-a", ExpiresAt: now.Add(15 * time.Minute)}, now)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cmds.n.Load())/float64(b.N), "cmds/op")
}

// commandCounter counts the commands sent, the round trips of the store (Hydra's bench counts
// queries per operation the same way).
type commandCounter struct {
	// n counts commands, trips round trips (a pipeline is one).
	n, trips atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		c.trips.Add(1)
		return next(ctx, cmds)
	}
}
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		c.trips.Add(1)
		return next(ctx, cmd)
	}
}

// BenchmarkRecordAccessTokenParallel records tokens from 8 callers per GOMAXPROCS, as the
// token endpoint does under load, with the batcher (concurrent scripts share a pipeline) and
// without it (one round trip per script). trips/op is round trips per token.
func BenchmarkRecordAccessTokenParallel(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []redisstore.Option
	}{
		{"batched", nil},
		{"unbatched", []redisstore.Option{redisstore.WithoutBatching()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := redistest.Start(b)
			rdb := client(b, srv.URL())
			s := redisstore.New(rdb, bc.opts...)
			ctx := context.Background()
			now := storetest.Now()
			cmds := &commandCounter{}
			rdb.AddHook(cmds)
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := store.AccessTokenRecord{JTI: storetest.Secret(b), ClientID: "client-a", ExpiresAt: now.Add(15 * time.Minute)}
					if err := s.RecordAccessToken(ctx, rec, now); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(cmds.n.Load())/float64(b.N), "cmds/op")
			b.ReportMetric(float64(cmds.trips.Load())/float64(b.N), "trips/op")
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used. Redis runs in its own
// process, so cpu-ns/op is the client's cost of an operation: what a token server pinned to
// a core pays, whatever the wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
