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

	"github.com/postcove/postcove/services/bench/internal/authbench"
	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/lmtpbench"
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
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "bench: unknown command %q\n%s", args[0], usage)
	return 2
}

func runAuth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench auth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts     authbench.Options
		conc     concFlag
		jsonPath string
	)
	fs.StringVar(&opts.AuthBin, "auth-bin", "", "postcove's auth binary (make build writes bin/auth); required")
	fs.StringVar(&opts.DovecotBin, "dovecot", dovecot.DefaultBin, "dovecot's master binary")
	fs.StringVar(&opts.MySQLDSN, "mysql-dsn", "", "also run postcove on a fresh database on this MySQL/MariaDB server (go-sql-driver DSN without a database, like POSTCOVE_TEST_MYSQL_DSN)")
	fs.IntVar(&opts.Users, "users", 1000, "number of users (each costs one argon2id hash per server at setup)")
	fs.Var(&conc, "conc", "comma-separated concurrencies (default 1,8,32)")
	fs.DurationVar(&opts.Duration, "duration", authbench.DefaultDuration, "measured time per operation, concurrency and server")
	fs.DurationVar(&opts.Warmup, "warmup", authbench.DefaultWarmup, "unmeasured time before each measurement")
	fs.StringVar(&jsonPath, "json", "", "also write the results as JSON to this file")
	fs.BoolVar(&opts.Keep, "keep", false, "keep the temporary directory (configs, logs, databases)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench auth: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if opts.AuthBin == "" {
		fmt.Fprintln(stderr, "bench auth: --auth-bin is required (make build writes bin/auth)")
		return 2
	}
	opts.Concurrency = conc
	opts.Log = stderr

	rep, err := authbench.Run(ctx, opts)
	if rep != nil && len(rep.Tables) > 0 {
		if werr := rep.Markdown(stdout); werr != nil {
			err = errors.Join(err, werr)
		}
		if jsonPath != "" {
			err = errors.Join(err, rep.WriteJSON(jsonPath))
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench auth:", err)
		return 1
	}
	return 0
}

func runLMTP(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench lmtp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts     lmtpbench.Options
		conc     concFlag
		sizes    concFlag
		jsonPath string
	)
	fs.StringVar(&opts.AuthBin, "auth-bin", "", "postcove's auth binary (make build writes bin/auth); required")
	fs.StringVar(&opts.MailboxBin, "mailbox-bin", "", "postcove's mailbox binary (make build writes bin/mailbox); required")
	fs.StringVar(&opts.DovecotBin, "dovecot", dovecot.DefaultBin, "dovecot's master binary (its LMTP server comes with dovecot-lmtpd)")
	fs.IntVar(&opts.Users, "users", lmtpbench.DefaultUsers, "number of users (recipients)")
	fs.Var(&conc, "conc", "comma-separated concurrencies, LMTP connections (default 1,16)")
	fs.Var(&sizes, "sizes", "comma-separated message sizes in bytes (default 4096,102400)")
	fs.DurationVar(&opts.Duration, "duration", lmtpbench.DefaultDuration, "measured time per size, concurrency and server")
	fs.DurationVar(&opts.Warmup, "warmup", lmtpbench.DefaultWarmup, "unmeasured time before each measurement (0: none)")
	fs.StringVar(&jsonPath, "json", "", "also write the results as JSON to this file")
	fs.BoolVar(&opts.Keep, "keep", false, "keep the temporary directory (configs, logs, mail)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench lmtp: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if opts.AuthBin == "" || opts.MailboxBin == "" {
		fmt.Fprintln(stderr, "bench lmtp: --auth-bin and --mailbox-bin are required (make build writes bin/auth and bin/mailbox)")
		return 2
	}
	opts.Concurrency, opts.Sizes = conc, sizes
	opts.NoWarmup = opts.Warmup == 0
	opts.Log = stderr

	res, err := lmtpbench.Run(ctx, opts)
	if res != nil && len(res.Report.Tables) > 0 {
		if werr := res.Report.Markdown(stdout); werr != nil {
			err = errors.Join(err, werr)
		}
		if jsonPath != "" {
			err = errors.Join(err, res.Report.WriteJSON(jsonPath))
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench lmtp:", err)
		return 1
	}
	return 0
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
