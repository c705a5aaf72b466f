// Package imapbench measures IMAP: postcove's mailbox service (logins
// checked by postcove's auth) against dovecot's imap (passwd-file), on
// loopback, in one run, on the same mail.
//
// Both servers read the same Maildir layout
// (<root>/<domain>/<user>/Maildir), so the benchmark writes the messages
// itself (corpus.go), identically for both, before either has seen them:
// each builds its index on the first SELECT. The rows (workload.go) are
// the operations of a mail client: a session start, FLAGS of a whole
// mailbox, bodies of 100 messages, a full-text SEARCH, and SELECT of a
// very large mailbox, first cold (the index build, once) and then warm.
// Every answer is checked against what was written; a wrong answer fails
// the run, timing never does.
package imapbench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/fleet"
	"github.com/postcove/postcove/services/bench/internal/imapclient"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/bench/internal/report"
)

// Defaults of Options.
const (
	DefaultMessages       = 10000
	DefaultSelectMessages = 100000
	DefaultDuration       = 5 * time.Second
	DefaultWarmup         = time.Second
	DefaultSeed           = 1
)

// DefaultConcurrency are the concurrencies measured by default: one
// client, and several at once.
var DefaultConcurrency = []int{1, 8}

// domain is the one mail domain of the benchmark.
const domain = "example.org"

// Options configure a run.
type Options struct {
	postcove.Servers
	// Messages is the size of the mailbox FETCH and SEARCH read. Default
	// 10000.
	Messages int
	// SelectMessages is the size of the mailbox SELECT is measured on.
	// Default 100000.
	SelectMessages int
	// Seed makes the messages; the same seed writes the same bytes.
	// Default 1.
	Seed uint64
	// Plan: concurrencies are IMAP connections. Defaults: 1 and 8, 5 s
	// measured after 1 s of warmup.
	load.Plan
}

func (o *Options) defaults() error {
	if err := o.Servers.Defaults(); err != nil {
		return err
	}
	if o.Messages == 0 {
		o.Messages = DefaultMessages
	}
	if o.SelectMessages == 0 {
		o.SelectMessages = DefaultSelectMessages
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.Messages < 1 || o.SelectMessages < 1 {
		return fmt.Errorf("messages %d and select-messages %d: want at least 1", o.Messages, o.SelectMessages)
	}
	return o.Plan.Defaults(load.Plan{Concurrency: DefaultConcurrency, Duration: DefaultDuration, Warmup: DefaultWarmup}, 256)
}

const (
	memorySampleInterval = 100 * time.Millisecond
	callTimeout          = 60 * time.Second
	// coldSelectTimeout bounds the first SELECT of the big mailbox, which
	// builds its index.
	coldSelectTimeout = 10 * time.Minute
)

// Result is the report plus the cold SELECT times, by server.
type Result struct {
	Report     *report.Report
	ColdSelect map[string]time.Duration
}

// Run writes the mail, starts both sides, measures them and checks every
// answer. The error is non-nil when the run could not be done or a server
// answered wrongly; the result, never nil, is then partial.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return &Result{Report: &report.Report{}}, err
	}
	pw := make([]byte, 9)
	crand.Read(pw) //nolint:errcheck // never fails
	b := &bench{opts: opts, password: hex.EncodeToString(pw)}
	b.res = &Result{
		Report:     &report.Report{Benchmark: "imap", Ours: "postcove", Theirs: "dovecot", Unit: "ops", Started: time.Now()},
		ColdSelect: map[string]time.Duration{},
	}
	err := opts.InFrame("imap", &b.Paths, func() error { return b.measure(ctx) })
	return b.res, err
}

// bench is one run: what it was asked, where it works, what it wrote.
type bench struct {
	postcove.Paths
	opts     Options
	password string // every user's
	res      *Result
	corpus   *corpus
	small    expected // the fetch user's mailbox
}

func (b *bench) step(name string, f func() error) error {
	return b.res.Report.Step(b.opts.Log, name, f)
}

// side is one IMAP server under test.
type side struct {
	name string
	addr string
	uids []uint32 // of the fetch user's INBOX
}

