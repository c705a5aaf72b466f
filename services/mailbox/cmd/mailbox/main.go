// Command mailbox is postcove's mail store service: LMTP delivery from the
// MTA into Maildir++, and IMAP and POP3 for the users.
//
//	mailbox [-config FILE]              serve (the default)
//	mailbox healthcheck [-config FILE]  exit 0 when the running service is SERVING
//	mailbox version
//
// Every config key can be overridden by an environment variable:
// POSTCOVE_MAILBOX_ plus the key path in upper case, e.g.
// POSTCOVE_MAILBOX_STORE_ROOT for store.root.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mailbox/internal/mailboxd"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mailbox:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	// The subcommands that need the configuration; "version" does not.
	commands := map[string]func(mailboxd.Config) error{
		"serve":       serve,
		"healthcheck": healthcheck,
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	cmd, known := commands[name]
	if !known && name != "version" {
		return fmt.Errorf("unknown command %q (want serve, healthcheck or version)", name)
	}
	flags := flag.NewFlagSet("mailbox "+name, flag.ContinueOnError)
	path := flags.String("config", os.Getenv(mailboxd.EnvPrefix+"_CONFIG"),
		"config file (TOML); environment variables "+mailboxd.EnvPrefix+"_* override it")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flags.Arg(0))
	}
	if name == "version" {
		fmt.Println(version)
		return nil
	}
	cfg := mailboxd.DefaultConfig()
	if err := config.Load(*path, mailboxd.EnvPrefix, &cfg); err != nil {
		return err
	}
	return cmd(cfg)
}

// serve runs the service until SIGINT or SIGTERM, then drains it.
func serve(cfg mailboxd.Config) error {
	log, err := logging.New(os.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return mailboxd.Run(ctx, cfg, log.With("component", "mailbox", "version", version))
}

// healthcheck exits 0 when the running service can take mail, for
// compose's HEALTHCHECK (the runtime image has no curl): its gRPC health
// says SERVING (auth answers, the store is there) and its LMTP listener
// greets with a 220. Under mTLS it presents the service's own certificate,
// which the CA of grpc_tls signed.
func healthcheck(cfg mailboxd.Config) error {
	tlsCfg, err := tlsconf.ClientConfig(cfg.GRPCTLS, "")
	if err != nil {
		return fmt.Errorf("grpc_tls: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	problems := []error{
		grpcx.CheckHealth(ctx, onThisHost(cfg.Listen.GRPC), tlsCfg, ""),
		lmtpGreets(ctx, onThisHost(cfg.Listen.LMTP)),
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	fmt.Println("SERVING")
	return nil
}

// lmtpGreets connects to the LMTP listener and expects a 220 greeting
// (RFC 5321 section 4.2: 421 when the server is shutting down or full).
func lmtpGreets(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	code, msg, err := textproto.NewReader(bufio.NewReader(conn)).ReadResponse(220)
	if err != nil {
		return fmt.Errorf("lmtp greeting %d %q: %w", code, msg, err)
	}
	fmt.Fprint(conn, "QUIT\r\n")
	return nil
}

// onThisHost turns a listen address into one to dial from this host: a
// wildcard host ("", "0.0.0.0", "::") becomes 127.0.0.1.
func onThisHost(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
		return listen
	}
	return net.JoinHostPort("127.0.0.1", port)
}
