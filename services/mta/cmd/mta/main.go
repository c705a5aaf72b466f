// Command mta is postcove's mail transfer agent, the postfix role: SMTP
// from the world (port 25), submission from our users (587 STARTTLS, 465
// TLS, with AUTH), a durable queue, delivery to the mailbox service over
// LMTP and to other domains over SMTP.
//
//	mta [-config FILE]              serve (the default)
//	mta healthcheck [-config FILE]  exit 0 when the running service is SERVING
//	mta version
//
// Every config key can be overridden by an environment variable:
// POSTCOVE_MTA_ plus the key path in upper case, e.g. POSTCOVE_MTA_QUEUE_DIR
// for queue.dir.
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
	"syscall"
	"time"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mta/internal/mtad"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mta:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	name := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	switch name {
	case "serve", "healthcheck", "version":
	default:
		return fmt.Errorf("unknown command %q (want serve, healthcheck or version)", name)
	}
	flags := flag.NewFlagSet("mta "+name, flag.ContinueOnError)
	path := flags.String("config", os.Getenv(mtad.EnvPrefix+"_CONFIG"),
		"config file (TOML); environment variables "+mtad.EnvPrefix+"_* override it")
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
	cfg := mtad.DefaultConfig()
	if err := config.Load(*path, mtad.EnvPrefix, &cfg); err != nil {
		return err
	}
	if name == "healthcheck" {
		return healthcheck(cfg)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return mtad.Run(ctx, cfg, log.With("component", "mta", "version", version))
}

// healthcheck exits 0 when the running MTA can take mail, for compose's
// HEALTHCHECK (the runtime image has no curl): gRPC health says SERVING
// (auth answers, the queue directory is writable) and port 25 greets.
func healthcheck(cfg mtad.Config) error {
	tlsCfg, err := tlsconf.ClientConfig(cfg.GRPCTLS, "")
	if err != nil {
		return fmt.Errorf("grpc_tls: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := errors.Join(
		grpcx.CheckHealth(ctx, dialable(cfg.Listen.GRPC), tlsCfg, ""),
		smtpGreets(ctx, dialable(cfg.Listen.SMTP)),
	); err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	fmt.Println("SERVING")
	return nil
}

// smtpGreets expects the 220 greeting (RFC 5321 section 4.2; 421 when
// the server is full or going away) and says QUIT.
func smtpGreets(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if code, msg, err := textproto.NewReader(bufio.NewReader(c)).ReadResponse(220); err != nil {
		return fmt.Errorf("smtp greeting %d %q: %w", code, msg, err)
	}
	_, err = c.Write([]byte("QUIT\r\n"))
	return err
}

// dialable turns a listen address into one this host can dial: the
// wildcard hosts become 127.0.0.1.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}