func (b *bench) measure(ctx context.Context) (err error) {
	rep := b.res.Report
	var servers fleet.Fleet
	defer func() { err = errors.Join(err, servers.StopInto(rep)) }()

	pcRoot := filepath.Join(b.Root, "postcove-mail")
	dcDir := filepath.Join(b.Root, "dovecot")
	if err := b.writeMail(ctx, pcRoot, filepath.Join(dcDir, "mail")); err != nil { // where the script puts it
		return err
	}

	pc := &side{name: "postcove"}
	if err := b.startPostcove(ctx, pc, pcRoot, &servers); err != nil {
		return err
	}
	dc := &side{name: "dovecot"}
	var dsrv *dovecot.Server
	if err := b.step("start dovecot imap", func() error {
		var err error
		if dsrv, err = b.startDovecot(ctx, dcDir); err != nil {
			return err
		}
		servers.OnStop(dsrv.Stop)
		dc.addr = dsrv.Addr("imap")
		servers.Watch("dovecot", "imap, passwd-file, mail_fsync=always (all processes)", memorySampleInterval, dsrv.Pid())
		return nil
	}); err != nil {
		return err
	}
	b.describe(ctx)

	table := report.Table{Title: "postcove mailbox (+ auth, sqlite) vs dovecot imap (passwd-file)"}
	defer func() { rep.Tables = []report.Table{table} }()
	var failures []error
	// The first SELECT of the big mailbox, before anything else reads it.
	cold := report.Row{Op: fmt.Sprintf("SELECT %s msgs, first (cold: builds the index)", count(b.opts.SelectMessages)), Conc: 1}
	for _, s := range []*side{dc, pc} {
		d, err := b.coldSelect(ctx, s)
		if err != nil {
			return fmt.Errorf("%s: cold SELECT: %w%s", s.name, err, logTail(s, dsrv))
		}
		b.res.ColdSelect[s.name] = d
		fmt.Fprintf(b.opts.Log, "%-9s %s: %s\n", s.name, cold.Op, report.Duration(d))
		r := load.Result{Concurrency: 1, Calls: 1, Elapsed: d, P50: d, P99: d, Max: d, PerSecond: 1 / d.Seconds()}
		if s == pc {
			cold.Ours = r
		} else {
			cold.Theirs = r
		}
	}
	for _, s := range []*side{dc, pc} {
		var err error
		if s.uids, err = b.listUIDs(ctx, s); err != nil {
			return fmt.Errorf("%s: %w%s", s.name, err, logTail(s, dsrv))
		}
	}
	for _, o := range b.ops() {
		for _, conc := range b.opts.Concurrency {
			theirs, err := b.run(ctx, dc, o, conc)
			if err != nil {
				return fmt.Errorf("dovecot: %s: %w\n%s", o.label, err, dsrv.LogTail())
			}
			ours, err := b.run(ctx, pc, o, conc)
			if err != nil {
				return fmt.Errorf("postcove: %s: %w", o.label, err)
			}
			row := report.Row{Op: o.label, Conc: conc, Ours: ours, Theirs: theirs}
			failures = append(failures, row.Failures("postcove", "dovecot")...)
			table.Rows = append(table.Rows, row)
		}
	}
	table.Rows = append(table.Rows, cold)
	if err := servers.StopInto(rep); err != nil {
		return err
	}
	b.noteMemory()
	if len(failures) > 0 {
		return fmt.Errorf("wrong answers during the benchmark: %w", errors.Join(failures...))
	}
	return nil
}

// writeMail writes the corpus and links the two users' mailboxes into
// each mail root (the last one dovecot's).
func (b *bench) writeMail(ctx context.Context, roots ...string) error {
	corpusDir := filepath.Join(b.Root, "corpus")
	n := max(b.opts.Messages, b.opts.SelectMessages)
	if err := b.step(fmt.Sprintf("write %d messages", n), func() error {
		var err error
		b.corpus, err = writeCorpus(ctx, b.opts.Seed, n, corpusDir)
		return err
	}); err != nil {
		return err
	}
	b.small = b.corpus.expect(b.opts.Messages)
	return b.step("link them into the servers' Maildirs", func() error {
		for _, r := range roots {
			if err := b.corpus.linkMailbox(corpusDir, maildir(r, fetchUser), b.opts.Messages); err != nil {
				return err
			}
			if err := b.corpus.linkMailbox(corpusDir, maildir(r, bigUser), b.opts.SelectMessages); err != nil {
				return err
			}
		}
		return giveDirs(roots[len(roots)-1])
	})
}

// logTail is dovecot's log for an error message, or a pointer to
// postcove's logs.
func logTail(s *side, dsrv *dovecot.Server) string {
	if s.name == "dovecot" {
		return "\n" + dsrv.LogTail()
	}
	return " (logs: mailbox.log, auth.log in the kept directory)"
}

