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
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/fleet"
	"github.com/postcove/postcove/services/bench/internal/lmtpclient"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/maildirscan"
	"github.com/postcove/postcove/services/bench/internal/mailgen"
	"github.com/postcove/postcove/services/bench/internal/postcove"
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
	postcove.Servers
	Users int // default 100
	// Sizes lists the message sizes in bytes. Default DefaultSizes.
	Sizes []int
	// Plan: concurrencies are LMTP connections. Defaults: 1 and 16, 5 s
	// measured after 1 s of warmup.
	load.Plan
}

func (o *Options) defaults() error {
	if err := o.Servers.Defaults(); err != nil {
		return err
	}
	if o.Users == 0 {
		o.Users = DefaultUsers
	}
	if len(o.Sizes) == 0 {
		o.Sizes = DefaultSizes
	}
	if o.Users < 1 {
		return fmt.Errorf("users: %d, want at least 1", o.Users)
	}
	for _, s := range o.Sizes {
		if s < 512 || s > 64<<20 {
			return fmt.Errorf("message size %d outside 512..64 MiB", s)
		}
	}
	return o.Plan.Defaults(load.Plan{Concurrency: []int{1, 16}, Duration: DefaultDuration, Warmup: DefaultWarmup}, 1024)
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
)

// Run sets both sides up, measures them, and checks the Maildirs. The
// error is non-nil when the run could not be done, a server refused a
// delivery, or the file counts do not match; the result, never nil, is
// then partial.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return &Result{Report: &report.Report{}}, err
	}
	b := &bench{opts: opts}
	b.res = &Result{
		Report:    &report.Report{Benchmark: "lmtp", Ours: "postcove", Theirs: "dovecot", Unit: "msgs", Started: time.Now()},
		Delivered: map[string]int{}, Files: map[string]int{},
	}
	b.Progress = report.Progress{Report: b.res.Report, Log: opts.Log}
	b.users = postcove.Mailboxes(opts.Users, domain)
	b.mail = mailgen.New("postcove lmtp benchmark", opts.Sizes)
	err := opts.Frame("lmtp", "lmtp", []string{"postcove-mail", "dovecot"}, &b.Paths, func() error { return b.measure(ctx) })
	return b.res, err
}

type bench struct {
	opts Options
	postcove.Paths
	report.Progress
	res   *Result
	users []string
	mail  *mailgen.Generator
}

// side is one LMTP server under test.
type side struct {
	name, config string
	addr         string
	mailRoot     string
	delivered    atomic.Int64 // 250s, warmups included
}

