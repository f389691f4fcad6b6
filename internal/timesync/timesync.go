// Package timesync gives every replica of the token server the same clock: the clock of the
// Redis primary that holds the token state.
//
// Expiry decisions (a code's 60 s, a refresh token's idle and absolute lifetimes, a key's
// activation) are taken by whichever replica serves the request, with the time it passes to the
// store. Replicas whose clocks disagree by a few seconds would then disagree on whether a
// token is still valid (SECURITY-CASES 84). Asking Redis for the time on every request would
// cost a round trip, so a Clock measures the offset between the local clock and Redis TIME in
// the background, and adds it to the local clock. All replicas then read one time source, to
// within half a round trip.
package timesync

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// DefaultMaxOffset bounds the correction. A larger offset means a broken clock on one side,
// which NTP must fix: following it would put iat and exp of every token minutes off the
// resource servers' clocks.
const DefaultMaxOffset = time.Minute

// Source tells the reference time; redisstore.Store implements it with Redis TIME.
type Source interface {
	Time(ctx context.Context) (time.Time, error)
}

// Clock is a clock.PassiveClock that follows Source. Until the first successful Sync it is the
// local clock.
type Clock struct {
	base      clock.PassiveClock
	src       Source
	maxOffset time.Duration
	offset    atomic.Int64 // nanoseconds to add to base
	synced    atomic.Bool
}

var _ clock.PassiveClock = (*Clock)(nil)

// New returns a Clock over base (nil: the real clock) following src.
func New(base clock.PassiveClock, src Source) *Clock {
	if base == nil {
		base = clock.RealClock{}
	}
	return &Clock{base: base, src: src, maxOffset: DefaultMaxOffset}
}

// Now implements clock.PassiveClock.
func (c *Clock) Now() time.Time { return c.base.Now().Add(time.Duration(c.offset.Load())) }

// Since implements clock.PassiveClock.
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Offset is the correction currently applied to the local clock.
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// Synced reports whether a Sync has succeeded.
func (c *Clock) Synced() bool { return c.synced.Load() }

// Sync measures the offset once. The reference time is taken to be read half way through the
// round trip (Cristian's algorithm), so the error is at most half the round trip.
func (c *Clock) Sync(ctx context.Context) error {
	t0 := c.base.Now()
	ref, err := c.src.Time(ctx)
	if err != nil {
		return fmt.Errorf("timesync: %w", err)
	}
	t1 := c.base.Now()
	off := Offset(t0, t1, ref)
	if off > c.maxOffset || off < -c.maxOffset {
		return fmt.Errorf("timesync: the local clock is %s off the reference, more than the %s this corrects; fix NTP", off.Round(time.Millisecond), c.maxOffset)
	}
	c.offset.Store(int64(off))
	c.synced.Store(true)
	return nil
}

// Offset is what to add to the local clock, given the local times before (t0) and after (t1)
// the reference time ref was read.
func Offset(t0, t1, ref time.Time) time.Duration {
	mid := t0.Add(t1.Sub(t0) / 2)
	return ref.Sub(mid)
}

// Run syncs now and then every interval until ctx ends. A failed sync keeps the last offset:
// a Redis outage already fails every request that needs the store, and the clock must not jump
// meanwhile. It implements the shape of manager.Runnable's Start.
func (c *Clock) Run(ctx context.Context, every time.Duration, log logr.Logger) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var failing bool
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.Sync(sctx)
		cancel()
		switch {
		case err != nil && !failing:
			log.Error(err, "Clock sync with Redis failed; keeping the last offset", "offset", c.Offset())
			failing = true
		case err == nil && failing:
			log.Info("Clock sync with Redis recovered", "offset", c.Offset())
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
