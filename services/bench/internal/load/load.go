// Package load drives a server with a closed-loop load and measures it:
// calls per second, latency percentiles, and the peak memory of the server's
// process tree (rss.go).
//
// Closed loop means each worker sends its next call only when the previous
// one has returned, so the concurrency is exactly the number of workers and
// the throughput is what the server sustains at that concurrency. The same
// Run drives every protocol (gRPC, dovecot's auth protocol, and later LMTP,
// IMAP, SMTP): the caller gives a Call that does one request with the
// worker's own connection.
package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Options describe one run.
type Options struct {
	// Concurrency is the number of workers, each with one call in flight.
	// Required: at least 1.
	Concurrency int
	// Duration is how long calls are measured, after Warmup. Either
	// Duration or Calls (or both: whichever ends first) is required.
	Duration time.Duration
	// Calls stops the run after this many measured calls in total.
	Calls int
	// Warmup runs calls for this long before measuring: they fill caches
	// and start lazily spawned processes, and are neither timed nor counted
	// (their errors are). Default 0: no warmup.
	Warmup time.Duration
	// CallTimeout bounds each call, so a stuck server ends a run instead of
	// hanging it. Default 0: no bound beyond ctx.
	CallTimeout time.Duration
}

// Call does one request as worker (0 <= worker < Concurrency). Each worker
// calls from its own goroutine, so per-worker state such as a connection
// can be indexed by worker without locking. A non-nil error counts as a
// failed call: a wrong answer is an error too, not a timing.
type Call func(ctx context.Context, worker int) error

// TimedCall is a Call that times itself: it returns the latency to record
// for the call, which may be one part of it (an SMTP transaction timed
// from the end of its data to the server's reply, say) rather than the
// whole. The throughput still counts whole calls.
type TimedCall func(ctx context.Context, worker int) (time.Duration, error)

// Result is what a run measured.
type Result struct {
	Concurrency int           `json:"concurrency"`
	Calls       int           `json:"calls"`       // successful measured calls
	Errors      int           `json:"errors"`      // failed calls, warmup included
	Elapsed     time.Duration `json:"elapsed_ns"`  // from the end of warmup to the last measured call's end
	P50         time.Duration `json:"p50_ns"`      // median latency of successful calls
	P99         time.Duration `json:"p99_ns"`      // 99th percentile
	Max         time.Duration `json:"max_ns"`      // slowest call
	PerSecond   float64       `json:"calls_per_s"` // Calls / Elapsed
	// FirstError is the first failure, for the message; nil without errors.
	FirstError error `json:"-"`
}

// Run calls call from opts.Concurrency workers until opts.Duration has
// passed or opts.Calls calls were measured, and returns the measurements.
// It returns an error only for bad options or when ctx ends first; failed
// calls are counted in the Result.
func Run(ctx context.Context, opts Options, call Call) (Result, error) {
	return RunTimed(ctx, opts, func(ctx context.Context, worker int) (time.Duration, error) {
		t0 := time.Now()
		err := call(ctx, worker)
		return time.Since(t0), err
	})
}