// startPostcove starts auth with the two users, and the mailbox service
// with IMAP on mailRoot; both trees' memory is watched from then on.
func (b *bench) startPostcove(ctx context.Context, pc *side, mailRoot string, servers *fleet.Fleet) error {
	var auth *postcove.Auth
	if err := b.step("start postcove auth, create the users", func() error {
		var err error
		if auth, err = postcove.StartAuth(ctx, b.AuthBin, b.Root); err != nil {
			return err
		}
		servers.OnStop(auth.Stop)
		return auth.CreateUsers(ctx, domain, []postcove.User{{Address: fetchUser, Password: b.password}, {Address: bigUser, Password: b.password}})
	}); err != nil {
		return err
	}
	return b.step("start postcove mailbox", func() error {
		mbox, err := postcove.StartMailbox(ctx, postcove.MailboxOptions{Bin: b.MailboxBin, Dir: b.Root, MailRoot: mailRoot, AuthAddr: auth.Addr(), IMAP: true})
		if err != nil {
			return err
		}
		servers.OnStop(mbox.Stop)
		pc.addr = mbox.IMAPAddr()
		servers.Watch("postcove", postcoveConfig, memorySampleInterval, mbox.Pid(), auth.Pid())
		servers.Watch("postcove", "auth alone (part of the above: not summed)", memorySampleInterval, auth.Pid())
		return nil
	})
}

// startDovecot starts a private dovecot with IMAP on a loopback port and
// the two users in its passwd-file, reading the mail under dir/mail.
func (b *bench) startDovecot(ctx context.Context, dir string) (*dovecot.Server, error) {
	var users []dovecot.PasswdEntry
	for _, u := range []string{fetchUser, bigUser} {
		hash, err := dovecot.HashArgon2ID(b.password, dovecot.PostcoveArgon2(), crand.Reader)
		if err != nil {
			return nil, err
		}
		users = append(users, dovecot.MailUser(u, hash, filepath.Join(dir, "mail")))
	}
	return b.opts.StartDovecot(ctx, dir, "imap", users)
}

// coldSelect logs in as the big mailbox's user and times its first
// SELECT.
func (b *bench) coldSelect(ctx context.Context, s *side) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, coldSelectTimeout)
	defer cancel()
	c, err := imapclient.Dial(ctx, s.addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Login(ctx, bigUser, b.password); err != nil {
		return 0, err
	}
	t0 := time.Now()
	n, err := c.Select(ctx, "INBOX")
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if n != b.opts.SelectMessages {
		return 0, fmt.Errorf("%d EXISTS, want %d", n, b.opts.SelectMessages)
	}
	return d, c.Logout(ctx)
}

// run measures one op on one side at one concurrency.
func (b *bench) run(ctx context.Context, s *side, o op, conc int) (load.Result, error) {
	conns := make([]*imapclient.Client, conc)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Logout(ctx) //nolint:errcheck // done with it
			}
		}
	}()
	rngs := make([]*rand.Rand, conc)
	for w := range conc {
		rngs[w] = rand.New(rand.NewPCG(b.opts.Seed, uint64(conc)<<16|uint64(w)))
		if o.session {
			c, err := b.session(ctx, s, o.user)
			if err != nil {
				return load.Result{}, fmt.Errorf("open session %d: %w", w, err)
			}
			conns[w] = c
		}
	}
	call := func(ctx context.Context, w int) error {
		if o.session && conns[w] == nil { // broken by an earlier error
			c, err := b.session(ctx, s, o.user)
			if err != nil {
				return err
			}
			conns[w] = c
		}
		err := o.do(ctx, s, conns[w], rngs[w])
		if err != nil && conns[w] != nil {
			conns[w].Close()
			conns[w] = nil
		}
		return err
	}
	res, err := load.Run(ctx, load.Options{Concurrency: conc, Duration: b.opts.Duration, Warmup: b.opts.Warmup, CallTimeout: callTimeout}, call)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(b.opts.Log, "%-9s %-30s conc %3d: %9.1f ops/s  p50 %-8s p99 %-8s errors %d\n",
		s.name, o.label, conc, res.PerSecond, report.Duration(res.P50), report.Duration(res.P99), res.Errors)
	return res, nil
}

// maildir is the INBOX of user under a mail root.
func maildir(root, user string) string {
	local, dom, _ := strings.Cut(user, "@")
	return filepath.Join(root, dom, local, "Maildir")
}

