// Package smtpbench measures mail accepted over SMTP and delivered into
// Maildirs: postcove's mta (with its mailbox and auth services) against
// postfix delivering over LMTP into dovecot, on loopback, in one run, with
// the same load generator, users and messages.
//
// Each row sends a fixed number of messages of one size from a fixed
// number of SMTP connections (the port-25 role: plain SMTP, no AUTH, one
// recipient per message, a uniformly random user of the one domain) and
// measures two things:
//
//   - accepted: messages answered 250 per second, and the accept latency,
//     from the end of the data (the "." line) to the 250, which each
//     server says only once the message is durably queued;
//   - end to end: messages per second from the first send until the last
//     of them is a file in a user's Maildir (new/ or cur/), polled.
//
// At the end every Message-ID answered 250 must be in the Maildirs exactly
// once, and nothing else may be there; a lost, duplicated or stray
// message fails the run.
package smtpbench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/fleet"
	"github.com/postcove/postcove/services/bench/internal/lmtpclient"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/maildirscan"
	"github.com/postcove/postcove/services/bench/internal/mailgen"
	"github.com/postcove/postcove/services/bench/internal/nxdns"
	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/bench/internal/postfix"
	"github.com/postcove/postcove/services/bench/internal/report"
)

// Defaults of Options.
const (
	DefaultUsers          = 100
	DefaultWarmupMessages = 50
	DefaultDrainTimeout   = 2 * time.Minute
)

// Defaults of Options' lists: a typical small message and one with an
// attachment, fewer of the large ones. A row must last seconds on both
// sides: with 200 messages of 100 KiB, a row at 8 connections took under
// half a second, and its ratio swung between 1.4 and 2 from run to run.
var (
	DefaultSizes       = []int{4096, 102400}
	DefaultMessages    = []int{2000, 1000}
	DefaultConcurrency = []int{1, 8, 32}
)

// MaxConcurrency is the most connections of a row: postfix runs at most
// default_process_limit (100) smtpd processes.
const MaxConcurrency = 100

// connectionsPerIP is both servers' limit on the connections of one client
// address (the benchmark's 127.0.0.1); scripts/postfix-bench.sh sets
// postfix's smtpd_client_connection_count_limit to the same.
const connectionsPerIP = 200

// domain is the one mail domain of the benchmark.
const domain = "example.org"

// Options configure a run.
type Options struct {
	// Servers: postcove's auth and mailbox binaries, dovecot, the scripts
	// directory, where the run's directory goes, the progress log.
	postcove.Servers
	MTABin     string // postcove's mta binary; required
	PostfixBin string // the postfix command; default postfix.DefaultBin
	Users      int    // default DefaultUsers
	// Sizes lists the message sizes in bytes. Default DefaultSizes.
	Sizes []int
	// Messages is the number of messages of a row, one per size, or one
	// number for every size. Default DefaultMessages (with the default
	// sizes) or 500.
	Messages []int
	// Concurrency lists the SMTP connections of each row. Default
	// DefaultConcurrency.
	Concurrency []int
	// WarmupMessages are sent, and delivered, before each row and side is
	// measured, on the row's connections. Default DefaultWarmupMessages;
	// NoWarmup turns it off.
	WarmupMessages int
	NoWarmup       bool
	// DrainTimeout bounds the wait for a row's messages to reach the
	// Maildirs. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
}

