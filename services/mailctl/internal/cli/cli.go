// Package cli is mailctl, the operator's command line: the job postconf,
// postqueue and doveadm do for postfix and dovecot, over gRPC to the
// postcove services. The command contract is in DESIGN.md ("mailctl");
// scripts rely on it, so changes to names, arguments and exit codes are
// breaking changes.
//
// Exit codes: 0 success, 1 the operation failed, 2 the command line is
// wrong.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// Default addresses: the local ports of `make run`.
const (
	DefaultAuthAddr = "127.0.0.1:9100"
	DefaultMTAAddr  = "127.0.0.1:9101"
)

// Env is what mailctl takes from its surroundings, so that tests can run it
// in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// IsTerminal reports whether Stdin is an interactive terminal, and
	// ReadPassword reads one line from it without echo.
	IsTerminal   func() bool
	ReadPassword func() (string, error)
}

// usageError is a wrong command line: exit code 2 and the usage hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// app is one mailctl invocation.
type app struct {
	env       Env
	auth, mta peer
	tls       tlsconf.Files
	timeout   time.Duration
}

// peer is a postcove service mailctl talks to, with what error messages
// tell the operator about it: its name and how to point mailctl elsewhere.
type peer struct {
	name string           // "the auth service"
	flag string           // "--auth"
	env  string           // "MAILCTL_AUTH_ADDR"
	addr string           // host:port, from the flag or the environment
	conn *grpc.ClientConn // dialled on first use, closed by app.close
}

// command is one leaf of the command tree.
type command struct {
	usage string // after "mailctl "
	help  string
	run   func(a *app, ctx context.Context, args []string) error
}

// commands maps "group verb" to its command.
func commands() map[string]command {
	cs := map[string]command{}
	for _, group := range [][]command{domainCommands(), userCommands(), aliasCommands(), authCommands(), queueCommands(), dkimCommands(), dnsRecordsCommands(), dnsCheckCommands()} {
		for _, c := range group {
			f := strings.Fields(c.usage)
			cs[f[0]+" "+f[1]] = c
		}
	}
	return cs
}

// Main runs mailctl with args (without the program name) and returns the
// exit code.
func Main(args []string, env Env) int {
	err := run(args, env)
	if err == nil {
		return 0
	}
	fmt.Fprintln(env.Stderr, "mailctl:", err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(env.Stderr, "run 'mailctl help' for the list of commands")
		}
		return 2
	}
	return 1
}

func run(args []string, env Env) error {
	a := &app{
		env:     env,
		timeout: 30 * time.Second,
		auth:    peer{name: "the auth service", flag: "--auth", env: "MAILCTL_AUTH_ADDR"},
		mta:     peer{name: "the MTA", flag: "--mta", env: "MAILCTL_MTA_ADDR"},
	}
	fs := flag.NewFlagSet("mailctl", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.StringVar(&a.auth.addr, "auth", firstNonEmpty(env.Getenv(a.auth.env), DefaultAuthAddr), "auth service gRPC address (env MAILCTL_AUTH_ADDR)")
	fs.StringVar(&a.mta.addr, "mta", firstNonEmpty(env.Getenv(a.mta.env), DefaultMTAAddr), "mta admin gRPC address (env MAILCTL_MTA_ADDR)")
	fs.StringVar(&a.tls.CA, "tls-ca", env.Getenv("MAILCTL_TLS_CA"), "CA certificate of the services (enables TLS)")
	fs.StringVar(&a.tls.Cert, "tls-cert", env.Getenv("MAILCTL_TLS_CERT"), "client certificate for mTLS")
	fs.StringVar(&a.tls.Key, "tls-key", env.Getenv("MAILCTL_TLS_KEY"), "client key for mTLS")
	fs.DurationVar(&a.timeout, "timeout", a.timeout, "how long to wait for an answer")
	fs.Usage = func() { printHelp(env.Stderr, fs) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		printHelp(env.Stdout, fs)
		return nil
	}
	if len(rest) < 2 {
		return usagef("%q needs a subcommand", rest[0])
	}
	c, ok := commands()[rest[0]+" "+rest[1]]
	if !ok {
		return usagef("unknown command %q", rest[0]+" "+rest[1])
	}
	defer a.close()
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	return c.run(a, ctx, rest[2:])
}

func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: mailctl [flags] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	cs := commands()
	for _, group := range []string{"domain", "user", "alias", "auth", "lockout", "queue", "dkim", "dns"} {
		for _, key := range sortedKeys(cs) {
			if strings.HasPrefix(key, group+" ") {
				fmt.Fprintf(w, "  mailctl %s\n      %s\n", cs[key].usage, cs[key].help)
			}
		}
	}
	fmt.Fprintln(w, "\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// authConn dials the auth service once per invocation.
func (a *app) authConn() (*grpc.ClientConn, error) { return a.connect(&a.auth) }

// mtaConn dials the MTA's admin API once per invocation.
func (a *app) mtaConn() (*grpc.ClientConn, error) { return a.connect(&a.mta) }

// connect dials p once per invocation, lazily: the first call fails with
// a clear message if nothing listens. The TLS flags apply to every peer
// (one CA and one client certificate for the installation).
func (a *app) connect(p *peer) (*grpc.ClientConn, error) {
	if p.conn != nil {
		return p.conn, nil
	}
	tlsCfg, err := tlsconf.ClientConfig(a.tls, "")
	if err != nil {
		return nil, fmt.Errorf("tls flags: %w", err)
	}
	conn, err := grpcx.Dial(p.addr, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("%s address %q: %w", strings.TrimPrefix(p.flag, "--"), p.addr, err)
	}
	p.conn = conn
	return conn, nil
}

func (a *app) close() {
	for _, p := range []*peer{&a.auth, &a.mta} {
		if p.conn != nil {
			p.conn.Close()
		}
	}
}

// out writes a line to stdout.
func (a *app) out(format string, args ...any) {
	fmt.Fprintf(a.env.Stdout, format+"\n", args...)
}

// parseArgs parses flags interleaved with positional arguments, so that
// both "user add a@b --quota 1G" and "user add --quota 1G a@b" work, and
// checks the number of positional arguments.
func parseArgs(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) < min || len(pos) > max {
		return nil, usagef("usage: mailctl %s", fs.Name())
	}
	return pos, nil
}

// newFlags returns a flag set for a command whose usage line is usage.
func (a *app) newFlags(usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(usage, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// OSEnv is the Env of a real process.
func OSEnv() Env {
	return Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		IsTerminal: stdinIsTerminal, ReadPassword: readPasswordNoEcho,
	}
}
