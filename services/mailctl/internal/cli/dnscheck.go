package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/mailctl/internal/dnscheck"
)

const dnsCheckUsage = "dns check DOMAIN [--resolver ADDR:PORT] [--ip ADDR] [--keys DIR] [--format table|json]"

// dnsCheckCommands holds "dns check"; "dns records" registers on its own.
func dnsCheckCommands() []command {
	return []command{
		{usage: dnsCheckUsage, help: "check DOMAIN's MX, PTR, SPF, DKIM, DMARC, MTA-STS and TLS-RPT records in DNS; exit 1 when one fails", run: (*app).dnsCheck},
	}
}

func (a *app) dnsCheck(ctx context.Context, args []string) error {
	fs := a.newFlags(dnsCheckUsage)
	resolver := fs.String("resolver", a.env.Getenv("MAILCTL_RESOLVER"), "")
	var ips []netip.Addr
	fs.Func("ip", "", func(s string) error {
		for _, f := range strings.Split(s, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil || ip.Zone() != "" {
				return fmt.Errorf("%q is not an IP address", f)
			}
			ips = append(ips, ip.Unmap())
		}
		return nil
	})
	keysDir := a.keysDirFlag(fs)
	format := fs.String("format", "table", "")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	domain, err := domainArg(pos[0])
	if err != nil {
		return err
	}
	write, ok := map[string]func(*dnscheck.Report) error{
		"table": func(r *dnscheck.Report) error { return r.WriteTable(a.env.Stdout) },
		"json":  func(r *dnscheck.Report) error { return r.WriteJSON(a.env.Stdout) },
	}[*format]
	if !ok {
		return usagef("--format: unknown format %q: use table or json", *format)
	}
	var servers []string
	if *resolver != "" {
		servers = strings.Split(*resolver, ",")
	}
	r, err := dnsclient.New(servers, 0)
	if err != nil {
		if *resolver != "" {
			return usagef("--resolver: %v", err)
		}
		return fmt.Errorf("%w (name a DNS server with --resolver)", err)
	}
	rep := dnscheck.Check(ctx, r, dnscheck.Options{Domain: domain, IPs: ips, KeysDir: *keysDir})
	if err := write(rep); err != nil {
		return err
	}
	if rep.Failed() {
		return fmt.Errorf("%d of %d DNS checks of %s failed", rep.Count(dnscheck.Fail), len(rep.Findings), domain)
	}
	return nil
}