func (o *Options) defaults() error {
	if err := o.Servers.Defaults(); err != nil {
		return err
	}
	if o.MTABin == "" {
		return errors.New("need --mta-bin (make build writes bin/mta)")
	}
	if o.PostfixBin == "" {
		o.PostfixBin = postfix.DefaultBin
	}
	if o.Users == 0 {
		o.Users = DefaultUsers
	}
	if len(o.Sizes) == 0 {
		o.Sizes = DefaultSizes
		if len(o.Messages) == 0 {
			o.Messages = DefaultMessages
		}
	}
	if len(o.Messages) == 0 {
		o.Messages = []int{500}
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.NoWarmup {
		o.WarmupMessages = 0
	} else if o.WarmupMessages == 0 {
		o.WarmupMessages = DefaultWarmupMessages
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	switch {
	case o.Users < 1:
		return fmt.Errorf("users: %d, want at least 1", o.Users)
	case len(o.Messages) != 1 && len(o.Messages) != len(o.Sizes):
		return fmt.Errorf("%d message counts for %d sizes: give one for each size, or one for all", len(o.Messages), len(o.Sizes))
	case o.WarmupMessages < 0 || o.DrainTimeout < 0:
		return errors.New("warmup messages and drain timeout must not be negative")
	}
	for _, n := range o.Messages {
		if n < 1 {
			return fmt.Errorf("message count %d, want at least 1", n)
		}
	}
	for _, s := range o.Sizes {
		if s < 512 || s > 10<<20 {
			return fmt.Errorf("message size %d outside 512..10 MiB", s)
		}
	}
	return load.CheckPlan(o.Concurrency, MaxConcurrency, 0, 0)
}

// messages is the number of messages of a row of the i-th size.
func (o *Options) messages(i int) int {
	if len(o.Messages) == 1 {
		return o.Messages[0]
	}
	return o.Messages[i]
}

// Result is a report plus the check of the Maildirs at the end.
type Result struct {
	Report *report.Report
	// Checks are by side, "postcove" and "postfix".
	Checks map[string]Check
}

// Check compares what a side answered 250 for with its Maildirs.
type Check struct {
	Accepted  int // messages answered 250, warmups included
	Delivered int // of them, found in the Maildirs exactly once
	// Lost and Duplicated are Message-IDs answered 250 and found no
	// times, or more than once.
	Lost, Duplicated []string
	// Stray counts messages found that were never answered 250 (or have
	// no Message-ID of the run).
	Stray int
}

// Err says what is wrong, nil when every accepted message arrived once
// and nothing else did.
func (c Check) Err(side string) error {
	if len(c.Lost) == 0 && len(c.Duplicated) == 0 && c.Stray == 0 {
		return nil
	}
	return fmt.Errorf("%s: of %d messages answered 250, %d lost (e.g. %v), %d delivered more than once (e.g. %v); %d messages delivered without a 250",
		side, c.Accepted, len(c.Lost), first(c.Lost), len(c.Duplicated), first(c.Duplicated), c.Stray)
}

func first(ids []string) []string { return ids[:min(len(ids), 3)] }

const (
	memorySampleInterval = 100 * time.Millisecond
	callTimeout          = time.Minute
	drainPoll            = 10 * time.Millisecond
)

// Run sets both sides up, measures them, and checks the Maildirs. The
// error is non-nil when the run could not be done, a server refused a
// message, or a message was lost, duplicated or stray; the result, never
// nil, is then partial.
func Run(ctx context.Context, opts Options) (*Result, error) {
	res := &Result{
		Report: &report.Report{Benchmark: "smtp", Ours: "postcove", Theirs: "postfix+dovecot", Unit: "msgs", Started: time.Now()},
		Checks: map[string]Check{},
	}
	if err := opts.defaults(); err != nil {
		return res, err
	}
	mtaBin, err := postcove.AbsBin("postcove mta", opts.MTABin)
	if err != nil {
		return res, err
	}
	if err := postfix.CheckInstalled(opts.PostfixBin); err != nil {
		return res, err
	}
	b := &bench{opts: opts, Progress: report.Progress{Report: res.Report, Log: opts.Log}, res: res, mtaBin: mtaBin, mail: mailgen.New("postcove smtp benchmark", opts.Sizes)}
	b.users = postcove.Mailboxes(opts.Users, domain)
	err = opts.Frame("smtp", "lmtp", []string{"postcove-mail", "dovecot", "postfix"}, &b.Paths, func() error { return b.measure(ctx) })
	return res, err
}

type bench struct {
	opts Options
	postcove.Paths
	report.Progress
	mtaBin string
	res    *Result
	users  []string
	mail   *mailgen.Generator
}

// side is one mail system under test.
type side struct {
	name     string
	addr     string // SMTP
	mailRoot string
	logTail  func() string // for errors

	mu       sync.Mutex          // protects accepted
	accepted map[string]struct{} // Message-IDs answered 250
}

func (s *side) accept(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted[id] = struct{}{}
}

func (s *side) acceptedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted)
}

