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
	"context"
	"errors"
	"os"

	"github.com/postcove/postcove/services/internal/servicecmd"
	"github.com/postcove/postcove/services/mta/internal/mtad"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

var command = servicecmd.Service[mtad.Config]{
	Name:      "mta",
	EnvPrefix: mtad.EnvPrefix,
	Default:   mtad.DefaultConfig,
	LogLevel:  func(c mtad.Config) string { return c.LogLevel },
	Serve:     mtad.Run,
	// Healthy means able to take mail: gRPC health says SERVING (auth
	// answers, the queue directory is writable) and port 25 greets.
	Healthcheck: func(ctx context.Context, c mtad.Config) error {
		return errors.Join(
			servicecmd.CheckGRPC(ctx, "grpc_tls", c.GRPCTLS, c.Listen.GRPC),
			servicecmd.Greets(ctx, "smtp", c.Listen.SMTP),
		)
	},
}

func main() { servicecmd.Main(command, version) }

func run(args []string) error { return command.Run(args, version, os.Stdout) }
