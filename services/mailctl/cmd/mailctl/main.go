// Command mailctl manages a postcove installation: domains, users, aliases
// and logins (auth service), the MTA's queue, DKIM keys and DNS records.
// Run `mailctl help` for the commands.
package main

import (
	"os"

	"github.com/postcove/postcove/services/mailctl/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.OSEnv()))
}