// RunTimed is Run with latencies the calls measure themselves.
func RunTimed(ctx context.Context, opts Options, call TimedCall) (Result, error) {
	switch {
	case opts.Concurrency < 1:
		return Result{}, fmt.Errorf("load: concurrency %d, want at least 1", opts.Concurrency)
	case opts.Duration <= 0 && opts.Calls <= 0:
		return Result{}, errors.New("load: need a duration or a number of calls")
	case opts.Duration < 0 || opts.Calls < 0 || opts.Warmup < 0 || opts.CallTimeout < 0:
		return Result{}, errors.New("load: negative option")
	}
	start := time.Now()
	measureFrom := start.Add(opts.Warmup)
	var deadline time.Time
	if opts.Duration > 0 {
		deadline = measureFrom.Add(opts.Duration)
	}

	workers := make([]worker, opts.Concurrency)
	var (
		mu      sync.Mutex // protects claimed
		claimed int        // measured calls handed out, against opts.Calls
	)
	claim := func() bool {
		if opts.Calls <= 0 {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if claimed >= opts.Calls {
			return false
		}
		claimed++
		return true
	}

	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		wg.Go(func() { w.run(ctx, i, call, opts.CallTimeout, measureFrom, deadline, claim) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("load: run stopped: %w", err)
	}

	res := Result{Concurrency: opts.Concurrency}
	var lat []time.Duration
	var end time.Time
	for i := range workers {
		w := &workers[i]
		lat = append(lat, w.lat...)
		res.Errors += w.errors
		if res.FirstError == nil {
			res.FirstError = w.firstErr
		}
		if w.end.After(end) {
			end = w.end
		}
	}
	res.Calls = len(lat)
	if res.Calls == 0 {
		return res, nil
	}
	res.Elapsed = end.Sub(measureFrom)
	if res.Elapsed > 0 {
		res.PerSecond = float64(res.Calls) / res.Elapsed.Seconds()
	}
	slices.Sort(lat)
	res.P50 = Percentile(lat, 50)
	res.P99 = Percentile(lat, 99)
	res.Max = lat[len(lat)-1]
	return res, nil
}

// worker is one goroutine's record; only that goroutine writes it, and Run
// reads it after the goroutine ended.
type worker struct {
	lat      []time.Duration
	errors   int
	firstErr error
	end      time.Time // when the last measured call returned
}

func (w *worker) run(ctx context.Context, id int, call TimedCall, timeout time.Duration, measureFrom, deadline time.Time, claim func() bool) {
	w.lat = make([]time.Duration, 0, 4096)
	for ctx.Err() == nil {
		t0 := time.Now()
		// Past the deadline a worker stops, unless it has not completed a
		// measured call yet: on a loaded machine a slow call begun in the
		// warmup can outlast the whole window, and a row with no
		// measurement says nothing. One more call is the bounded price.
		if !deadline.IsZero() && !t0.Before(deadline) && (len(w.lat) > 0 || w.errors > 0) {
			return
		}
		// A call that starts during the warmup is not measured, even if it
		// ends after it.
		measured := !t0.Before(measureFrom)
		if measured && !claim() {
			return
		}
		lat, err := w.call(ctx, id, call, timeout)
		t1 := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return // stopped, not failed
			}
			w.errors++
			if w.firstErr == nil {
				w.firstErr = fmt.Errorf("worker %d: %w", id, err)
			}
			continue
		}
		if measured {
			w.lat = append(w.lat, lat)
			w.end = t1
		}
	}
}

func (w *worker) call(ctx context.Context, id int, call TimedCall, timeout time.Duration) (time.Duration, error) {
	if timeout <= 0 {
		return call(ctx, id)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return call(ctx, id)
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the values at
// or below it. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// CheckPlan checks what a benchmark will give Run: durations not
// negative, each concurrency within 1..maxConc.
func CheckPlan(concurrency []int, maxConc int, duration, warmup time.Duration) error {
	if duration < 0 || warmup < 0 {
		return errors.New("duration and warmup must not be negative")
	}
	for _, c := range concurrency {
		if c < 1 || c > maxConc {
			return fmt.Errorf("concurrency %d outside 1..%d", c, maxConc)
		}
	}
	return nil
}

// Plan is how a benchmark runs each of its rows.
type Plan struct {
	Concurrency []int         // the concurrencies measured, one row each
	Duration    time.Duration // measured per row and server
	Warmup      time.Duration // unmeasured, before each measurement
	// NoWarmup turns the warmup off (Warmup 0 means the default).
	NoWarmup bool
}

// Defaults fills the zero fields of p from def and checks the result,
// with concurrencies up to maxConc.
func (p *Plan) Defaults(def Plan, maxConc int) error {
	if len(p.Concurrency) == 0 {
		p.Concurrency = def.Concurrency
	}
	if p.Duration == 0 {
		p.Duration = def.Duration
	}
	if p.NoWarmup {
		p.Warmup = 0
	} else if p.Warmup == 0 {
		p.Warmup = def.Warmup
	}
	return CheckPlan(p.Concurrency, maxConc, p.Duration, p.Warmup)
}
