// Package authbench measures postcove's auth service against the dovecot
// auth process it replaces (passdb and userdb), on loopback, in one run:
// the same users with the same argon2id hashes, the same request mix at
// the same concurrencies, and the peak memory of both process trees.
//
// The two operations compared are the ones every mail session pays for:
//
//   - a login: postcove's Authenticate over gRPC, dovecot's AUTH PLAIN on
//     its auth-client socket (what imap-login and postfix's SMTP AUTH
//     send);
//   - a recipient lookup: postcove's ResolveRecipient, dovecot's USER on
//     its auth-userdb socket (what dovecot's LMTP server sends for each
//     RCPT TO).
//
// Dovecot reads the users from a passwd-file, its fastest database: held
// in memory, no worker processes, and no auth cache (dovecot does not
// cache passwd-file lookups whatever auth_cache_size says: with
// auth_debug = yes every login logs "Performing passdb lookup"). Postcove
// runs on SQLite and, when given a server, MariaDB; recipient lookups are
// measured with its cache off and with its default 5-second cache.
// Benchmarks report; they never fail on timing, only when a server gives a
// wrong answer.
package authbench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/load"
	postcovebin "github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/bench/internal/report"
)

// Defaults of Options.
const (
	DefaultUsers    = 1000
	DefaultDuration = 5 * time.Second
	DefaultWarmup   = time.Second
)

// Options configure a run.
type Options struct {
	// AuthBin is postcove's auth binary (make build writes bin/auth).
	// Required.
	AuthBin string
	// DovecotBin is dovecot's master binary. Default dovecot.DefaultBin.
	DovecotBin string
	// ScriptsDir holds scripts/dovecot-bench.sh, which configures
	// dovecot. Default dovecot.DefaultScriptsDir.
	ScriptsDir string
	// MySQLDSN names a MySQL/MariaDB server (go-sql-driver syntax, no
	// database) whose account may create databases; postcove is then also
	// measured on a fresh database there, dropped at the end. Default "":
	// SQLite only.
	MySQLDSN string
	// Users is the number of users. Default 1000.
	Users int
	// Concurrency lists the concurrencies to measure. Default 1, 8, 32.
	Concurrency []int
	// Duration is how long each operation is measured at each
	// concurrency, on each server. Default 5 s.
	Duration time.Duration
	// Warmup runs before each measurement, unmeasured: it fills postcove's
	// recipient cache and the servers' own caches. Default 1 s.
	Warmup time.Duration
	// CreateConcurrency is the number of CreateUser calls in flight while
	// setting up. Default 8.
	CreateConcurrency int
	// TempDir is where the run's directory is made. Default os.TempDir().
	TempDir string
	// Keep keeps the run's directory (configs, logs, databases) even on
	// success; it is always kept on failure.
	Keep bool
	// Log receives progress lines. Default: discarded.
	Log io.Writer
}

