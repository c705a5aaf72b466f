// Command bench runs postcove's side-by-side benchmarks: each postcove
// service against the Debian package it replaces, on loopback, in the same
// run, reporting calls/s ratios, p50/p99 latency and peak memory.
//
//	bench auth --auth-bin bin/auth [--dovecot /usr/sbin/dovecot] [--mysql-dsn DSN]
//	           [--users 1000] [--conc 1,8,32] [--duration 5s] [--warmup 1s]
//	           [--json FILE] [--keep]
//	bench lmtp --auth-bin bin/auth --mailbox-bin bin/mailbox [--dovecot /usr/sbin/dovecot]
//	           [--users 100] [--sizes 4096,102400] [--conc 1,16] [--duration 5s]
//	           [--warmup 1s] [--json FILE] [--keep]
//	bench imap --auth-bin bin/auth --mailbox-bin bin/mailbox [--dovecot /usr/sbin/dovecot]
//	           [--messages 10000] [--select-messages 100000] [--conc 1,8]
//	           [--duration 5s] [--warmup 1s] [--json FILE] [--keep]
//	bench smtp --auth-bin bin/auth --mailbox-bin bin/mailbox --mta-bin bin/mta
//	           [--dovecot /usr/sbin/dovecot] [--postfix /usr/sbin/postfix]
//	           [--users 100] [--sizes 4096,102400] [--messages 2000,1000] [--conc 1,8,32]
//	           [--warmup-messages 50] [--drain-timeout 2m] [--json FILE] [--keep]
//
// Every command takes --scripts-dir (default "scripts", for running from
// the repository's root): where scripts/dovecot-bench.sh, which writes
// dovecot's configuration, is (and scripts/postfix-bench.sh, postfix's).
//
// The markdown report goes to stdout, progress to stderr. Exit status: 0
// measured, 1 the run failed (a server missing, or a wrong answer: never
// timing), 2 bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/bench/internal/authbench"
	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/imapbench"
	"github.com/postcove/postcove/services/bench/internal/lmtpbench"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/bench/internal/postfix"
	"github.com/postcove/postcove/services/bench/internal/report"
	"github.com/postcove/postcove/services/bench/internal/smtpbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: bench COMMAND [flags]

commands:
  auth   postcove's auth service against dovecot's auth process (passdb/userdb)
  lmtp   postcove's mailbox service (with auth) against dovecot's LMTP server
  imap   postcove's mailbox service (with auth) against dovecot's IMAP server
  smtp   postcove's mta (with mailbox and auth) against postfix delivering into dovecot

Run "bench COMMAND -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "auth":
		return runAuth(ctx, args[1:], stdout, stderr)
	case "lmtp":
		return runLMTP(ctx, args[1:], stdout, stderr)
	case "imap":
		return runIMAP(ctx, args[1:], stdout, stderr)
	case "smtp":
		return runSMTP(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "bench: unknown command %q\n%s", args[0], usage)
	return 2
}

// command holds the flags every command has.
type command struct {
	name       string // "bench imap"
	fs         *flag.FlagSet
	mailbox    bool // --mailbox-bin is required
	authBin    string
	mailboxBin string
	dovecotBin string
	scriptsDir string
	conc       concFlag
	duration   time.Duration
	warmup     time.Duration
	jsonPath   string
	keep       bool
}

// newCommand registers the common flags: dovecotUse says which dovecot
// server is compared, concUse what a concurrency counts, keeps what the
// temporary directory holds. A command that measures counts, not time,
// gives a duration of 0: it has no --duration nor --warmup.
func newCommand(name string, stderr io.Writer, mailbox bool, dovecotUse, concUse string, duration, warmup time.Duration, keeps string) *command {
	c := &command{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), mailbox: mailbox}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.authBin, "auth-bin", "", "postcove's auth binary (make build writes bin/auth); required")
	if mailbox {
		c.fs.StringVar(&c.mailboxBin, "mailbox-bin", "", "postcove's mailbox binary (make build writes bin/mailbox); required")
	}
	c.fs.StringVar(&c.dovecotBin, "dovecot", dovecot.DefaultBin, "dovecot's master binary"+dovecotUse)
	c.fs.StringVar(&c.scriptsDir, "scripts-dir", dovecot.DefaultScriptsDir, "directory of dovecot-bench.sh and postfix-bench.sh, which configure dovecot and postfix (the repository's scripts/)")
	c.fs.Var(&c.conc, "conc", "comma-separated concurrencies"+concUse)
	if duration > 0 {
		c.fs.DurationVar(&c.duration, "duration", duration, "measured time per operation, concurrency and server")
		c.fs.DurationVar(&c.warmup, "warmup", warmup, "unmeasured time before each measurement")
	}
	c.fs.StringVar(&c.jsonPath, "json", "", "also write the results as JSON to this file")
	c.fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory ("+keeps+")")
	return c
}

// servers are the programs of a mailbox benchmark, from the flags.
func (c *command) servers(log io.Writer) postcove.Servers {
	return postcove.Servers{AuthBin: c.authBin, MailboxBin: c.mailboxBin, DovecotBin: c.dovecotBin, ScriptsDir: c.scriptsDir, Keep: c.keep, Log: log}
}

// plan is how each row runs, from the flags: a warmup of 0 is none.
func (c *command) plan() load.Plan {
	return load.Plan{Concurrency: c.conc, Duration: c.duration, Warmup: c.warmup, NoWarmup: c.warmup == 0}
}

