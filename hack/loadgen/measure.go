package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// op is one request of a worker; it returns nil when the server answered as expected.
type op func(ctx context.Context) error

// newWorkerFunc prepares the state of worker id (a refresh chain, a cookie jar) and returns its
// op. It runs before the warm-up, so its cost is not measured.
type newWorkerFunc func(ctx context.Context, id int) (op, error)

// maxErrorSamples bounds the distinct errors a Result reports.
const maxErrorSamples = 3

// Phases of a measurement. Workers record a request only if it both started and finished in
// phaseMeasure, so the warm-up and the stop do not leak into the window.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// measure runs concurrency closed-loop workers: warm-up, then the measured window d, then stop.
//
// With rate > 0 each worker paces itself to rate/concurrency requests per second (a worker that
// falls behind does not burst to catch up), for a steady load rather than the most the server
// can take.
func measure(ctx context.Context, concurrency int, warmup, d time.Duration, rate float64, newWorker newWorkerFunc, cpu, self *cpuWindow) (*Result, error) {
	ops := make([]op, concurrency)
	for i := range ops {
		o, err := newWorker(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		ops[i] = o
	}

	var phase atomic.Int32
	type workerStats struct {
		lat    []time.Duration
		errors int64
		msgs   []string
	}
	stats := make([]workerStats, concurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range ops {
		w := &stats[i]
		w.lat = make([]time.Duration, 0, 1<<14)
		var interval time.Duration
		if rate > 0 {
			interval = time.Duration(float64(concurrency) / rate * float64(time.Second))
		}
		wg.Go(func() {
			next := time.Now()
			for phase.Load() != phaseStop && ctx.Err() == nil {
				if interval > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
					next = later(next.Add(interval), time.Now())
				}
				counted := phase.Load() == phaseMeasure
				start := time.Now()
				err := ops[i](ctx)
				elapsed := time.Since(start)
				if !counted || phase.Load() != phaseMeasure {
					continue
				}
				if err != nil {
					w.errors++
					if len(w.msgs) < maxErrorSamples {
						w.msgs = append(w.msgs, err.Error())
					}
					continue
				}
				w.lat = append(w.lat, elapsed)
			}
		})
	}

	sleep := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	if err := sleep(warmup); err != nil {
		cancel()
		wg.Wait()
		return nil, err
	}
	cpu.begin()
	self.begin()
	phase.Store(phaseMeasure)
	start := time.Now()
	err := sleep(d)
	phase.Store(phaseStop)
	window := time.Since(start)
	cpu.end()
	self.end()
	// Requests in flight finish (or time out) before the stats are read.
	wg.Wait()
	if err != nil {
		return nil, err
	}

	res := &Result{Concurrency: concurrency, DurationS: window.Seconds(), WarmupS: warmup.Seconds()}
	var all []time.Duration
	seen := map[string]bool{}
	for i := range stats {
		all = append(all, stats[i].lat...)
		res.Errors += stats[i].errors
		for _, m := range stats[i].msgs {
			if !seen[m] && len(res.ErrorSamples) < maxErrorSamples {
				seen[m] = true
				res.ErrorSamples = append(res.ErrorSamples, m)
			}
		}
	}
	res.Requests = int64(len(all))
	res.RPS = float64(res.Requests) / window.Seconds()
	if len(all) == 0 {
		return res, errors.New("no request succeeded in the measured window")
	}
	slices.Sort(all)
	res.P50 = ms(percentile(all, 50))
	res.P90 = ms(percentile(all, 90))
	res.P99 = ms(percentile(all, 99))
	res.Max = ms(all[len(all)-1])
	return res, nil
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ms rounds to microseconds, in milliseconds.
func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
