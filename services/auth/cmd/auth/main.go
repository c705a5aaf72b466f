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
	"os"

	"github.com/postcove/postcove/services/auth/internal/authd"
	"github.com/postcove/postcove/services/internal/servicecmd"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

var command = servicecmd.Service[authd.Config]{
	Name:      "auth",
	EnvPrefix: authd.EnvPrefix,
	Default:   authd.DefaultConfig,
	LogLevel:  func(c authd.Config) string { return c.LogLevel },
	Serve:     authd.Run,
	// Healthy is what gRPC health says: the database answers.
	Healthcheck: func(ctx context.Context, c authd.Config) error {
		return servicecmd.CheckGRPC(ctx, "tls", c.TLS, c.Listen.GRPC)
	},
}

func main() { servicecmd.Main(command, version) }

func run(args []string) error { return command.Run(args, version, os.Stdout) }
