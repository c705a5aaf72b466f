// Package lmtpbench measures LMTP delivery: postcove's mailbox service
// (asking postcove's auth whether each recipient exists) against dovecot's
// LMTP server (passwd-file userdb), on loopback, in one run. Both write
// Maildir in the same layout (<root>/<domain>/<user>/Maildir) and both
// fsync a message before answering 250. Each worker holds one LMTP
// connection and delivers messages of a fixed size to a random user, one
// recipient per transaction. Only 250s count; any other reply is an error,
// counted and reported. At the end, each side's Maildirs must hold exactly
// as many messages as it answered 250 for.
package lmtpbench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/lmtpclient"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/report"
)

// Defaults of Options.
const (
	DefaultUsers    = 100
	DefaultDuration = 5 * time.Second
	DefaultWarmup   = time.Second
)

// DefaultSizes are the message sizes measured by default: a typical small
// message and one with an attachment.
var DefaultSizes = []int{4096, 102400}

// domain is the one mail domain of the benchmark.
const domain = "example.org"

// Options configure a run.
type Options struct {
	AuthBin    string // postcove's auth binary; required
	MailboxBin string // postcove's mailbox binary; required
	DovecotBin string // default dovecot.DefaultBin
	Users      int    // default 100
	// Concurrency lists the concurrencies (LMTP connections). Default 1, 16.
	Concurrency []int
	// Sizes lists the message sizes in bytes. Default DefaultSizes.
	Sizes    []int
	Duration time.Duration // measured per row and server; default 5 s
	Warmup   time.Duration // unmeasured, before each measurement; default 1 s
	// NoWarmup turns the warmup off (Warmup 0 means the default).
	NoWarmup bool
	TempDir  string    // default os.TempDir()
	Keep     bool      // keep the run's directory even on success
	Log      io.Writer // progress; default discarded
}

func (o *Options) defaults() error {
	if o.AuthBin == "" || o.MailboxBin == "" {
		return errors.New("need --auth-bin and --mailbox-bin (make build writes bin/auth and bin/mailbox)")
	}
	if o.DovecotBin == "" {
		o.DovecotBin = dovecot.DefaultBin
	}
	if o.Users == 0 {
		o.Users = DefaultUsers
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 16}
	}
	if len(o.Sizes) == 0 {
		o.Sizes = DefaultSizes
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Warmup == 0 && !o.NoWarmup {
		o.Warmup = DefaultWarmup
	}
	if o.NoWarmup {
		o.Warmup = 0
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch {
	case o.Users < 1:
		return fmt.Errorf("users: %d, want at least 1", o.Users)
	case o.Duration < 0 || o.Warmup < 0:
		return errors.New("duration and warmup must not be negative")
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > 1024 {
			return fmt.Errorf("concurrency %d outside 1..1024", c)
		}
	}
	for _, s := range o.Sizes {
		if s < 512 || s > 64<<20 {
			return fmt.Errorf("message size %d outside 512..64 MiB", s)
		}
	}
	return nil
}

// Result is a report plus the delivery counts checked at the end.
type Result struct {
	Report *report.Report
	// Delivered is the number of 250s each side answered ("postcove",
	// "dovecot"), warmups included; Files the messages found in its
	// Maildirs.
	Delivered, Files map[string]int
}

const (
	memorySampleInterval = 100 * time.Millisecond
	callTimeout          = 30 * time.Second
	// dovecotUID owns dovecot's mail: its LMTP process switches to the
	// userdb's uid, which must be at least first_valid_uid (500).
	dovecotUID = 5000
)

// Run sets both sides up, measures them, and checks the Maildirs. The
// error is non-nil when the run could not be done, a server refused a
// delivery, or the file counts do not match; the result is then partial.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	authBin, err := absBin("postcove auth", opts.AuthBin)
	if err != nil {
		return nil, err
	}
	mailboxBin, err := absBin("postcove mailbox", opts.MailboxBin)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(opts.DovecotBin); err != nil {
		return nil, fmt.Errorf("dovecot not installed (%s): apt-get install dovecot-core dovecot-lmtpd", opts.DovecotBin)
	}
	lmtpBin := filepath.Join(filepath.Dir(filepath.Dir(opts.DovecotBin)), "lib", "dovecot", "lmtp")
	if _, err := os.Stat(lmtpBin); err != nil {
		return nil, fmt.Errorf("dovecot's LMTP server is not installed (%s): apt-get install dovecot-lmtpd", lmtpBin)
	}
	root, err := dovecot.NewWorkDir(opts.TempDir, "postcove-bench-lmtp-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if ferr := dovecot.FinishWorkDir(root, err != nil || opts.Keep, opts.Log, "configs, logs, mail"); err == nil {
			err = ferr
		}
	}()
	b := &bench{opts: opts, authBin: authBin, mailboxBin: mailboxBin, root: root}
	b.res = &Result{
		Report:    &report.Report{Benchmark: "lmtp", Ours: "postcove", Theirs: "dovecot", Unit: "msgs", Started: time.Now()},
		Delivered: map[string]int{}, Files: map[string]int{},
	}
	for i := range opts.Users {
		b.users = append(b.users, fmt.Sprintf("user%05d@%s", i, domain))
	}
	b.body = make(map[int][]byte)
	for _, s := range opts.Sizes {
		b.body[s] = fixedBody(s)
	}
	err = b.measure(ctx)
	return b.res, err
}

