package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory of a server's process tree, from Linux's /proc (proc(5)):
//
//   - the tree is the process and its descendants, found through the ppid
//     field of /proc/PID/stat, never by process name;
//   - each process's peak is VmHWM of /proc/PID/status, its resident set
//     high-water mark.
//
// Dovecot is a tree (master, auth, auth-worker, log, config, anvil, stats)
// and postcove is one process, so the comparable number is the sum over the
// tree. That sum adds peaks that need not have happened at the same moment:
// it is an upper bound of the tree's true peak. A Watcher also keeps the
// largest sum of current VmRSS it sampled, a lower bound of it.

// DefaultProcRoot is where procfs is mounted.
const DefaultProcRoot = "/proc"

// TreeMemory is one look at a process tree.
type TreeMemory struct {
	PIDs   []int // the root first, then its descendants
	HWMKiB int64 // sum of VmHWM over PIDs
	RSSKiB int64 // sum of VmRSS over PIDs
}

// ReadTree reads the memory of pid and every descendant of it under root
// (DefaultProcRoot outside tests). Processes that exit while it reads are
// skipped; a pid that does not exist is an error.
func ReadTree(root string, pid int) (TreeMemory, error) {
	procs, err := readTreeProcs(root, pid)
	if err != nil {
		return TreeMemory{}, err
	}
	var t TreeMemory
	for _, p := range procs {
		t.PIDs = append(t.PIDs, p.pid)
		t.HWMKiB += p.hwm
		t.RSSKiB += p.rss
	}
	return t, nil
}

// procMem is one process's memory, keyed for the Watcher by pid and start
// time, so that a reused pid is not taken for the process it replaced.
type procMem struct {
	pid      int
	start    uint64 // starttime from stat, in clock ticks since boot
	hwm, rss int64  // KiB
}

// readTreeProcs finds the tree of pid from every /proc/N/stat and reads the
// status of each member.
func readTreeProcs(root string, pid int) ([]procMem, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	children := make(map[int][]int)
	starts := make(map[int]uint64)
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n <= 0 {
			continue
		}
		ppid, start, err := readStat(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile, or a kernel oddity: not ours
		}
		children[ppid] = append(children[ppid], n)
		starts[n] = start
	}
	if _, ok := starts[pid]; !ok {
		return nil, fmt.Errorf("process %d: %w", pid, fs.ErrNotExist)
	}
	var out []procMem
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		queue = append(queue, children[p]...)
		hwm, rss, err := readStatus(filepath.Join(root, strconv.Itoa(p), "status"))
		if err != nil {
			if p == pid {
				return nil, err
			}
			continue
		}
		out = append(out, procMem{pid: p, start: starts[p], hwm: hwm, rss: rss})
	}
	return out, nil
}

// readStat returns the ppid (field 4) and starttime (field 22) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// itself hold spaces and parentheses, so fields are counted from the last
// ')'.
func readStat(path string) (ppid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (ppid int, start uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no command name")
	}
	// After ")": state(3) ppid(4) ... starttime(22).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("stat: %d fields after the command name, want at least 20", len(f))
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("stat: ppid: %w", err)
	}
	if start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stat: starttime: %w", err)
	}
	return ppid, start, nil
}

// readStatus returns VmHWM and VmRSS in KiB from /proc/PID/status. Kernel
// threads and zombies have neither: 0, 0.
func readStatus(path string) (hwm, rss int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (hwm, rss int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		// "   1234 kB": the kernel always reports kB (KiB).
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("status: %s: unexpected value %q", name, value)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("status: %s: %w", name, err)
		}
		if name == "VmHWM" {
			hwm = n
		} else {
			rss = n
		}
	}
	return hwm, rss, sc.Err()
}

// Peak is what a Watcher saw over its life.
type Peak struct {
	// HWMKiB is the sum of VmHWM over every process seen in the tree,
	// including those that exited before the end (if sampled at least
	// once): the sum of per-process peaks, an upper bound of the tree's.
	HWMKiB int64 `json:"hwm_sum_kib"`
	// RSSKiB is the largest sum of VmRSS in one sample: a lower bound.
	RSSKiB int64 `json:"rss_max_sample_kib"`
	// LiveHWMKiB is the largest sum of VmHWM over the processes alive at
	// one sample. Where processes come and go (one per connection), the
	// sum over every process seen adds peaks of processes that never
	// lived at the same time; this does not, yet still counts each live
	// process at its own peak.
	LiveHWMKiB int64 `json:"hwm_live_max_kib"`
	// Processes is how many distinct processes were seen in the tree.
	Processes int `json:"processes"`
	// Samples is how many times the tree was read.
	Samples int `json:"samples"`
}

// Watcher samples a process tree until stopped.
type Watcher struct {
	root   string
	pid    int
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex // protects the fields below
	hwm     map[[2]uint64]int64
	peakRSS int64
	peakHWM int64 // largest sum of VmHWM in one sample
	samples int
	err     error // the first failure to read the root process
}

// Watch starts sampling the tree of pid under root every interval (and
// once at once) in a goroutine. Call Stop for the result.
func Watch(root string, pid int, interval time.Duration) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{root: root, pid: pid, cancel: cancel, done: make(chan struct{}), hwm: make(map[[2]uint64]int64)}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			w.Sample()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Sample reads the tree now. The goroutine calls it every interval; call it
// yourself just before the process is stopped to catch the final peaks.
func (w *Watcher) Sample() {
	procs, err := readTreeProcs(w.root, w.pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.err == nil && w.samples == 0 {
			w.err = err
		}
		return
	}
	w.samples++
	var rss, hwm int64
	for _, p := range procs {
		key := [2]uint64{uint64(p.pid), p.start}
		w.hwm[key] = max(w.hwm[key], p.hwm)
		rss += p.rss
		hwm += p.hwm
	}
	w.peakRSS = max(w.peakRSS, rss)
	w.peakHWM = max(w.peakHWM, hwm)
}

// Stop ends the sampling and returns the peaks. It fails when the tree
// could never be read.
func (w *Watcher) Stop() (Peak, error) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.samples == 0 {
		if w.err == nil {
			w.err = errors.New("never sampled")
		}
		return Peak{}, fmt.Errorf("memory of process %d: %w", w.pid, w.err)
	}
	p := Peak{RSSKiB: w.peakRSS, LiveHWMKiB: w.peakHWM, Processes: len(w.hwm), Samples: w.samples}
	for _, v := range w.hwm {
		p.HWMKiB += v
	}
	return p, nil
}

// Plus is the peak of two trees measured over the same time (a service
// and the one it depends on): each field summed, an upper bound where the
// two peaks did not coincide.
func (p Peak) Plus(q Peak) Peak {
	return Peak{
		HWMKiB:     p.HWMKiB + q.HWMKiB,
		RSSKiB:     p.RSSKiB + q.RSSKiB,
		LiveHWMKiB: p.LiveHWMKiB + q.LiveHWMKiB,
		Processes:  p.Processes + q.Processes,
		Samples:    min(p.Samples, q.Samples),
	}
}
