// Package servicecmd is the command line every postcove service shares, so
// that auth, mailbox and mta start, report their health and print their
// version the same way:
//
//	NAME [-config FILE]              serve (the default)
//	NAME healthcheck [-config FILE]  exit 0 when the running service is SERVING
//	NAME version
//
// The config file is TOML; NAME's environment variables (its EnvPrefix
// plus the key path in upper case) override it, and EnvPrefix_CONFIG names
// the file when -config is not given. healthcheck exists for compose's
// HEALTHCHECK: the runtime image has no curl.
//
// It also holds what the services share while they run: binding their
// listeners up front and serving protocol servers until shutdown
// (Listeners, Serve), and, for the services that ask auth (mailbox, mta),
// the [auth] config table, the connection it makes and the health that
// follows auth's (AuthConfig, AuthHealth).
package servicecmd

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// HealthTimeout bounds a healthcheck, well inside compose's own timeout.
const HealthTimeout = 5 * time.Second

// Service is one service's command. C is its Config type.
type Service[C any] struct {
	Name      string // program name, log component and error prefix
	EnvPrefix string // e.g. "POSTCOVE_MAILBOX"
	Default   func() C
	LogLevel  func(C) string
	// Serve runs the service until ctx ends (SIGINT, SIGTERM), then drains.
	Serve func(ctx context.Context, cfg C, log *slog.Logger) error
	// Healthcheck says why the running service is not healthy, or nil.
	Healthcheck func(ctx context.Context, cfg C) error
}

// Main runs the command with the process's arguments and exits 1 on error.
func Main[C any](s Service[C], version string) {
	if err := s.Run(os.Args[1:], version, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", s.Name, err)
		os.Exit(1)
	}
}

// Run parses args and runs the subcommand they name; stdout receives
// what version and healthcheck print.
func (s Service[C]) Run(args []string, version string, stdout io.Writer) error {
	name := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	switch name {
	case "serve", "healthcheck", "version":
	default:
		return fmt.Errorf("unknown command %q (want serve, healthcheck or version)", name)
	}
	flags := flag.NewFlagSet(s.Name+" "+name, flag.ContinueOnError)
	path := flags.String("config", os.Getenv(s.EnvPrefix+"_CONFIG"),
		"config file (TOML); environment variables "+s.EnvPrefix+"_* override it")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flags.Arg(0))
	}
	if name == "version" {
		fmt.Fprintln(stdout, version)
		return nil
	}
	cfg := s.Default()
	if err := config.Load(*path, s.EnvPrefix, &cfg); err != nil {
		return err
	}
	if name == "healthcheck" {
		ctx, cancel := context.WithTimeout(context.Background(), HealthTimeout)
		defer cancel()
		if err := s.Healthcheck(ctx, cfg); err != nil {
			return fmt.Errorf("not healthy: %w", err)
		}
		fmt.Fprintln(stdout, "SERVING")
		return nil
	}
	log, err := logging.New(os.Stderr, s.LogLevel(cfg))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return s.Serve(ctx, cfg, log.With("component", s.Name, "version", version))
}

// CheckGRPC asks the service's own gRPC listener for its health. Under
// mTLS it presents the service's own certificate (files), which the CA of
// the listener signed; key names the config table in errors.
func CheckGRPC(ctx context.Context, key string, files tlsconf.Files, listen string) error {
	tlsCfg, err := tlsconf.ClientConfig(files, "")
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return grpcx.CheckHealth(ctx, Dialable(listen), tlsCfg, "")
}

// Greets connects to an SMTP or LMTP listener, expects the 220 greeting
// (RFC 5321 section 4.2: 421 when the server is full or going away) and
// says QUIT. proto names the listener in errors.
func Greets(ctx context.Context, proto, listen string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", Dialable(listen))
	if err != nil {
		return fmt.Errorf("%s: %w", proto, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	code, msg, err := textproto.NewReader(bufio.NewReader(conn)).ReadResponse(220)
	if err != nil {
		return fmt.Errorf("%s greeting %d %q: %w", proto, code, msg, err)
	}
	_, err = io.WriteString(conn, "QUIT\r\n")
	return err
}

// Dialable turns a listen address into one to dial from this host: a
// wildcard host ("", "0.0.0.0", "::") becomes 127.0.0.1.
func Dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
		return listen
	}
	return net.JoinHostPort("127.0.0.1", port)
}
