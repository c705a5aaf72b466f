package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/postcove/postcove/services/internal/address"
	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/mailctl/internal/dnsgen"
)

const dkimKeygenUsage = "dkim keygen DOMAIN [--selector S] [--type rsa2048|ed25519] [--force] [--keys DIR]"

func dkimCommands() []command {
	return []command{
		{usage: dkimKeygenUsage, help: "create a DKIM signing key in keys/DOMAIN/S.key and print its DNS record", run: (*app).dkimKeygen},
	}
}

// keysDirFlag adds --keys to fs: the DKIM keys directory shared with the
// MTA, from the environment (MAILCTL_KEYS_DIR) or "keys" as in the compose
// layout.
func (a *app) keysDirFlag(fs *flag.FlagSet) *string {
	return fs.String("keys", firstNonEmpty(a.env.Getenv("MAILCTL_KEYS_DIR"), "keys"), "")
}

// domainArg checks the DOMAIN argument of a command and returns its
// canonical form.
func domainArg(s string) (string, error) {
	d, err := address.ParseDomain(s)
	if err != nil {
		return "", usagef("DOMAIN: %v", err)
	}
	return d, nil
}

func (a *app) dkimKeygen(_ context.Context, args []string) error {
	fs := a.newFlags(dkimKeygenUsage)
	selector := fs.String("selector", "", "")
	typeName := fs.String("type", string(dkimkey.RSA2048), "")
	force := fs.Bool("force", false, "")
	keysDir := a.keysDirFlag(fs)
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	domain, err := domainArg(pos[0])
	if err != nil {
		return err
	}
	typ, err := dkimkey.ParseType(*typeName)
	if err != nil {
		return usagef("--type: %v", err)
	}
	now := time.Now()
	sel := *selector
	if sel == "" {
		sel = dkimkey.DefaultSelector(now)
	}
	if sel, err = dkimkey.ParseSelector(sel); err != nil {
		return usagef("--selector: %v", err)
	}

	key, err := dkimkey.Generate(typ)
	if err != nil {
		return err
	}
	path, err := dkimkey.Write(*keysDir, domain, sel, key, *force)
	if errors.Is(err, dkimkey.ErrExists) {
		return fmt.Errorf("%w: to rotate keys, give the new one its own selector (--selector %s), "+
			"or replace this one with --force (mail signed with it then fails verification until the new record is published)",
			err, "s"+now.UTC().Format("20060102"))
	}
	if err != nil {
		return err
	}
	rec, err := dnsgen.DKIM(dkimkey.Key{Domain: domain, Selector: sel, Path: path, Signer: key}, 0)
	if err != nil {
		return err
	}
	a.out("wrote %s (%s, selector %s)", path, typ, sel)
	a.out("publish this record in the zone of %s:", domain)
	a.out("%s", rec.RR())
	a.out("rotation: publish the new selector's record beside the old one, switch signing to the new key once the record resolves, " +
		"keep the old record published about a week, then delete the old key and its record.")
	return nil
}