func (o *Options) defaults() error {
	if o.AuthBin == "" {
		return errors.New("no auth binary: pass --auth-bin (make build writes bin/auth)")
	}
	if o.DovecotBin == "" {
		o.DovecotBin = dovecot.DefaultBin
	}
	if o.Users == 0 {
		o.Users = DefaultUsers
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 8, 32}
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.CreateConcurrency == 0 {
		o.CreateConcurrency = 8
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Users < 1 {
		return fmt.Errorf("users: %d, want at least 1", o.Users)
	}
	return load.CheckPlan(o.Concurrency, 1024, o.Duration, o.Warmup)
}

// postcoveVariant is one way postcove runs in the benchmark.
type postcoveVariant struct {
	name string
	// cacheTTL is resolve.cache_ttl. Authenticate has no cache.
	cacheTTL time.Duration
	// authenticate says whether logins are measured on this variant: they
	// do not depend on the cache, so only the default variant runs them.
	authenticate bool
}

// postcoveVariants are the configurations measured, per database:
// postcove's defaults (ResolveRecipient answers cached 5 s), and the
// cache off, every lookup going to the database as every dovecot USER
// lookup goes to its passwd-file.
func postcoveVariants() []postcoveVariant {
	return []postcoveVariant{
		{name: "cache 5s", cacheTTL: 5 * time.Second, authenticate: true},
		{name: "cache off", cacheTTL: 0},
	}
}

// dovecotAuthConfig is what the auth benchmark adds to the configuration
// scripts/dovecot-bench.sh writes (the same passwd-file for passdb and
// userdb; mechanisms PLAIN and LOGIN, of which PLAIN is measured).
// Everything else is Debian's default: auth_cache_size = 0 (spelled out,
// though passwd-file lookups are never cached), auth_verbose = no (no log
// line per login), auth_username_format = %Lu. The auth process verifies
// every password itself, and there is one ("process_limit=1, because there
// can be only one auth master process", Services in dovecot's wiki);
// auth-workers serve blocking databases (SQL, LDAP, PAM) and, with
// auth_cache_verify_password_with_worker, cached verifications only.
const dovecotAuthConfig = "auth_cache_size = 0\n"

// memorySampleInterval is how often the server trees' memory is read:
// often enough to see a child process that lives for a second.
const memorySampleInterval = 100 * time.Millisecond

// callTimeout bounds one call, so a stuck server ends the run.
const callTimeout = 30 * time.Second

// Run sets both servers up, measures them and returns the report. The
// error is non-nil when the run could not be done or a server answered
// wrongly; the report is then partial, or nil.
func Run(ctx context.Context, opts Options) (rep *report.Report, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	authBin, err := checkBinaries(opts.AuthBin, opts.DovecotBin)
	if err != nil {
		return nil, err
	}
	root, err := dovecot.NewWorkDir(opts.TempDir, "postcove-bench-auth-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if ferr := dovecot.FinishWorkDir(root, err != nil || opts.Keep, opts.Log, "configs, logs, databases"); err == nil {
			err = ferr
		}
	}()

	b := &bench{opts: opts, authBin: authBin, root: root}
	b.rep = &report.Report{Benchmark: "auth", Ours: "postcove", Theirs: "dovecot", Started: time.Now()}
	if err := b.prepare(ctx); err != nil {
		return b.rep, errors.Join(err, b.dropDatabases())
	}
	runErr := b.measure(ctx)
	return b.rep, errors.Join(runErr, b.dropDatabases())
}

// checkBinaries makes sure both servers exist before anything is set up,
// with messages that say how to get them.
func checkBinaries(authBin, dovecotBin string) (string, error) {
	abs, err := filepath.Abs(authBin)
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath(abs); err != nil {
		return "", fmt.Errorf("postcove auth binary %s: %w (run make build)", authBin, err)
	}
	if _, err := exec.LookPath(dovecotBin); err != nil {
		return "", fmt.Errorf("dovecot not installed (%s): apt-get install dovecot-core", dovecotBin)
	}
	return abs, nil
}

// bench is the state of one run.
type bench struct {
	opts     Options
	authBin  string
	root     string
	rep      *report.Report
	users    *userSet
	passwd   string    // dovecot's passwd-file
	backends []backend // postcove's databases, users created
	servers  int       // servers started so far, for unique directory names
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.opts.Log, format+"\n", args...)
}

// step times one preparation step for the report.
func (b *bench) step(name string, f func() error) error {
	return b.rep.Step(b.opts.Log, name, f)
}

// prepare makes the users, dovecot's passwd-file and postcove's databases.
func (b *bench) prepare(ctx context.Context) error {
	var err error
	if b.users, err = newUserSet(b.opts.Users); err != nil {
		return err
	}
	b.passwd = filepath.Join(b.root, "users.passwd")
	if err := b.step(fmt.Sprintf("hash %d passwords for dovecot's passwd-file", b.opts.Users), func() error {
		return b.users.writePasswdFile(ctx, b.passwd)
	}); err != nil {
		return err
	}

	b.backends = append(b.backends, sqliteBackend(b.root))
	if b.opts.MySQLDSN != "" {
		mb, err := mysqlBackend(ctx, b.opts.MySQLDSN)
		if err != nil {
			return err
		}
		b.backends = append(b.backends, mb)
	}
	for _, be := range b.backends {
		// A postcove of its own for the setup, so that the memory the
		// CreateUser hashing took does not count as the benchmark's.
		name := fmt.Sprintf("create %d users in postcove (%s) over %d calls", b.opts.Users, be.name, b.opts.CreateConcurrency)
		if err := b.step(name, func() error {
			pc, err := b.startPostcove(ctx, be, 5*time.Second)
			if err != nil {
				return err
			}
			return errors.Join(b.users.createInPostcove(ctx, pc, b.opts.CreateConcurrency), pc.stop())
		}); err != nil {
			return err
		}
	}
	b.describe(ctx)
	return nil
}

func (b *bench) startPostcove(ctx context.Context, be backend, ttl time.Duration) (*postcove, error) {
	b.servers++
	return startPostcove(ctx, postcoveConfig{
		bin: b.authBin, backend: be, cacheTTL: ttl,
		logPath: filepath.Join(b.root, fmt.Sprintf("postcove-%d-%s.log", b.servers, be.name)),
	})
}

