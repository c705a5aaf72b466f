// Command auth is postcove's authentication and user-directory service.
//
//	auth [-config FILE]              serve (the default)
//	auth healthcheck [-config FILE]  exit 0 when the running service is SERVING
//	auth version
//
// Every config key can be overridden by an environment variable:
// POSTCOVE_AUTH_ plus the key path in upper case, e.g.
// POSTCOVE_AUTH_DATABASE_DSN for database.dsn.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/auth/internal/authd"
	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("auth "+cmd, flag.ContinueOnError)
	path := fs.String("config", os.Getenv(authd.EnvPrefix+"_CONFIG"), "config file (TOML); environment variables "+authd.EnvPrefix+"_* override it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cmd == "version" {
		fmt.Println(version)
		return nil
	}
	cfg := authd.DefaultConfig()
	if err := config.Load(*path, authd.EnvPrefix, &cfg); err != nil {
		return err
	}
	switch cmd {
	case "serve":
		log, err := logging.New(os.Stderr, cfg.LogLevel)
		if err != nil {
			return err
		}
		log = log.With("component", "auth", "version", version)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return authd.Run(ctx, cfg, log)
	case "healthcheck":
		return healthcheck(cfg)
	}
	return fmt.Errorf("unknown command %q (want serve, healthcheck or version)", cmd)
}

// healthcheck asks the running service for its health, the way compose's
// HEALTHCHECK does (the runtime image has no curl).
func healthcheck(cfg authd.Config) error {
	tlsCfg, err := tlsconf.ClientConfig(cfg.TLS, "")
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := grpcx.CheckHealth(ctx, dialable(cfg.Listen.GRPC), tlsCfg, ""); err != nil {
		return errors.Join(errors.New("not healthy"), err)
	}
	fmt.Println("SERVING")
	return nil
}

// dialable turns a listen address into one to dial: a wildcard host
// becomes loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