func (b *bench) measure(ctx context.Context) (err error) {
	rep := b.res.Report
	var servers fleet.Fleet
	defer func() { err = errors.Join(err, servers.StopInto(rep)) }()

	pc, err := b.startPostcove(ctx, &servers)
	if err != nil {
		return err
	}
	theirs, err := b.startPostfix(ctx, &servers)
	if err != nil {
		return err
	}
	b.describe(ctx)

	// The table grows row by row, so a failed run reports what it measured.
	rep.Tables = []report.Table{{Title: "postcove mta + mailbox + auth (sqlite) vs postfix + dovecot lmtp (passwd-file)"}}
	table := &rep.Tables[0]
	var failures []error
	for i, size := range b.opts.Sizes {
		n := b.opts.messages(i)
		for _, conc := range b.opts.Concurrency {
			rows, err := b.row(ctx, pc, theirs, size, conc, n)
			if err != nil {
				return err
			}
			failures = append(failures, rows[0].Failures("postcove", "postfix+dovecot")...)
			table.Rows = append(table.Rows, rows[:]...)
		}
	}
	if err := servers.StopInto(rep); err != nil {
		return err
	}

	// Every 250 must be one file, and every file a 250.
	for _, s := range []*side{pc, theirs} {
		c, err := check(s)
		if err != nil {
			return err
		}
		b.res.Checks[s.name] = c
		b.Logf("%s: %d messages answered 250, %d of them in the Maildirs once; lost %d, duplicated %d, stray %d",
			s.name, c.Accepted, c.Delivered, len(c.Lost), len(c.Duplicated), c.Stray)
		if err := c.Err(s.name); err != nil {
			failures = append(failures, err)
		}
	}
	pcc, thc := b.res.Checks[pc.name], b.res.Checks[theirs.name]
	rep.Notes = append(rep.Notes, fmt.Sprintf("Checked after the run, by Message-ID: postcove answered 250 to %d messages and %d are in its Maildirs exactly once; postfix+dovecot %d and %d (warmups included). Lost, duplicated or stray messages fail the run.",
		pcc.Accepted, pcc.Delivered, thc.Accepted, thc.Delivered))
	if len(failures) > 0 {
		return fmt.Errorf("wrong answers during the benchmark: %w", errors.Join(failures...))
	}
	return nil
}

// startPostcove starts the DNS server, auth with the users, mailbox and
// mta, and watches their memory.
func (b *bench) startPostcove(ctx context.Context, servers *fleet.Fleet) (*side, error) {
	s := &side{name: "postcove", mailRoot: filepath.Join(b.Root, "postcove-mail"), accepted: map[string]struct{}{}}
	var dns *nxdns.Server
	if err := b.Step("start a DNS server (NXDOMAIN to everything)", func() error {
		var err error
		if dns, err = nxdns.Start(); err != nil {
			return err
		}
		servers.OnStop(dns.Stop)
		return nil
	}); err != nil {
		return nil, err
	}
	auth, mbox, err := b.StartMail(ctx, b.Step, servers, domain, b.users, s.mailRoot)
	if err != nil {
		return nil, err
	}
	var mta *postcove.MTA
	if err := b.Step("start postcove mta", func() error {
		var err error
		mta, err = postcove.StartMTA(ctx, postcove.MTAOptions{
			Bin: b.mtaBin, Dir: b.Root, AuthAddr: auth.Addr(), LMTPAddr: mbox.LMTPAddr(), DNSAddr: dns.Addr(),
			MaxConnectionsPerIP: connectionsPerIP,
		})
		if err != nil {
			return err
		}
		servers.OnStop(mta.Stop)
		return nil
	}); err != nil {
		return nil, err
	}
	s.addr = mta.SMTPAddr()
	logDir := b.Root
	s.logTail = func() string { return "logs: " + filepath.Join(logDir, "{mta,mailbox,auth}.log") }
	servers.Watch("postcove", "mta", memorySampleInterval, mta.Pid())
	servers.Watch("postcove", "mailbox", memorySampleInterval, mbox.Pid())
	servers.Watch("postcove", "auth (sqlite)", memorySampleInterval, auth.Pid())
	servers.WatchTotal("postcove", "all: mta + mailbox + auth")
	return s, nil
}

