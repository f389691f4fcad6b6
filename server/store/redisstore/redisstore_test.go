package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
	"github.com/latchkey-dev/latchkey/server/store/storetest"
)

// client connects to rawURL with the options --redis-url would give.
func client(t testing.TB, rawURL string) redis.UniversalClient {
	t.Helper()
	o, err := redisstore.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

var prefixes atomic.Int64

// isolated gives each conformance subtest its own key prefix on a shared server.
func isolated(rdb redis.UniversalClient, opts ...redisstore.Option) func(t *testing.T) store.Store {
	return func(t *testing.T) store.Store {
		p := fmt.Sprintf("lk%d:", prefixes.Add(1))
		return redisstore.New(rdb, append([]redisstore.Option{redisstore.WithPrefix(p)}, opts...)...)
	}
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, isolated(client(t, srv.URL())))
}
