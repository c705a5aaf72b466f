package report_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/report"
)

func sample() *report.Report {
	return &report.Report{
		Benchmark:   "auth",
		Ours:        "postcove",
		Theirs:      "dovecot",
		Environment: []report.KV{{Name: "cpus", Value: "2"}},
		Notes:       []string{"ratio is postcove/dovecot"},
		Tables: []report.Table{{Title: "sqlite", Rows: []report.Row{
			{Op: "Authenticate", Conc: 8,
				Ours:   load.Result{PerSecond: 30.25, P50: 250 * time.Millisecond, P99: 400 * time.Millisecond},
				Theirs: load.Result{PerSecond: 60.5, P50: 120 * time.Millisecond, P99: 1500 * time.Millisecond, Errors: 2}},
			{Op: "ResolveRecipient", Conc: 1,
				Ours:   load.Result{PerSecond: 12000, P50: 80 * time.Microsecond, P99: 2500 * time.Microsecond},
				Theirs: load.Result{PerSecond: 0}},
			{Op: "SELECT", Conc: 1,
				Ours:   load.Result{PerSecond: 6.2},
				Theirs: load.Result{PerSecond: 2243}},
		}}},
		Memory: []report.Memory{{Server: "dovecot", Config: "no cache", Peak: load.Peak{HWMKiB: 51200, LiveHWMKiB: 46080, RSSKiB: 40960, Processes: 7}}},
	}
}

func TestMarkdown(t *testing.T) {
	var b strings.Builder
	if err := sample().Markdown(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"| op | conc | postcove calls/s | dovecot calls/s | ratio | postcove p50/p99 | dovecot p50/p99 |",
		"| Authenticate | 8 | 30.2 | 60.5 (2 errors) | 0.50 | 250.0ms / 400.0ms | 120.0ms / 1.50s |",
		// A side that measured no latency (nothing, or a rate over a whole
		// batch) shows none.
		"| ResolveRecipient | 1 | 12000 | 0.0 | 0.00 | 80µs / 2.50ms | – |",
		"| SELECT | 1 | 6.2 | 2243 | 0.0028 | – | – |",
		"| dovecot | no cache | 50.0 MiB | 45.0 MiB | 40.0 MiB | 7 |",
		"- cpus: 2",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Markdown() lacks %q; got:\n%s", want, got)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.json")
	if err := sample().WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back report.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("WriteJSON wrote invalid JSON: %v", err)
	}
	if got := back.Tables[0].Rows[0].Ours.P99; got != 400*time.Millisecond {
		t.Errorf("round-tripped P99 = %v, want 400ms", got)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{85 * time.Microsecond, "85µs"},
		{1250 * time.Microsecond, "1.25ms"},
		{61300 * time.Microsecond, "61.3ms"},
		{1200 * time.Millisecond, "1.20s"},
	}
	for _, tt := range tests {
		if got := report.Duration(tt.d); got != tt.want {
			t.Errorf("Duration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestStep(t *testing.T) {
	var r report.Report
	var log strings.Builder
	if err := r.Step(&log, "write", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	err := r.Step(&log, "start", func() error { return os.ErrNotExist })
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "start: ") {
		t.Errorf("Step() = %v, want the step's error, named", err)
	}
	if len(r.Setup) != 1 || r.Setup[0].Name != "write" {
		t.Errorf("Setup = %+v, want the successful step only", r.Setup)
	}
	if got := log.String(); got != "setup: write\nsetup: start\n" {
		t.Errorf("log = %q", got)
	}
}