func (b *bench) measure(ctx context.Context) (err error) {
	rep := b.res.Report

	var servers fleet.Fleet
	defer func() { err = errors.Join(err, servers.StopInto(rep)) }()

	// postcove: auth with the users, then mailbox pointed at it.
	pc := &side{name: "postcove", config: "mailbox + auth (sqlite)", mailRoot: filepath.Join(b.Root, "postcove-mail")}
	auth, mbox, err := b.StartMail(ctx, b.Step, &servers, domain, b.users, pc.mailRoot)
	if err != nil {
		return err
	}
	pc.addr = mbox.LMTPAddr()
	// postcove is two processes: both are counted.
	servers.Watch(pc.name, pc.config, memorySampleInterval, mbox.Pid(), auth.Pid())
	servers.Watch(pc.name, "auth alone (part of the above: not summed)", memorySampleInterval, auth.Pid())

	dc := &side{name: "dovecot", config: "lmtp, passwd-file userdb, mail_fsync=always"}
	var dsrv *dovecot.Server
	if err := b.Step("start dovecot lmtp", func() error {
		var err error
		dsrv, err = b.opts.StartDovecotMail(ctx, filepath.Join(b.Root, "dovecot"), "lmtp", b.users)
		if err != nil {
			return err
		}
		dc.addr, dc.mailRoot = dsrv.Addr("lmtp"), dsrv.MailRoot()
		servers.OnStop(dsrv.Stop)
		servers.Watch(dc.name, dc.config, memorySampleInterval, dsrv.Pid())
		return nil
	}); err != nil {
		return err
	}
	b.describe(ctx)

	// Both servers create a user's Maildir (folders, index, a dozen fsyncs)
	// on the first delivery. That is a one-off per user, not the steady
	// state the rows measure, so every user gets one message first.
	for _, s := range []*side{dc, pc} {
		if err := b.Step("first delivery to each user ("+s.name+")", func() error { return b.prime(ctx, s) }); err != nil {
			return err
		}
	}

	table := report.Table{Title: "postcove mailbox (+ auth, sqlite) vs dovecot lmtp (passwd-file)"}
	defer func() { rep.Tables = []report.Table{table} }()
	var failures []error
	for _, size := range b.opts.Sizes {
		for _, conc := range b.opts.Concurrency {
			label := "deliver " + mailgen.SizeLabel(size)
			theirs, err := b.run(ctx, dc, size, conc, label)
			if err != nil {
				return fmt.Errorf("dovecot: %w\n%s", err, dsrv.LogTail())
			}
			ours, err := b.run(ctx, pc, size, conc, label)
			if err != nil {
				return fmt.Errorf("postcove: %w", err)
			}
			row := report.Row{Op: label, Conc: conc, Ours: ours, Theirs: theirs}
			failures = append(failures, row.Failures("postcove", "dovecot")...)
			table.Rows = append(table.Rows, row)
		}
	}
	if err := servers.StopInto(rep); err != nil {
		return err
	}

	// Every 250 must be a file, and every file a 250.
	for _, s := range []*side{pc, dc} {
		n, err := maildirscan.Count(s.mailRoot)
		if err != nil {
			return err
		}
		b.res.Delivered[s.name] = int(s.delivered.Load())
		b.res.Files[s.name] = n
		b.Logf("%s: %d deliveries answered 250, %d message files", s.name, s.delivered.Load(), n)
		if n != int(s.delivered.Load()) {
			failures = append(failures, fmt.Errorf("%s: %d deliveries answered 250 but its Maildirs hold %d messages", s.name, s.delivered.Load(), n))
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("Checked after the run: postcove answered 250 to %d deliveries and its Maildirs hold %d messages; dovecot %d and %d (first deliveries and warmups included; new/ and cur/ of every user's Maildir).",
		b.res.Delivered["postcove"], b.res.Files["postcove"], b.res.Delivered["dovecot"], b.res.Files["dovecot"]))
	if len(failures) > 0 {
		return fmt.Errorf("wrong answers during the benchmark: %w", errors.Join(failures...))
	}
	return nil
}

// prime delivers one small message to every user over one connection.
func (b *bench) prime(ctx context.Context, s *side) error {
	c, err := lmtpclient.Dial(ctx, s.addr, "bench.localhost")
	if err != nil {
		return err
	}
	defer c.Close()
	for _, rcpt := range b.users {
		_, msg := b.mail.Message(rcpt, b.opts.Sizes[0])
		replies, err := c.Deliver(ctx, mailgen.Sender, []string{rcpt}, msg)
		if err != nil {
			return err
		}
		if replies[0].Code != 250 {
			return fmt.Errorf("RCPT/DATA %s: %s", rcpt, replies[0])
		}
		s.delivered.Add(1)
	}
	return nil
}

// run measures one side at one size and concurrency: one LMTP connection
// per worker, dialled on first use and again after a broken exchange.
func (b *bench) run(ctx context.Context, s *side, size, conc int, label string) (load.Result, error) {
	// The previous row's mail, of either side, is written back before
	// this one starts, not during it: the sides share the disk.
	syscall.Sync()
	conns := make([]*lmtpclient.Client, conc)
	rngs := make([]*rand.Rand, conc)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(size), uint64(conc)<<16|uint64(i)))
	}
	call := func(ctx context.Context, w int) error {
		if conns[w] == nil {
			c, err := lmtpclient.Dial(ctx, s.addr, "bench.localhost")
			if err != nil {
				return err
			}
			conns[w] = c
		}
		rcpt := b.users[rngs[w].IntN(len(b.users))]
		_, msg := b.mail.Message(rcpt, size)
		replies, err := conns[w].Deliver(ctx, mailgen.Sender, []string{rcpt}, msg)
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
	b.Logf("%-9s %-16s conc %3d: %9.1f msgs/s  p50 %-8s p99 %-8s errors %d",
		s.name, label, conc, res.PerSecond, report.Duration(res.P50), report.Duration(res.P99), res.Errors)
	return res, nil
}

func (b *bench) describe(ctx context.Context) {
	rep := b.res.Report
	rep.Environment = append(b.Environment(ctx, b.opts.DovecotBin), []report.KV{
		{Name: "load", Value: fmt.Sprintf("%d users in one domain; sizes %s; concurrency %s; %v measured per row and server after %v warmup",
			len(b.users), report.JoinInts(b.opts.Sizes), report.JoinInts(b.opts.Concurrency), b.opts.Duration, b.opts.Warmup)},
	}...)
	rep.Notes = []string{
		"msgs/s: deliveries answered 250 per second; ratio = postcove ÷ dovecot: above 1, postcove is faster. Any other reply is an error, counted next to the rate and failing the run (never timing).",
		"Closed loop: each worker holds one LMTP connection (LHLO once) and runs sequential transactions on it: MAIL FROM, one RCPT TO (a uniformly random user), DATA with a fixed body and a unique Message-ID; it sends the next only when the 250 arrived. Message size is the DATA size, header included (approximately).",
		"Both sides fsync before 250: postcove always fsyncs the message file and its directory; dovecot runs with mail_fsync = always (Debian's default is optimized, which does not fsync new mail) to match. Same Maildir layout (<root>/<domain>/<user>/Maildir).",
		"Postcove: the mailbox service asks the auth service (gRPC, SQLite, its default 5 s recipient cache) whether each recipient exists, writes Maildir++ and its index. Dovecot: lmtp service (one process per connection, Debian's defaults), passwd-file userdb held in memory, configured by scripts/dovecot-bench.sh.",
		fmt.Sprintf("Peak RSS: the sum of VmHWM over the process tree (pid and descendants), sampled every %v; for postcove, mailbox's tree plus auth's (auth's alone is shown too). Dovecot's tree includes its master, config, log, anvil, auth and lmtp processes.", memorySampleInterval),
	}
}