func absBin(what, bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath(abs); err != nil {
		return "", fmt.Errorf("%s binary %s: %w (run make build)", what, bin, err)
	}
	return abs, nil
}

type bench struct {
	opts                Options
	authBin, mailboxBin string
	root                string
	res                 *Result
	users               []string
	body                map[int][]byte
	msgSeq              atomic.Uint64
	runID               string
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.opts.Log, format+"\n", args...)
}

func (b *bench) step(name string, f func() error) error {
	b.logf("setup: %s", name)
	t0 := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	b.res.Report.Setup = append(b.res.Report.Setup, report.Step{Name: name, Duration: time.Since(t0)})
	return nil
}

// side is one LMTP server under test.
type side struct {
	name, config string
	addr         string
	mailRoot     string
	delivered    atomic.Int64 // 250s, warmups included
	watcher      *load.Watcher
	peakDone     bool
}

func (b *bench) measure(ctx context.Context) (err error) {
	rep := b.res.Report
	idb := make([]byte, 6)
	crand.Read(idb) //nolint:errcheck // never fails
	b.runID = hex.EncodeToString(idb)

	var stops []func() error
	var sides []*side
	stopAll := func() error {
		var errs []error
		for _, s := range sides {
			if s.watcher != nil && !s.peakDone {
				s.watcher.Sample()
				peak, err := s.watcher.Stop()
				s.peakDone = true
				if err == nil {
					rep.Memory = append(rep.Memory, report.Memory{Server: s.name, Config: s.config, Peak: peak})
				}
				errs = append(errs, err)
			}
		}
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		stops = nil
		return errors.Join(errs...)
	}
	defer func() { err = errors.Join(err, stopAll()) }()

	// postcove: auth with the users, then mailbox pointed at it.
	pc := &side{name: "postcove", config: "mailbox + auth (sqlite)", mailRoot: filepath.Join(b.root, "postcove-mail")}
	var auth *authServer
	if err := b.step(fmt.Sprintf("start postcove auth, create %d users", len(b.users)), func() error {
		var err error
		if auth, err = startAuth(ctx, b.authBin, b.root); err != nil {
			return err
		}
		stops = append(stops, auth.stop)
		return auth.createUsers(ctx, domain, b.users)
	}); err != nil {
		return err
	}
	var mbox *mailboxServer
	if err := b.step("start postcove mailbox", func() error {
		var err error
		mbox, err = startMailbox(ctx, b.mailboxBin, b.root, pc.mailRoot, auth.addr)
		if err != nil {
			return err
		}
		stops = append(stops, mbox.stop)
		return nil
	}); err != nil {
		return err
	}
	pc.addr = mbox.lmtpAddr
	// postcove's tree is two processes: both are counted.
	pc.watcher = load.Watch(load.DefaultProcRoot, mbox.proc.Pid(), memorySampleInterval)
	authWatcher := load.Watch(load.DefaultProcRoot, auth.proc.Pid(), memorySampleInterval)
	sides = append(sides, pc)

	dc := &side{name: "dovecot", config: "lmtp, passwd-file userdb, mail_fsync=always", mailRoot: filepath.Join(b.root, "dovecot-mail")}
	var dsrv *dovecot.Server
	if err := b.step("start dovecot lmtp", func() error {
		var err error
		dsrv, dc.addr, err = b.startDovecot(ctx, dc.mailRoot)
		if err != nil {
			return err
		}
		stops = append(stops, dsrv.Stop)
		return nil
	}); err != nil {
		authWatcher.Stop() //nolint:errcheck // failing anyway
		return err
	}
	dc.watcher = load.Watch(load.DefaultProcRoot, dsrv.Pid(), memorySampleInterval)
	sides = append(sides, dc)
	b.describe(ctx, mbox, dsrv)

	table := report.Table{Title: "postcove mailbox (+ auth, sqlite) vs dovecot lmtp (passwd-file)"}
	defer func() { rep.Tables = []report.Table{table} }()
	var failures []error
	for _, size := range b.opts.Sizes {
		for _, conc := range b.opts.Concurrency {
			label := "deliver " + sizeLabel(size)
			theirs, err := b.run(ctx, dc, size, conc, label)
			if err != nil {
				return fmt.Errorf("dovecot: %w\n%s", err, dsrv.LogTail())
			}
			ours, err := b.run(ctx, pc, size, conc, label)
			if err != nil {
				return fmt.Errorf("postcove: %w", err)
			}
			for _, r := range []struct {
				who string
				res load.Result
			}{{"dovecot", theirs}, {"postcove", ours}} {
				if r.res.Errors > 0 {
					failures = append(failures, fmt.Errorf("%s %s at concurrency %d: %d refused deliveries, first: %w", r.who, label, conc, r.res.Errors, r.res.FirstError))
				}
			}
			table.Rows = append(table.Rows, report.Row{Op: label, Conc: conc, Ours: ours, Theirs: theirs})
		}
	}
	authWatcher.Sample()
	if peak, err := authWatcher.Stop(); err == nil {
		rep.Memory = append(rep.Memory, report.Memory{Server: "postcove", Config: "auth alone (part of the above: not summed)", Peak: peak})
	}
	if err := stopAll(); err != nil {
		return err
	}
	// postcove's peak is mailbox + auth: put the sum first.
	for i, m := range rep.Memory {
		if m.Server == "postcove" && m.Config == pc.config {
			for _, a := range rep.Memory {
				if a.Server == "postcove" && strings.HasPrefix(a.Config, "auth alone") {
					m.Peak.HWMKiB += a.Peak.HWMKiB
					m.Peak.RSSKiB += a.Peak.RSSKiB // an upper bound of the sampled sum
					m.Peak.Processes += a.Peak.Processes
				}
			}
			rep.Memory[i] = m
		}
	}

	// Every 250 must be a file, and every file a 250.
	for _, s := range sides {
		n, err := countMessages(s.mailRoot)
		if err != nil {
			return err
		}
		b.res.Delivered[s.name] = int(s.delivered.Load())
		b.res.Files[s.name] = n
		b.logf("%s: %d deliveries answered 250, %d message files", s.name, s.delivered.Load(), n)
		if n != int(s.delivered.Load()) {
			failures = append(failures, fmt.Errorf("%s: %d deliveries answered 250 but its Maildirs hold %d messages", s.name, s.delivered.Load(), n))
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("Checked after the run: postcove answered 250 to %d deliveries and its Maildirs hold %d messages; dovecot %d and %d (warmups included; new/ and cur/ of every user's Maildir).",
		b.res.Delivered["postcove"], b.res.Files["postcove"], b.res.Delivered["dovecot"], b.res.Files["dovecot"]))
	if len(failures) > 0 {
		return fmt.Errorf("wrong answers during the benchmark: %w", errors.Join(failures...))
	}
	return nil
}

// run measures one side at one size and concurrency: one LMTP connection
// per worker, dialled on first use and again after a broken exchange.
func (b *bench) run(ctx context.Context, s *side, size, conc int, label string) (load.Result, error) {
	conns := make([]*lmtpclient.Client, conc)
	rngs := make([]*rand.Rand, conc)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(size), uint64(conc)<<16|uint64(i)))
	}
	body := b.body[size]
	call := func(ctx context.Context, w int) error {
		if conns[w] == nil {
			c, err := lmtpclient.Dial(ctx, s.addr, "bench.localhost")
			if err != nil {
				return err
			}
			conns[w] = c
		}
		rcpt := b.users[rngs[w].IntN(len(b.users))]
		msg := b.message(rcpt, body)
		replies, err := conns[w].Deliver(ctx, "sender@example.net", []string{rcpt}, msg)
		if err != nil {
			conns[w].Close()
			conns[w] = nil
			return err
		}
		if replies[0].Code != 250 {
			return fmt.Errorf("RCPT/DATA %s: %s", rcpt, replies[0])
		}
		s.delivered.Add(1)
		return nil
	}
	res, err := load.Run(ctx, load.Options{Concurrency: conc, Duration: b.opts.Duration, Warmup: b.opts.Warmup, CallTimeout: callTimeout}, call)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if err != nil {
		return res, err
	}
	b.logf("%-9s %-16s conc %3d: %9.1f msgs/s  p50 %-8s p99 %-8s errors %d",
		s.name, label, conc, res.PerSecond, report.Duration(res.P50), report.Duration(res.P99), res.Errors)
	return res, nil
}