// parse parses args; when it returns false, the command exits with code.
func (c *command) parse(args []string, stderr io.Writer) (code int, ok bool) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", c.name, c.fs.Arg(0))
		return 2, false
	}
	switch {
	case c.mailbox && (c.authBin == "" || c.mailboxBin == ""):
		fmt.Fprintf(stderr, "%s: --auth-bin and --mailbox-bin are required (make build writes bin/auth and bin/mailbox)\n", c.name)
		return 2, false
	case c.authBin == "":
		fmt.Fprintf(stderr, "%s: --auth-bin is required (make build writes bin/auth)\n", c.name)
		return 2, false
	}
	return 0, true
}

// finish prints what was measured, even of a failed run, writes the JSON
// when asked, and returns the exit status.
func (c *command) finish(rep *report.Report, err error, stdout, stderr io.Writer) int {
	if rep != nil && len(rep.Tables) > 0 {
		if werr := rep.Markdown(stdout); werr != nil {
			err = errors.Join(err, werr)
		}
		if c.jsonPath != "" {
			err = errors.Join(err, rep.WriteJSON(c.jsonPath))
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, c.name+":", err)
		return 1
	}
	return 0
}

func runAuth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("bench auth", stderr, false, "", " (default 1,8,32)", authbench.DefaultDuration, authbench.DefaultWarmup, "configs, logs, databases")
	var opts authbench.Options
	c.fs.StringVar(&opts.MySQLDSN, "mysql-dsn", "", "also run postcove on a fresh database on this MySQL/MariaDB server (go-sql-driver DSN without a database, like POSTCOVE_TEST_MYSQL_DSN)")
	c.fs.IntVar(&opts.Users, "users", 1000, "number of users (each costs one argon2id hash per server at setup)")
	if code, ok := c.parse(args, stderr); !ok {
		return code
	}
	opts.AuthBin, opts.DovecotBin, opts.ScriptsDir = c.authBin, c.dovecotBin, c.scriptsDir
	opts.Concurrency, opts.Duration, opts.Warmup, opts.Keep = c.conc, c.duration, c.warmup, c.keep
	opts.Log = stderr
	rep, err := authbench.Run(ctx, opts)
	return c.finish(rep, err, stdout, stderr)
}

func runLMTP(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("bench lmtp", stderr, true, " (its LMTP server comes with dovecot-lmtpd)", ", LMTP connections (default 1,16)", lmtpbench.DefaultDuration, lmtpbench.DefaultWarmup, "configs, logs, mail")
	var (
		opts  lmtpbench.Options
		sizes concFlag
	)
	c.fs.IntVar(&opts.Users, "users", lmtpbench.DefaultUsers, "number of users (recipients)")
	c.fs.Var(&sizes, "sizes", "comma-separated message sizes in bytes (default 4096,102400)")
	if code, ok := c.parse(args, stderr); !ok {
		return code
	}
	opts.Servers, opts.Plan = c.servers(stderr), c.plan()
	opts.Sizes = sizes
	res, err := lmtpbench.Run(ctx, opts)
	return c.finish(res.Report, err, stdout, stderr)
}

func runIMAP(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("bench imap", stderr, true, " (its IMAP server comes with dovecot-imapd)", ", IMAP connections (default 1,8)", imapbench.DefaultDuration, imapbench.DefaultWarmup, "configs, logs, mail")
	var opts imapbench.Options
	c.fs.IntVar(&opts.Messages, "messages", imapbench.DefaultMessages, "messages in the mailbox FETCH and SEARCH read")
	c.fs.IntVar(&opts.SelectMessages, "select-messages", imapbench.DefaultSelectMessages, "messages in the mailbox SELECT is measured on")
	if code, ok := c.parse(args, stderr); !ok {
		return code
	}
	opts.Servers, opts.Plan = c.servers(stderr), c.plan()
	res, err := imapbench.Run(ctx, opts)
	return c.finish(res.Report, err, stdout, stderr)
}

func runSMTP(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("bench smtp", stderr, true, " (its LMTP server, which postfix delivers to, comes with dovecot-lmtpd)", ", SMTP connections (default 1,8,32)", 0, 0, "configs, logs, queues, mail")
	var (
		opts            smtpbench.Options
		sizes, messages concFlag
	)
	c.fs.StringVar(&opts.MTABin, "mta-bin", "", "postcove's mta binary (make build writes bin/mta); required")
	c.fs.StringVar(&opts.PostfixBin, "postfix", postfix.DefaultBin, "the postfix command (configured by scripts/postfix-bench.sh; must run as root)")
	c.fs.IntVar(&opts.Users, "users", smtpbench.DefaultUsers, "number of users (recipients)")
	c.fs.Var(&sizes, "sizes", "comma-separated message sizes in bytes (default 4096,102400)")
	c.fs.Var(&messages, "messages", "messages per row: one count per size, or one for all (default 2000,1000)")
	c.fs.IntVar(&opts.WarmupMessages, "warmup-messages", smtpbench.DefaultWarmupMessages, "messages sent and delivered before each row and side is measured; 0: none")
	c.fs.DurationVar(&opts.DrainTimeout, "drain-timeout", smtpbench.DefaultDrainTimeout, "longest wait for a row's messages to reach the Maildirs")
	if code, ok := c.parse(args, stderr); !ok {
		return code
	}
	if opts.MTABin == "" {
		fmt.Fprintln(stderr, "bench smtp: --mta-bin is required (make build writes bin/mta)")
		return 2
	}
	opts.Servers = c.servers(stderr)
	opts.Sizes, opts.Messages, opts.Concurrency = sizes, messages, c.conc
	opts.NoWarmup = opts.WarmupMessages == 0
	res, err := smtpbench.Run(ctx, opts)
	return c.finish(res.Report, err, stdout, stderr)
}

// concFlag is a comma-separated list of positive integers.
type concFlag []int

func (c *concFlag) String() string {
	s := make([]string, len(*c))
	for i, n := range *c {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (c *concFlag) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	*c = out
	return nil
}