// giveDirs gives the directories under root to the user dovecot's mail
// processes run as: they write their index files and dovecot-uidlist
// there. The message files stay the caller's, readable by all.
func giveDirs(root string) error {
	uid, gid := dovecot.MailOwner()
	if uid == os.Getuid() {
		return nil
	}
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

func (b *bench) describe(ctx context.Context) {
	rep := b.res.Report
	rep.Environment = append(b.Environment(ctx, b.opts.DovecotBin), []report.KV{
		{Name: "load", Value: fmt.Sprintf("mailboxes of %d and %d messages (seed %d); concurrency %s; %v measured per row and server after %v warmup",
			b.opts.Messages, b.opts.SelectMessages, b.opts.Seed, report.JoinInts(b.opts.Concurrency), b.opts.Duration, b.opts.Warmup)},
	}...)
	rep.Notes = []string{
		"ops/s: operations answered OK and checked, per second; ratio = postcove ÷ dovecot: above 1, postcove is faster. A wrong answer is an error, counted next to the rate, and fails the run (timing never does).",
		fmt.Sprintf("Mail: %d messages of 2–20 KiB (log-uniform), CRLF, delivered-mail headers, 30%% multipart/mixed with a base64 attachment, text of vocabulary words; flags in the file names (60%% \\Seen, 10%% \\Flagged+\\Seen, 10%% \\Answered+\\Seen). Written once into cur/ and hard-linked into both servers' Maildirs (<root>/<domain>/<user>/Maildir), which neither had seen: each builds its index on the first SELECT.", max(b.opts.Messages, b.opts.SelectMessages)),
		"Closed loop, one IMAP connection per worker, IMAP4rev1, a raw-protocol client (internal/imapclient) that only frames responses, the same for both. login+select: a new connection per op (greeting, LOGIN, SELECT INBOX, LOGOUT). The other rows run on connections logged in with INBOX selected before the measurement: FETCH 1:* (FLAGS) of the whole mailbox; UID FETCH of BODY.PEEK[] (PEEK: no \\Seen is set, as mail clients fetch) of 100 consecutive UIDs from a random place, one command; SEARCH TEXT of a word in about 5% of the messages; SELECT INBOX again on the big mailbox (warm).",
		fmt.Sprintf("Checked: EXISTS of every SELECT; FETCH FLAGS returns every message and the \\Seen, \\Flagged, \\Answered counts of the file names (%d, %d, %d of %d); every fetched body is byte for byte a message written (size, CRC-32C); SEARCH TEXT finds exactly the %d messages holding the word.", b.small.seen, b.small.flagged, b.small.answered, b.small.messages, b.small.withWord),
		"Cold SELECT: the first SELECT of the big mailbox on each server (login not timed), once, before any other row: it builds the index from the files. Target for postcove: under a second.",
		"Logins: the same password for both, argon2id with the same parameters on both sides (postcove's defaults, m=19456 KiB, t=2, p=1; dovecot reads them as {ARGON2ID} in its passwd-file), no cache on either side; postcove's lockout off. Argon2: dovecot computes it with libsodium, postcove's auth with " + postcove.Argon2(filepath.Join(b.Root, "auth.log")) + " (its log says which: libsodium when built with it, see README). Dovecot: configured by scripts/dovecot-bench.sh (imap-login and imap processes as Debian ships them: a login process and an imap process per connection; mail_max_userip_connections raised), passwd-file userdb.",
		fmt.Sprintf("Peak RSS, sampled every %v: postcove is the mailbox and the auth process (two trees, summed). Dovecot is its whole tree (master, config, log, anvil, auth, imap-login and imap processes); its processes come and go with connections, so \"of live processes\", the largest sum of VmHWM over the processes alive at one sample, is its comparable peak, and the sum over every process seen an upper bound. Per-process sums count shared pages (libraries, mapped index files) once per process.", memorySampleInterval),
	}
}

// postcoveConfig names postcove's whole memory row, the one compared.
const postcoveConfig = "mailbox + auth (sqlite)"

// noteMemory adds the memory ratio to the notes.
func (b *bench) noteMemory() {
	rep := b.res.Report
	var ours, theirs load.Peak
	for _, m := range rep.Memory {
		switch {
		case m.Server == "postcove" && m.Config == postcoveConfig:
			ours = m.Peak
		case m.Server == "dovecot":
			theirs = m.Peak
		}
	}
	if theirs.LiveHWMKiB > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("Peak memory ratio postcove ÷ dovecot (sums of VmHWM of live processes): %.2f (%.1f MiB ÷ %.1f MiB).",
			float64(ours.LiveHWMKiB)/float64(theirs.LiveHWMKiB), float64(ours.LiveHWMKiB)/1024, float64(theirs.LiveHWMKiB)/1024))
	}
	if d, ok := b.res.ColdSelect["postcove"]; ok {
		verdict := "met"
		if d >= time.Second {
			verdict = "not met"
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("Cold SELECT of %d messages: postcove %s, dovecot %s; the under-a-second target is %s on this run.",
			b.opts.SelectMessages, report.Duration(d), report.Duration(b.res.ColdSelect["dovecot"]), verdict))
	}
}
