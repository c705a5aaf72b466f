// Package fleet keeps the servers a benchmark started: how to stop each,
// and the watchers of their memory, so that one call at the end records
// every server's peak and stops them all, in the reverse order of their
// start, whatever failed on the way.
package fleet

import (
	"errors"
	"time"

	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/report"
)

// Fleet is the servers of one run. Its zero value is ready; it is not
// safe for concurrent use.
type Fleet struct {
	stops   []func() error
	watched []watched
}

// watched is one line of the memory table: process trees summed, or,
// for a total, the lines of its server above it.
type watched struct {
	server, config string
	watchers       []*load.Watcher
	total          bool
}

// OnStop registers how to stop a started server.
func (f *Fleet) OnStop(stop func() error) { f.stops = append(f.stops, stop) }

// Watch samples, every interval, the memory of the process trees of pids
// (load.Watch under load.DefaultProcRoot), summed into one peak of server
// under config.
func (f *Fleet) Watch(server, config string, interval time.Duration, pids ...int) {
	w := watched{server: server, config: config}
	for _, pid := range pids {
		w.watchers = append(w.watchers, load.Watch(load.DefaultProcRoot, pid, interval))
	}
	f.watched = append(f.watched, w)
}

// WatchTotal adds a line, under config, summing the lines of server
// watched so far: their peaks added (as Watch adds those of its pids),
// without sampling the processes again.
func (f *Fleet) WatchTotal(server, config string) {
	f.watched = append(f.watched, watched{server: server, config: config, total: true})
}

// Stop takes a last sample and the peaks, in the order watched, then
// stops the servers, last started first. A second Stop does nothing.
func (f *Fleet) Stop() ([]report.Memory, error) {
	var mem []report.Memory
	var errs []error
	totals := make(map[string]*load.Peak) // by server, of its lines so far; nil after a failure
	for _, w := range f.watched {
		if w.total {
			if t := totals[w.server]; t != nil {
				mem = append(mem, report.Memory{Server: w.server, Config: w.config, Peak: *t})
			}
			continue
		}
		var sum load.Peak
		var failed bool
		for i, wt := range w.watchers {
			wt.Sample()
			p, err := wt.Stop()
			if err != nil {
				errs, failed = append(errs, err), true
			}
			if i == 0 {
				sum = p
			} else {
				sum = sum.Plus(p)
			}
		}
		t, seen := totals[w.server]
		switch {
		case failed:
			totals[w.server] = nil
			continue
		case !seen:
			first := sum
			totals[w.server] = &first
		case t != nil:
			*t = t.Plus(sum)
		}
		mem = append(mem, report.Memory{Server: w.server, Config: w.config, Peak: sum})
	}
	f.watched = nil
	for i := len(f.stops) - 1; i >= 0; i-- {
		errs = append(errs, f.stops[i]())
	}
	f.stops = nil
	return mem, errors.Join(errs...)
}

// StopInto is Stop, adding the peaks to rep's memory table.
func (f *Fleet) StopInto(rep *report.Report) error {
	mem, err := f.Stop()
	rep.Memory = append(rep.Memory, mem...)
	return err
}