// startPostfix starts dovecot's LMTP server with the users and postfix
// delivering into it, and watches their memory.
func (b *bench) startPostfix(ctx context.Context, servers *fleet.Fleet) (*side, error) {
	s := &side{name: "postfix+dovecot", accepted: map[string]struct{}{}}
	var dsrv *dovecot.Server
	if err := b.Step("start dovecot lmtp", func() error {
		var err error
		if dsrv, err = b.opts.StartDovecotMail(ctx, filepath.Join(b.Root, "dovecot"), "lmtp", b.users); err != nil {
			return err
		}
		servers.OnStop(dsrv.Stop)
		return nil
	}); err != nil {
		return nil, err
	}
	s.mailRoot = dsrv.MailRoot()
	var psrv *postfix.Server
	if err := b.Step("configure and start postfix", func() error {
		var err error
		psrv, err = postfix.Start(ctx, postfix.Options{
			Bin: b.opts.PostfixBin, ScriptsDir: b.opts.ScriptsDir, Dir: filepath.Join(b.Root, "postfix"),
			Domain: domain, Recipients: b.users, LMTPAddr: dsrv.Addr("lmtp"),
		})
		if err != nil {
			return err
		}
		servers.OnStop(psrv.Stop)
		return nil
	}); err != nil {
		return nil, err
	}
	s.addr = psrv.Addr()
	s.logTail = func() string { return "postfix: " + psrv.LogTail() + "\ndovecot: " + dsrv.LogTail() }
	servers.Watch(s.name, "postfix: master + smtpd, cleanup, qmgr, lmtp... (process tree)", memorySampleInterval, psrv.Pid())
	servers.Watch(s.name, "dovecot: lmtp, passwd-file, mail_fsync=always (process tree)", memorySampleInterval, dsrv.Pid())
	servers.WatchTotal(s.name, "all: postfix + dovecot")
	return s, nil
}

// row measures both sides, theirs first, at one size and concurrency:
// the accept row and the end to end row.
func (b *bench) row(ctx context.Context, ours, theirs *side, size, conc, n int) ([2]report.Row, error) {
	var rows [2]report.Row
	theirAccept, theirE2E, err := b.run(ctx, theirs, size, conc, n)
	if err != nil {
		return rows, fmt.Errorf("%s: %w", theirs.name, err)
	}
	ourAccept, ourE2E, err := b.run(ctx, ours, size, conc, n)
	if err != nil {
		return rows, fmt.Errorf("%s: %w", ours.name, err)
	}
	label := mailgen.SizeLabel(size)
	rows[0] = report.Row{Op: "accept " + label, Conc: conc, Ours: ourAccept, Theirs: theirAccept}
	rows[1] = report.Row{Op: "deliver " + label + " end to end", Conc: conc, Ours: ourE2E, Theirs: theirE2E}
	return rows, nil
}

