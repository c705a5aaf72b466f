package fleet_test

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/fleet"
	"github.com/postcove/postcove/services/bench/internal/proc"
)

func TestStop(t *testing.T) {
	var f fleet.Fleet
	var stopped []string
	var procs []*proc.Process
	for _, name := range []string{"first", "second"} {
		p, err := proc.Start(name, exec.Command("sleep", "30"))
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		f.OnStop(func() error {
			stopped = append(stopped, name)
			return p.Stop(5 * time.Second)
		})
	}
	f.OnStop(func() error { return os.ErrClosed })
	f.Watch("both", "summed", 10*time.Millisecond, procs[0].Pid(), procs[1].Pid())
	f.Watch("one", "alone", 10*time.Millisecond, procs[1].Pid())

	mem, err := f.Stop()
	if !errors.Is(err, os.ErrClosed) {
		t.Errorf("Stop() = %v, want the failing stop's error", err)
	}
	if !slices.Equal(stopped, []string{"second", "first"}) {
		t.Errorf("stopped %v, want the last started first", stopped)
	}
	if len(mem) != 2 || mem[0].Server != "both" || mem[1].Config != "alone" {
		t.Fatalf("memory = %+v, want both lines in order", mem)
	}
	if mem[0].Peak.Processes != 2 || mem[1].Peak.Processes != 1 || mem[0].Peak.HWMKiB <= mem[1].Peak.HWMKiB || mem[1].Peak.HWMKiB <= 0 {
		t.Errorf("peaks %+v and %+v: want two processes summed, then one", mem[0].Peak, mem[1].Peak)
	}
	if mem, err := f.Stop(); mem != nil || err != nil {
		t.Errorf("second Stop() = %v, %v, want nothing", mem, err)
	}
}

func TestWatchTotal(t *testing.T) {
	var f fleet.Fleet
	var pids []int
	for _, name := range []string{"first", "second"} {
		p, err := proc.Start(name, exec.Command("sleep", "30"))
		if err != nil {
			t.Fatal(err)
		}
		f.OnStop(func() error { return p.Stop(5 * time.Second) })
		pids = append(pids, p.Pid())
	}
	f.Watch("side", "first", 10*time.Millisecond, pids[0])
	f.Watch("other", "not in the total", 10*time.Millisecond, pids[0])
	f.Watch("side", "second", 10*time.Millisecond, pids[1])
	f.WatchTotal("side", "all")
	f.WatchTotal("nobody", "no lines: no total")
	mem, err := f.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(mem) != 4 || mem[3].Config != "all" {
		t.Fatalf("memory = %+v, want the three lines and the total", mem)
	}
	total, want := mem[3].Peak, mem[0].Peak.Plus(mem[2].Peak)
	if total.HWMKiB != want.HWMKiB || total.Processes != 2 || total.RSSKiB != want.RSSKiB {
		t.Errorf("total %+v, want the two lines of side added: %+v", total, want)
	}
}
