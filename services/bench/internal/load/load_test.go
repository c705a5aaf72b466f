package load_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/load"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p100", ms(1, 2, 3), 100, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := load.Percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: Percentile(%v, %v) = %v, want %v", tt.name, tt.sorted, tt.p, got, tt.want)
		}
	}
}

func TestRunCalls(t *testing.T) {
	var mu sync.Mutex
	seen := make(map[int]int) // calls per worker
	res, err := load.Run(context.Background(), load.Options{Concurrency: 4, Calls: 1000}, func(ctx context.Context, worker int) error {
		mu.Lock()
		seen[worker]++
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls != 1000 || res.Errors != 0 || res.Concurrency != 4 {
		t.Errorf("Run() = %+v, want 1000 calls, no errors, concurrency 4", res)
	}
	total := 0
	for w, n := range seen {
		if w < 0 || w >= 4 {
			t.Errorf("worker index %d outside [0, 4)", w)
		}
		total += n
	}
	if total != 1000 {
		t.Errorf("call ran %d times, want 1000", total)
	}
	if res.PerSecond <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
		t.Errorf("Run() = %+v: want positive rate and p50 <= p99 <= max", res)
	}
}

func TestRunDuration(t *testing.T) {
	var inFlight, peak atomic.Int32
	start := time.Now()
	res, err := load.Run(context.Background(), load.Options{Concurrency: 3, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond}, func(ctx context.Context, worker int) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 2*time.Second {
		t.Errorf("Run took %v, want about 400ms (warmup + duration)", took)
	}
	if peak.Load() > 3 {
		t.Errorf("%d calls in flight at once, want at most 3", peak.Load())
	}
	// 3 workers × 300 ms / 10 ms ≈ 90 calls; the warmup's are not counted.
	if res.Calls < 30 || res.Calls > 100 {
		t.Errorf("Run() measured %d calls, want about 90", res.Calls)
	}
	if res.P50 < 10*time.Millisecond {
		t.Errorf("P50 = %v, want at least the 10ms each call sleeps", res.P50)
	}
	if res.Elapsed < 300*time.Millisecond || res.Elapsed > time.Second {
		t.Errorf("Elapsed = %v, want about 300ms", res.Elapsed)
	}
}

func TestRunErrors(t *testing.T) {
	boom := errors.New("boom")
	var n atomic.Int64
	res, err := load.Run(context.Background(), load.Options{Concurrency: 2, Calls: 100}, func(ctx context.Context, worker int) error {
		if n.Add(1)%10 == 0 {
			return boom
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 10 || res.Calls != 90 {
		t.Errorf("Run() = %d calls, %d errors, want 90 and 10", res.Calls, res.Errors)
	}
	if !errors.Is(res.FirstError, boom) {
		t.Errorf("FirstError = %v, want boom", res.FirstError)
	}
}

func TestRunCallTimeout(t *testing.T) {
	res, err := load.Run(context.Background(), load.Options{Concurrency: 1, Calls: 2, CallTimeout: 20 * time.Millisecond}, func(ctx context.Context, worker int) error {
		<-ctx.Done() // a server that never answers
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 2 || !errors.Is(res.FirstError, context.DeadlineExceeded) {
		t.Errorf("Run() = %+v, want 2 DeadlineExceeded errors", res)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := load.Run(ctx, load.Options{Concurrency: 2, Duration: time.Hour}, func(ctx context.Context, worker int) error {
		time.Sleep(time.Millisecond)
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run() with a context that ends = %v, want DeadlineExceeded", err)
	}
}

func TestRunBadOptions(t *testing.T) {
	call := func(context.Context, int) error { return nil }
	for _, opts := range []load.Options{
		{Concurrency: 0, Calls: 1},
		{Concurrency: 1},
		{Concurrency: 1, Calls: 1, Warmup: -time.Second},
	} {
		if _, err := load.Run(context.Background(), opts, call); err == nil {
			t.Errorf("Run(%+v) = nil error, want one", opts)
		}
	}
}

// TestRunTimed checks that the latencies are those the calls report, not
// the calls' durations.
func TestRunTimed(t *testing.T) {
	var n atomic.Int64
	res, err := load.RunTimed(context.Background(), load.Options{Concurrency: 2, Calls: 100}, func(ctx context.Context, worker int) (time.Duration, error) {
		return time.Duration(n.Add(1)) * time.Hour, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls != 100 || res.P50 != 50*time.Hour || res.P99 != 99*time.Hour || res.Max != 100*time.Hour {
		t.Errorf("RunTimed() = %d calls, p50 %v, p99 %v, max %v; want 100, 50h, 99h, 100h", res.Calls, res.P50, res.P99, res.Max)
	}
	if res.Elapsed > time.Minute {
		t.Errorf("Elapsed = %v: the reported latencies must not change the elapsed time", res.Elapsed)
	}
}