// run measures one side at one size and concurrency: a warmup, then n
// messages, each batch followed by the wait until it is in the
// Maildirs. Each worker holds one SMTP connection for both, dialled on
// first use and again after a broken exchange.
func (b *bench) run(ctx context.Context, s *side, size, conc, n int) (accept, e2e load.Result, err error) {
	// The previous row's mail, of either side, is written back before
	// this one starts, not during it: the sides share the disk.
	syscall.Sync()
	conns := make([]*lmtpclient.Client, conc)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	rngs := make([]*rand.Rand, conc)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(size), uint64(conc)<<16|uint64(i)))
	}
	call := func(ctx context.Context, w int) (time.Duration, error) {
		if conns[w] == nil {
			c, err := lmtpclient.DialSMTP(ctx, s.addr, "client.bench.localhost")
			if err != nil {
				return 0, err
			}
			conns[w] = c
		}
		rcpt := b.users[rngs[w].IntN(len(b.users))]
		id, msg := b.mail.Message(rcpt, size)
		replies, err := conns[w].Deliver(ctx, mailgen.Sender, []string{rcpt}, msg)
		if err != nil {
			conns[w].Close()
			conns[w] = nil
			return 0, err
		}
		if replies[0].Code != 250 {
			return 0, fmt.Errorf("RCPT/DATA %s: %s", rcpt, replies[0])
		}
		s.accept(id)
		return conns[w].DataWait(), nil
	}
	label := fmt.Sprintf("%s conc %d", mailgen.SizeLabel(size), conc)
	if w := b.opts.WarmupMessages; w > 0 {
		res, err := load.RunTimed(ctx, load.Options{Concurrency: conc, Calls: w, CallTimeout: callTimeout}, call)
		if err != nil {
			return accept, e2e, err
		}
		if res.Errors > 0 {
			return accept, e2e, fmt.Errorf("warmup %s: %d failed messages, first: %w", label, res.Errors, res.FirstError)
		}
		if _, err := b.drain(ctx, s); err != nil {
			return accept, e2e, fmt.Errorf("warmup %s: %w", label, err)
		}
	}
	start := time.Now()
	accept, err = load.RunTimed(ctx, load.Options{Concurrency: conc, Calls: n, CallTimeout: callTimeout}, call)
	if err != nil {
		return accept, e2e, err
	}
	done, err := b.drain(ctx, s)
	if err != nil {
		return accept, e2e, fmt.Errorf("%s: %w", label, err)
	}
	e2e = load.Result{Concurrency: conc, Calls: accept.Calls, Elapsed: done.Sub(start)}
	if e2e.Elapsed > 0 {
		e2e.PerSecond = float64(e2e.Calls) / e2e.Elapsed.Seconds()
	}
	b.Logf("%-15s %-7s conc %3d: accepted %7.1f msgs/s (p50 %-8s p99 %-8s errors %d), end to end %7.1f msgs/s",
		s.name, mailgen.SizeLabel(size), conc, accept.PerSecond, report.Duration(accept.P50), report.Duration(accept.P99), accept.Errors, e2e.PerSecond)
	return accept, e2e, nil
}

// drain waits until the side's Maildirs hold as many messages as it
// accepted, and returns when they did (to the poll interval).
func (b *bench) drain(ctx context.Context, s *side) (time.Time, error) {
	want := s.acceptedCount()
	deadline := time.Now().Add(b.opts.DrainTimeout)
	for {
		n, err := maildirscan.Count(s.mailRoot)
		if err != nil {
			return time.Time{}, err
		}
		now := time.Now()
		if n >= want {
			return now, nil
		}
		if now.After(deadline) {
			return time.Time{}, fmt.Errorf("%d of the %d messages answered 250 are not in the Maildirs after %v: lost, or stuck in a queue\n%s",
				want-n, want, b.opts.DrainTimeout, s.logTail())
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(drainPoll):
		}
	}
}

