package redisstore

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds the scripts of one pipeline; more wait for the next.
const maxBatch = 256

// batcher pipelines the scripts of concurrent callers (group commit). One round trip is in
// flight at a time; the scripts that arrive meanwhile leave together in the next one, as one
// write and one read on one connection, instead of a write, a read and a wake-up each. Under
// load that is most of the store's CPU cost per operation (the profile of the token endpoint
// showed the write(2) of each EVALSHA as the largest cost after the signature); alone, a
// script goes out at once, as before.
//
// Each script is still one atomic EVALSHA with the keys of one hash slot, and each caller gets
// its own reply: pipelining changes how replies travel, not what a script does or when it is
// acknowledged. A caller returns only when its script's reply is in (or its context ends, and
// then the script is not sent if it has not been yet), so a token is still recorded before it
// is sent.
type batcher struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	pending []*call
	spare   []*call // the previous batch's slice, reused
	running bool    // a flush loop is running
}

// call is one script run.
type call struct {
	ctx  context.Context
	sc   *redis.Script
	keys []string
	args []any
	cmd  *redis.Cmd
	done chan struct{}
}

// run runs the script through the batcher and returns its reply.
func (b *batcher) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	if err := ctx.Err(); err != nil {
		return failed(ctx, err)
	}
	c := &call{ctx: ctx, sc: sc, keys: keys, args: args, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.cmd
	case <-ctx.Done():
		// The loop still completes the call (or skips it, if it has not been sent); its
		// reply is dropped. A write that lands anyway is one the caller did not report,
		// which for every script here is safe (a record of a token that was never sent).
		return failed(ctx, ctx.Err())
	}
}

func failed(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// loop sends the pending calls, batch by batch, until none is left.
func (b *batcher) loop() {
	for {
		b.mu.Lock()
		batch := b.pending
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		if len(batch) > maxBatch {
			b.pending = append(b.spare[:0], batch[maxBatch:]...)
			batch = batch[:maxBatch]
		} else {
			b.pending = b.spare[:0]
		}
		b.mu.Unlock()

		b.flush(batch)

		clear(batch)
		b.mu.Lock()
		b.spare = batch[:0]
		b.mu.Unlock()
	}
}

// flush runs one batch and completes its calls. Calls whose caller gave up are not sent.
func (b *batcher) flush(batch []*call) {
	live := batch[:0] // compacted in place; loop clears the whole batch afterwards
	for _, c := range batch {
		if c.ctx.Err() != nil {
			c.cmd = failed(c.ctx, c.ctx.Err())
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		// Alone: EVALSHA (EVAL on NOSCRIPT) directly, with the caller's context.
		c := live[0]
		c.cmd = c.sc.Run(c.ctx, b.rdb, c.keys, c.args...)
		close(c.done)
		return
	}
	// The round trip serves many callers, so no one caller's context may cut it short: it is
	// bounded by the client's read and write timeouts instead, and each caller still stops
	// waiting at its own deadline.
	ctx := context.WithoutCancel(live[0].ctx)
	pipe := b.rdb.Pipeline()
	for _, c := range live {
		c.cmd = c.sc.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	// After SCRIPT FLUSH, a restart or a failover (case 80) the scripts are missing: Run sends
	// EVAL. The retries run side by side, each bounded by its caller's context: one after the
	// other they would queue every caller behind the slowest (an exhausted pool makes each
	// wait PoolTimeout), past their deadlines (case 84).
	var retries sync.WaitGroup
	for _, c := range live {
		if err := c.cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			retries.Add(1)
			go func() {
				defer retries.Done()
				c.cmd = c.sc.Run(c.ctx, b.rdb, c.keys, c.args...)
				close(c.done)
			}()
			continue
		}
		close(c.done)
	}
	retries.Wait()
}

// script is one script run of runTogether.
type script struct {
	sc   *redis.Script
	keys []string
	args []any
}

// runTogether runs scripts in the same batch: queued under one lock, they leave in one
// pipeline (one round trip when nothing else is in flight), each still its own atomic
// EVALSHA. The replies come back in order.
func (s *Store) runTogether(ctx context.Context, scripts []script) []*redis.Cmd {
	out := make([]*redis.Cmd, len(scripts))
	if s.batch == nil {
		pipe := s.rdb.Pipeline()
		for i, sc := range scripts {
			out[i] = sc.sc.EvalSha(ctx, pipe, sc.keys, sc.args...)
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		for i, sc := range scripts {
			if err := out[i].Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
				out[i] = sc.sc.Run(ctx, s.rdb, sc.keys, sc.args...)
			}
		}
		return out
	}
	return s.batch.runTogether(ctx, scripts)
}

func (b *batcher) runTogether(ctx context.Context, scripts []script) []*redis.Cmd {
	out := make([]*redis.Cmd, len(scripts))
	if err := ctx.Err(); err != nil {
		for i := range out {
			out[i] = failed(ctx, err)
		}
		return out
	}
	calls := make([]*call, len(scripts))
	for i, sc := range scripts {
		calls[i] = &call{ctx: ctx, sc: sc.sc, keys: sc.keys, args: sc.args, done: make(chan struct{})}
	}
	b.mu.Lock()
	b.pending = append(b.pending, calls...)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	for i, c := range calls {
		select {
		case <-c.done:
			out[i] = c.cmd
		case <-ctx.Done():
			out[i] = failed(ctx, ctx.Err())
		}
	}
	return out
}