func (b *bench) startDovecot(ctx context.Context) (*dovecot.Server, error) {
	b.servers++
	return dovecot.Start(ctx, dovecot.Options{
		Bin:        b.opts.DovecotBin,
		ScriptsDir: b.opts.ScriptsDir,
		Dir:        filepath.Join(b.root, fmt.Sprintf("dovecot-%d", b.servers)),
		Passwd:     b.passwd,
		Config:     dovecotAuthConfig,
		Sockets:    []string{"auth-client", "auth-userdb"},
	})
}

func (b *bench) dropDatabases() error {
	var errs []error
	for _, be := range b.backends {
		if be.drop != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			errs = append(errs, be.drop(ctx))
			cancel()
		}
	}
	return errors.Join(errs...)
}

// serverUnderTest is a started server and the watcher of its memory.
type serverUnderTest struct {
	name, config string
	watcher      *load.Watcher
	stop         func() error
}

// postcoveUnderTest is one postcove variant on one database.
type postcoveUnderTest struct {
	backend int // index in b.backends and in the tables
	variant postcoveVariant
	pc      *postcove
}

// measure starts every server, then runs every operation at every
// concurrency: dovecot first, then each postcove back to back, so that
// they see the same machine. The servers not under load meanwhile sit
// idle. Dovecot is measured once per operation and concurrency and its
// result is the counterpart of every postcove variant: it has no cache to
// switch.
func (b *bench) measure(ctx context.Context) (err error) {
	tables := make([]report.Table, len(b.backends))
	for i, be := range b.backends {
		tables[i].Title = fmt.Sprintf("postcove (%s) vs dovecot (passwd-file)", be.name)
	}
	defer func() { b.rep.Tables = tables }()

	var running []serverUnderTest
	stopAll := func() error {
		var errs []error
		for _, r := range running {
			r.watcher.Sample()
			peak, err := r.watcher.Stop()
			if err == nil {
				b.rep.Memory = append(b.rep.Memory, report.Memory{Server: r.name, Config: r.config, Peak: peak})
			}
			errs = append(errs, err, r.stop())
		}
		running = nil
		return errors.Join(errs...)
	}
	defer func() { err = errors.Join(err, stopAll()) }()
	watch := func(pid int) *load.Watcher { return load.Watch(load.DefaultProcRoot, pid, memorySampleInterval) }

	dc, err := b.startDovecot(ctx)
	if err != nil {
		return err
	}
	running = append(running, serverUnderTest{"dovecot", "passwd-file", watch(dc.Pid()), dc.Stop})
	var pcs []postcoveUnderTest
	for i, be := range b.backends {
		for _, v := range postcoveVariants() {
			pc, err := b.startPostcove(ctx, be, v.cacheTTL)
			if err != nil {
				return err
			}
			pcs = append(pcs, postcoveUnderTest{backend: i, variant: v, pc: pc})
			running = append(running, serverUnderTest{"postcove (" + be.name + ")", v.name, watch(pc.proc.Pid()), pc.stop})
		}
	}

	var failures []error
	check := func(who, label string, conc int, res load.Result) {
		if res.Errors > 0 {
			failures = append(failures, fmt.Errorf("%s %s at concurrency %d: %d errors, first: %w", who, label, conc, res.Errors, res.FirstError))
		}
	}
	for _, o := range []op{opAuthenticate, opResolve} {
		for _, conc := range b.opts.Concurrency {
			wl := workload{op: o, users: b.users, seed: uint64(conc)<<8 | uint64(o)}
			theirs, err := b.runDovecot(ctx, dc, wl, conc, o.String())
			if err != nil {
				return err
			}
			check("dovecot", o.String(), conc, theirs)
			for _, p := range pcs {
				if o == opAuthenticate && !p.variant.authenticate {
					continue
				}
				label := o.String()
				if o == opResolve {
					label += ", " + p.variant.name
				}
				who := "postcove (" + b.backends[p.backend].name + ")"
				ours, err := b.run(ctx, who, label, conc, postcoveCall(p.pc, wl, conc))
				if err != nil {
					return err
				}
				check(who, label, conc, ours)
				t := &tables[p.backend]
				t.Rows = append(t.Rows, report.Row{Op: label, Conc: conc, Ours: ours, Theirs: theirs})
			}
		}
	}
	if err := stopAll(); err != nil {
		return err
	}
	if len(failures) > 0 {
		return fmt.Errorf("wrong answers during the benchmark: %w", errors.Join(failures...))
	}
	return nil
}