// check compares the Message-IDs a side accepted with those in its
// Maildirs.
func check(s *side) (Check, error) {
	found, err := maildirscan.MessageIDs(s.mailRoot)
	if err != nil {
		return Check{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Check{Accepted: len(s.accepted)}
	for id := range s.accepted {
		switch found[id] {
		case 0:
			c.Lost = append(c.Lost, id)
		case 1:
			c.Delivered++
		default:
			c.Duplicated = append(c.Duplicated, id)
		}
	}
	for id, n := range found {
		if _, ok := s.accepted[id]; !ok {
			c.Stray += n
		}
	}
	slices.Sort(c.Lost)
	slices.Sort(c.Duplicated)
	return c, nil
}

func (b *bench) describe(ctx context.Context) {
	rep := b.res.Report
	rep.Environment = append(b.Environment(ctx, b.opts.DovecotBin),
		report.KV{Name: "postfix", Value: postfix.Version(ctx, b.opts.PostfixBin)},
		report.KV{Name: "postcove mta", Value: b.mtaBin + " (version " + report.CommandOutput(ctx, b.mtaBin, "version") + ")"},
		report.KV{Name: "load", Value: fmt.Sprintf("%d users in one domain; sizes %s with %s messages a row; concurrency %s; %d warmup messages before each row and side",
			len(b.users), report.JoinInts(b.opts.Sizes), report.JoinInts(b.opts.Messages), report.JoinInts(b.opts.Concurrency), b.opts.WarmupMessages)},
	)
	rep.Notes = []string{
		"accept rows: messages answered 250 per second, and the accept latency p50/p99, from the end of the data (the \".\" line) to the 250. end to end rows: messages per second from the first send of the row until the last of them is a file in new/ or cur/ of its user's Maildir (polled every 10 ms). ratio = postcove ÷ postfix+dovecot: above 1, postcove is faster; the target is 2 end to end at concurrency 8 and 32.",
		"Load: closed loop, the same client for both sides. Each worker holds one SMTP connection (EHLO once, no PIPELINING, no TLS, no AUTH: inbound mail from a stranger to local users) and runs sequential transactions on it: MAIL FROM:<" + mailgen.Sender + ">, one RCPT TO (a uniformly random user), DATA with a fixed body and a unique Message-ID. The warmup runs on the same connections, and is delivered, before the row starts.",
		"Both sides fsync before each 250: postcove's mta writes the message and its envelope to its queue and fsyncs them and the directory; postfix's cleanup fsyncs the queue file. Into the Maildir, postcove's mailbox fsyncs the message file and its directory; dovecot runs with mail_fsync = always (Debian's default, optimized, would not fsync new mail).",
		"Postcove: mta (its defaults: 16 delivery workers, LMTP to the mailbox service) asks the auth service (gRPC, SQLite) about each recipient at RCPT time; the mailbox service asks it too, writes Maildir++ and its index. It also checks SPF, DKIM and DMARC of every inbound message into an Authentication-Results field (postfix, as configured, checks none); its DNS lookups go to a server on loopback that answers NXDOMAIN to everything (so: spf=none, dmarc=none). Postfix: scripts/postfix-bench.sh, a virtual mailbox domain with its users in a texthash table (550 at RCPT for others), delivered by postfix's lmtp client (its default of 20 connections to the destination) to dovecot's lmtp service (passwd-file userdb), scripts/dovecot-bench.sh; otherwise postfix's defaults (including in_flow_delay).",
		fmt.Sprintf("Both allow %d connections from the client's address (postcove limits.max_connections_per_ip, postfix smtpd_client_connection_count_limit); no rate limits.", connectionsPerIP),
		fmt.Sprintf("Peak RSS: VmHWM over each process tree (the process and its descendants), sampled every %v; \"of live processes\" is the largest sum over the processes alive at one sample, which suits postfix and dovecot whose processes come and go (postfix runs an smtpd and a cleanup per concurrent client connection, up to 20 lmtp clients, and more). Each process's RSS counts the shared pages it maps (libc and the like), so a sum over many processes overstates what they take together. The \"all\" lines add up the lines above them.", memorySampleInterval),
	}
}