// message is a message to rcpt with a unique Message-ID and the fixed
// body.
func (b *bench) message(rcpt string, body []byte) []byte {
	n := b.msgSeq.Add(1)
	var sb strings.Builder
	sb.Grow(len(body) + 300)
	fmt.Fprintf(&sb, "From: Bench Sender <sender@example.net>\r\nTo: <%s>\r\nSubject: postcove lmtp benchmark\r\nDate: %s\r\nMessage-ID: <%s.%d@bench.localhost>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		rcpt, time.Now().Format(time.RFC1123Z), b.runID, n)
	sb.Write(body)
	return []byte(sb.String())
}

// headerAllowance is roughly the size of message's header, subtracted
// from the body so a message is about the size asked for.
const headerAllowance = 260

// fixedBody is size-headerAllowance bytes of 76-character text lines.
func fixedBody(size int) []byte {
	n := max(size-headerAllowance, 80)
	line := []byte("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrs\r\n") // 78 bytes
	out := make([]byte, 0, n)
	for len(out)+len(line) <= n {
		out = append(out, line...)
	}
	return out
}

func sizeLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// countMessages counts the files in <root>/<domain>/<user>/Maildir/{new,cur}.
func countMessages(root string) (int, error) {
	var n int
	var mu sync.Mutex
	dirs, err := filepath.Glob(filepath.Join(root, "*", "*", "Maildir"))
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		for _, sub := range []string{"new", "cur"} {
			entries, err := os.ReadDir(filepath.Join(d, sub))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return 0, err
			}
			mu.Lock()
			for _, e := range entries {
				if e.Type().IsRegular() {
					n++
				}
			}
			mu.Unlock()
		}
	}
	return n, nil
}

