// Package report prints side-by-side benchmark results: postcove against
// the Debian package it replaces, as markdown tables for people and JSON
// for machines. It knows nothing of the protocol measured.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/postcove/postcove/services/bench/internal/load"
)

// Report is one benchmark run.
type Report struct {
	// Benchmark names what was compared, e.g. "auth".
	Benchmark string `json:"benchmark"`
	// Ours and Theirs name the two sides, e.g. "postcove", "dovecot".
	Ours   string `json:"ours"`
	Theirs string `json:"theirs"`
	// Unit is what a table's rate counts per second, e.g. "msgs".
	// Default "calls".
	Unit string `json:"unit,omitempty"`
	// Started is when the run began.
	Started time.Time `json:"started"`
	// Environment describes the machine and versions, name → value.
	Environment []KV `json:"environment"`
	// Notes explain the configuration: caches, workers, what is summed.
	Notes []string `json:"notes"`
	// Tables hold the measurements, one per configuration of our side
	// (e.g. per database backend).
	Tables []Table `json:"tables"`
	// Memory holds the peak memory of every server process tree.
	Memory []Memory `json:"memory"`
	// Setup holds the durations of the preparation steps.
	Setup []Step `json:"setup"`
}

// KV is one name and value.
type KV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Table compares the two sides under one configuration.
type Table struct {
	Title string `json:"title"`
	Rows  []Row  `json:"rows"`
}

// Row is one operation at one concurrency on both sides.
type Row struct {
	Op     string      `json:"op"`
	Conc   int         `json:"concurrency"`
	Ours   load.Result `json:"ours"`
	Theirs load.Result `json:"theirs"`
}

// Ratio is ours' calls/s over theirs': above 1, ours is faster. 0 when
// theirs measured nothing.
func (r Row) Ratio() float64 {
	if r.Theirs.PerSecond == 0 {
		return 0
	}
	return r.Ours.PerSecond / r.Theirs.PerSecond
}

// Failures are the failed calls of the row, one error per side that had
// any, named with the names of the sides.
func (r Row) Failures(ours, theirs string) []error {
	var errs []error
	for _, side := range []struct {
		name string
		res  load.Result
	}{{theirs, r.Theirs}, {ours, r.Ours}} {
		if side.res.Errors > 0 {
			errs = append(errs, fmt.Errorf("%s %s at concurrency %d: %d failed calls, first: %w", side.name, r.Op, r.Conc, side.res.Errors, side.res.FirstError))
		}
	}
	return errs
}

// Memory is the peak memory of one server under one configuration.
type Memory struct {
	Server string    `json:"server"`
	Config string    `json:"config"`
	Peak   load.Peak `json:"peak"`
}

// Step is a timed preparation step.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// Markdown writes the report for people: the environment and notes, a
// table per configuration, then memory.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s benchmark: %s vs %s\n\n", r.Benchmark, r.Ours, r.Theirs)
	for _, kv := range r.Environment {
		fmt.Fprintf(&b, "- %s: %s\n", kv.Name, kv.Value)
	}
	if len(r.Setup) > 0 {
		var steps []string
		for _, s := range r.Setup {
			steps = append(steps, fmt.Sprintf("%s %s", s.Name, s.Duration.Round(100*time.Millisecond)))
		}
		fmt.Fprintf(&b, "- setup: %s\n", strings.Join(steps, "; "))
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	for _, t := range r.Tables {
		fmt.Fprintf(&b, "\n## %s\n\n", t.Title)
		unit := r.Unit
		if unit == "" {
			unit = "calls"
		}
		fmt.Fprintf(&b, "| op | conc | %[1]s %[3]s/s | %[2]s %[3]s/s | ratio | %[1]s p50/p99 | %[2]s p50/p99 |\n", r.Ours, r.Theirs, unit)
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
		for _, row := range t.Rows {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n",
				row.Op, row.Conc, rate(row.Ours), rate(row.Theirs), ratio(row.Ratio()),
				latency(row.Ours), latency(row.Theirs))
		}
	}
	if len(r.Memory) > 0 {
		b.WriteString("\n## Peak memory of the server process trees\n\n")
		b.WriteString("| server | config | peak RSS (sum of VmHWM) | of live processes | max sampled RSS | processes |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|\n")
		for _, m := range r.Memory {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d |\n", m.Server, m.Config, mib(m.Peak.HWMKiB), mib(m.Peak.LiveHWMKiB), mib(m.Peak.RSSKiB), m.Peak.Processes)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as indented JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// rate formats calls/s, marking runs that had failed calls.
func rate(r load.Result) string {
	s := fmt.Sprintf("%.0f", r.PerSecond)
	if r.PerSecond < 100 {
		s = fmt.Sprintf("%.1f", r.PerSecond)
	}
	if r.Errors > 0 {
		s += fmt.Sprintf(" (%d errors)", r.Errors)
	}
	return s
}

// ratio formats a ratio with two decimals, or two significant digits
// below 0.1, where two decimals would print a slow row as 0.00.
func ratio(v float64) string {
	if v > 0 && v < 0.1 {
		return fmt.Sprintf("%.2g", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// latency formats p50 / p99, or "–" for a row that measured no
// latencies (a rate computed over a whole batch, like end-to-end delivery;
// a measured latency is never 0).
func latency(r load.Result) string {
	if r.P99 == 0 {
		return "–"
	}
	return Duration(r.P50) + " / " + Duration(r.P99)
}

// Duration formats a latency with three significant digits or so, in the
// unit that suits it: 85µs, 1.25ms, 61.3ms, 1.20s.
func Duration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func mib(kib int64) string {
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

// Step runs f, a preparation step, saying so on log first, and records
// its duration in r.Setup when it succeeds.
func (r *Report) Step(log io.Writer, name string, f func() error) error {
	fmt.Fprintf(log, "setup: %s\n", name)
	t0 := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	r.Setup = append(r.Setup, Step{Name: name, Duration: time.Since(t0)})
	return nil
}

// Progress is a run's report and the log where it tells a person what it
// does.
type Progress struct {
	Report *Report
	Log    io.Writer
}

// Logf writes a line to the log.
func (p Progress) Logf(format string, args ...any) {
	fmt.Fprintf(p.Log, format+"\n", args...)
}

// Step is Report.Step, saying so on the log.
func (p Progress) Step(name string, f func() error) error {
	return p.Report.Step(p.Log, name, f)
}
