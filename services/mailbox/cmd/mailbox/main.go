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
	"context"
	"errors"
	"os"

	"github.com/postcove/postcove/services/internal/servicecmd"
	"github.com/postcove/postcove/services/mailbox/internal/mailboxd"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

var command = servicecmd.Service[mailboxd.Config]{
	Name:      "mailbox",
	EnvPrefix: mailboxd.EnvPrefix,
	Default:   mailboxd.DefaultConfig,
	LogLevel:  func(c mailboxd.Config) string { return c.LogLevel },
	Serve:     mailboxd.Run,
	// Healthy means able to take mail: gRPC health says SERVING (auth
	// answers, the store is there) and LMTP greets with a 220.
	Healthcheck: func(ctx context.Context, c mailboxd.Config) error {
		return errors.Join(
			servicecmd.CheckGRPC(ctx, "grpc_tls", c.GRPCTLS, c.Listen.GRPC),
			servicecmd.Greets(ctx, "lmtp", c.Listen.LMTP),
		)
	},
}

func main() { servicecmd.Main(command, version) }

func run(args []string) error { return command.Run(args, version, os.Stdout) }