func (b *bench) describe(ctx context.Context, mbox *mailboxServer, dsrv *dovecot.Server) {
	rep := b.res.Report
	rep.Environment = []report.KV{
		{Name: "machine", Value: fmt.Sprintf("%d CPUs, Linux %s", runtime.NumCPU(), readTrim("/proc/sys/kernel/osrelease"))},
		{Name: "dovecot", Value: commandOutput(ctx, b.opts.DovecotBin, "--version")},
		{Name: "postcove mailbox", Value: b.mailboxBin + " (version " + commandOutput(ctx, b.mailboxBin, "version") + ")"},
		{Name: "postcove auth", Value: b.authBin + " (version " + commandOutput(ctx, b.authBin, "version") + ")"},
		{Name: "bench", Value: runtime.Version()},
		{Name: "load", Value: fmt.Sprintf("%d users in one domain; sizes %s; concurrency %s; %v measured per row and server after %v warmup",
			len(b.users), joinInts(b.opts.Sizes), joinInts(b.opts.Concurrency), b.opts.Duration, b.opts.Warmup)},
		{Name: "mail", Value: b.root + " (filesystem " + fsType(b.root) + ")"},
	}
	rep.Notes = []string{
		"msgs/s: deliveries answered 250 per second; ratio = postcove ÷ dovecot: above 1, postcove is faster. Any other reply is an error, counted next to the rate and failing the run (never timing).",
		"Closed loop: each worker holds one LMTP connection (LHLO once) and runs sequential transactions on it: MAIL FROM, one RCPT TO (a uniformly random user), DATA with a fixed body and a unique Message-ID; it sends the next only when the 250 arrived. Message size is the DATA size, header included (approximately).",
		"Both sides fsync before 250: postcove always fsyncs the message file and its directory; dovecot runs with mail_fsync = always (Debian's default is optimized, which does not fsync new mail) to match. Same Maildir layout (<root>/<domain>/<user>/Maildir).",
		"Postcove: the mailbox service asks the auth service (gRPC, SQLite, its default 5 s recipient cache) whether each recipient exists, writes Maildir++ and its index. Dovecot: lmtp service (one process per connection, Debian's defaults), passwd-file userdb held in memory, uid " + fmt.Sprint(dovecotUID) + ".",
		fmt.Sprintf("Peak RSS: the sum of VmHWM over the process tree (pid and descendants), sampled every %v; for postcove, mailbox's tree plus auth's (auth's alone is shown too). Dovecot's tree includes its master, config, log, anvil, auth and lmtp processes.", memorySampleInterval),
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func commandOutput(ctx context.Context, bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

func fsType(path string) string {
	out, err := exec.Command("stat", "-f", "-c", "%T", path).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