func (b *bench) runDovecot(ctx context.Context, dc *dovecot.Server, wl workload, conc int, label string) (load.Result, error) {
	call, closeConns, err := dovecotCall(ctx, dc, wl, conc)
	if err != nil {
		return load.Result{}, fmt.Errorf("dovecot: %w\n%s", err, dc.LogTail())
	}
	res, err := b.run(ctx, "dovecot", label, conc, call)
	return res, errors.Join(err, closeConns())
}

func (b *bench) run(ctx context.Context, server, label string, conc int, call load.Call) (load.Result, error) {
	res, err := load.Run(ctx, load.Options{Concurrency: conc, Duration: b.opts.Duration, Warmup: b.opts.Warmup, CallTimeout: callTimeout}, call)
	if err != nil {
		return res, err
	}
	b.logf("%-18s %-28s conc %3d: %9.1f calls/s  p50 %-8s p99 %-8s errors %d",
		server, label, conc, res.PerSecond, report.Duration(res.P50), report.Duration(res.P99), res.Errors)
	return res, nil
}

// describe fills the report's environment and notes.
func (b *bench) describe(ctx context.Context) {
	env := []report.KV{
		{Name: "machine", Value: report.Machine()},
		{Name: "dovecot", Value: report.CommandOutput(ctx, b.opts.DovecotBin, "--version")},
		{Name: "postcove auth", Value: b.authBin + " (version " + report.CommandOutput(ctx, b.authBin, "version") + ")"},
		{Name: "bench", Value: runtime.Version()},
	}
	if b.opts.MySQLDSN != "" {
		env = append(env, report.KV{Name: "MariaDB/MySQL", Value: serverVersion(ctx, b.opts.MySQLDSN)})
	}
	env = append(env, report.KV{Name: "load", Value: fmt.Sprintf("%d users in one domain; concurrency %s; %v measured per row and server after %v warmup",
		b.opts.Users, report.JoinInts(b.opts.Concurrency), b.opts.Duration, b.opts.Warmup)})
	b.rep.Environment = env
	b.rep.Notes = []string{
		"ratio = postcove calls/s ÷ dovecot calls/s: above 1, postcove is faster.",
		"Closed loop: each worker has one call in flight. Postcove: one gRPC connection shared by the workers (HTTP/2 streams, as the mail services will call it). Dovecot: one unix-socket connection per worker (auth-client for logins, auth-userdb for lookups).",
		"Same users, same passwords, same argon2id parameters on both sides (m=19456 KiB, t=2, p=1: postcove's defaults, written for dovecot in its {ARGON2ID} format): dovecot verifies with libsodium, postcove with " + postcovebin.Argon2(filepath.Join(b.root, "postcove-1-"+b.backends[0].name+".log")) + " (what its log says: libsodium when built with it, see README). Authenticate / AUTH PLAIN: correct password, uniformly random user, service imap, remote IP 127.0.0.1. ResolveRecipient / USER: uniformly random user, 10% addresses in the domain that nobody has. Both servers get the same request sequence, and every answer is checked.",
		"Dovecot: passwd-file passdb and userdb (held in memory), one auth process doing every lookup and every hash verification (dovecot allows one auth process; auth-workers serve only blocking databases and cached verifications), auth_cache_size=0 (its default; dovecot does not cache passwd-file lookups anyway, so it has no cache to switch and is measured once per row pair), auth_verbose=no, the rest Debian's defaults.",
		"Postcove: \"cache 5s\" is its default configuration (ResolveRecipient answers cached 5 s, dropped on admin changes; Authenticate is never cached, so it is measured on this variant only); \"cache off\" sets resolve.cache_ttl=0. Lockout off (thresholds 0), max_concurrent_logins default (one per CPU), one JSON log line per login to a file (its default info level).",
		fmt.Sprintf("Peak RSS: the sum of VmHWM over the server's process tree (the pid and its descendants by ppid in /proc), sampled every %v so processes that exit are counted: a sum of per-process peaks, an upper bound. \"max sampled RSS\" is the largest sum of VmRSS seen at one time, a lower bound. Each server runs for the whole measurement; the users were created by another postcove process, so CreateUser's hashing is not counted. A MariaDB server is not counted (it is not ours); SQLite runs inside postcove.", memorySampleInterval),
	}
}

func serverVersion(ctx context.Context, dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "unknown"
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return "unknown"
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v
}
