package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postcove/postcove/services/internal/address"
	"github.com/postcove/postcove/services/mailctl/internal/dnsgen"
)

const dnsRecordsUsage = "dns records DOMAIN --ip ADDR [--ip6 ADDR] [--hostname H] [--dmarc-policy none|quarantine|reject] " +
	"[--rua mailto:ADDR[,...]] [--mta-sts-mode testing|enforce|none] [--keys DIR] [--format zone|json|table]"

// dnsRecordsCommands holds "dns records"; "dns check" registers on its own.
func dnsRecordsCommands() []command {
	return []command{
		{usage: dnsRecordsUsage, help: "print the DNS records to publish for DOMAIN (A, MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV, PTR advice)", run: (*app).dnsRecords},
	}
}

func (a *app) dnsRecords(_ context.Context, args []string) error {
	fs := a.newFlags(dnsRecordsUsage)
	ip4 := fs.String("ip", "", "")
	ip6 := fs.String("ip6", "", "")
	hostname := fs.String("hostname", "", "")
	dmarcPolicy := fs.String("dmarc-policy", string(dnsgen.DMARCQuarantine), "")
	rua := fs.String("rua", "", "")
	mtaSTSMode := fs.String("mta-sts-mode", string(dnsgen.MTASTSTesting), "")
	keysDir := a.keysDirFlag(fs)
	format := fs.String("format", "zone", "")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	o := dnsgen.Options{KeysDir: *keysDir, Now: time.Now()}
	if o.Domain, err = domainArg(pos[0]); err != nil {
		return err
	}
	if *ip4 == "" && *ip6 == "" {
		return usagef("--ip is required: the public IPv4 address of the mail host (or --ip6 alone for an IPv6-only host)")
	}
	if o.IPv4, err = parseIP("--ip", *ip4, netip.Addr.Is4, "IPv4"); err != nil {
		return err
	}
	if o.IPv6, err = parseIP("--ip6", *ip6, func(ip netip.Addr) bool { return ip.Is6() && !ip.Is4In6() }, "IPv6"); err != nil {
		return err
	}
	if *hostname != "" {
		if o.Hostname, err = address.ParseDomain(*hostname); err != nil {
			return usagef("--hostname: %v", err)
		}
	}
	if o.DMARCPolicy, err = dnsgen.ParseDMARCPolicy(*dmarcPolicy); err != nil {
		return usagef("--dmarc-policy: %v", err)
	}
	if *rua != "" {
		if o.RUA, err = dnsgen.ParseRUA(*rua); err != nil {
			return usagef("--rua: %v", err)
		}
	}
	if o.MTASTSMode, err = dnsgen.ParseMTASTSMode(*mtaSTSMode); err != nil {
		return usagef("--mta-sts-mode: %v", err)
	}
	write, ok := map[string]func(io.Writer, dnsgen.Plan) error{"zone": writeZone, "json": writeJSON, "table": writeTable}[*format]
	if !ok {
		return usagef("--format: unknown format %q: use zone, json or table", *format)
	}
	plan, err := dnsgen.Build(o)
	if err != nil {
		return err
	}
	return write(a.env.Stdout, plan)
}

// parseIP reads the address given to flagName ("" for none), which must be
// of the family that is tells.
func parseIP(flagName, s string, is func(netip.Addr) bool, family string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || !is(ip) || ip.Zone() != "" {
		return netip.Addr{}, usagef("%s: %q is not an %s address", flagName, s, family)
	}
	return ip, nil
}

// writeZone prints the plan as BIND zone-file text, each record under a
// comment saying what it is for; what is not part of the zone (PTR, the
// MTA-STS policy file, notes) is commented out.
func writeZone(w io.Writer, p dnsgen.Plan) error {
	var b strings.Builder
	fmt.Fprintf(&b, "; DNS records for %s (mailctl dns records).\n", p.Domain)
	fmt.Fprintf(&b, "; Publish them in the zone of %s at your DNS provider. Names end in a dot:\n", p.Domain)
	fmt.Fprintf(&b, "; they are complete, not relative to the zone.\n")
	provider := false
	for _, r := range p.Records {
		prefix := ""
		if r.Where == dnsgen.WhereProvider {
			if !provider {
				fmt.Fprintf(&b, "\n; ---- Reverse DNS: set at your hosting provider, not in the zone ----\n")
				provider = true
			}
			prefix = "; "
		}
		fmt.Fprintf(&b, "\n; %s\n%s%s\n", r.Note, prefix, r.RR())
	}
	writeExtras(&b, p, "; ")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable prints the records as an aligned table.
func writeTable(w io.Writer, p dnsgen.Plan) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTTL\tTYPE\tVALUE")
	provider := false
	for _, r := range p.Records {
		if r.Where == dnsgen.WhereProvider && !provider {
			tw.Flush()
			fmt.Fprintln(&b, "\nset at your hosting provider (reverse DNS), not in the zone:")
			provider = true
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Name, r.TTL, r.Type, r.Value)
	}
	tw.Flush()
	writeExtras(&b, p, "")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeExtras prints what is not a record: the MTA-STS policy file and the
// notes, each line after prefix.
func writeExtras(b *strings.Builder, p dnsgen.Plan, prefix string) {
	fmt.Fprintf(b, "\n%sMTA-STS policy file, to serve at %s:\n", prefix, p.Policy.URL)
	for line := range strings.Lines(p.Policy.Text) {
		fmt.Fprintf(b, "%s  %s", prefix, line)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(b, "\n%sNote: %s\n", prefix, n)
	}
}

func writeJSON(w io.Writer, p dnsgen.Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}
