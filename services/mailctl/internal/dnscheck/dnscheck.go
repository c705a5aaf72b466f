// Package dnscheck is `mailctl dns check`: it looks up the DNS records a
// mail domain needs and reports each as pass, warn or fail, with what is
// wrong, why it matters and what to publish instead, like the online
// checkers operators otherwise have to trust with their domain.
//
// What it checks, and where the rules come from:
//
//   - MX (RFC 5321 §5.1; null MX, RFC 7505) and the address of each MX host,
//     which must not be an alias (RFC 2181 §10.3);
//   - reverse DNS of the server's addresses, forward-confirmed (the PTR name
//     resolves back to the address; RFC 8601 §3 "iprev");
//   - SPF (RFC 7208): one record (§4.5), valid syntax, at most 10 DNS-lookup
//     terms counted through includes and redirects (§4.6.4), the server's
//     addresses authorised, and how it ends (-all or ~all);
//   - DKIM (RFC 6376 §3.6.1): for each key under keys/DOMAIN/, the record at
//     SELECTOR._domainkey.DOMAIN publishes that key;
//   - DMARC (RFC 7489 §6): one valid record, report addresses, and
//     authorisation of reports to other domains (§7.1);
//   - MTA-STS (RFC 8461 §3.1) and TLS-RPT (RFC 8460 §3): syntax when
//     present; they are optional, so absence is a warning.
//
// Records are parsed by package dnsrecord. SPF is not evaluated the way a
// receiver does (that is an SPF library's job, in the MTA): the check that
// the server is authorised follows ip4, ip6, a, mx, include and redirect and
// says so when a record needs more (ptr, exists, macros).
package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/dnsrecord"
)

// Resolver is what the checks ask DNS. *dnsclient.Resolver implements it;
// its errors wrap dnsclient.ErrNotFound for a definite "no such record" and
// dnsclient.ErrTemporary when no answer came.
type Resolver interface {
	TXT(ctx context.Context, name string) ([]string, error)
	MX(ctx context.Context, name string) ([]dnsclient.MX, error)
	IPs(ctx context.Context, name string) ([]netip.Addr, error)
	PTR(ctx context.Context, ip netip.Addr) ([]string, error)
	CNAME(ctx context.Context, name string) (string, error)
}

var _ Resolver = (*dnsclient.Resolver)(nil)

// Status is the verdict on one item.
type Status string

// The statuses, from good to bad.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Finding is one checked item.
type Finding struct {
	// Check names what was checked, stable for monitoring: "mx",
	// "mx-host", "ptr", "spf", "spf-include", "spf-lookups", "spf-all",
	// "spf-ip", "dkim", "dmarc", "dmarc-report", "mta-sts", "tls-rpt".
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Message is one line: what was found.
	Message string `json:"message"`
	// Detail explains why it matters and what to publish instead; records
	// to paste are on lines of their own, indented by two spaces.
	Detail string `json:"detail,omitempty"`
}

// Options says what to check.
type Options struct {
	// Domain is the mail domain, in canonical form.
	Domain string
	// IPs are the addresses the mail server sends from (--ip). When empty,
	// the addresses of the MX hosts are taken instead, which is right for
	// the usual single server that both receives and sends.
	IPs []netip.Addr
	// KeysDir is the DKIM keys directory (keys/DOMAIN/SELECTOR.key). When
	// empty, DKIM is not checked.
	KeysDir string
}

// Report is the result of Check.
type Report struct {
	Domain   string    `json:"domain"`
	Findings []Finding `json:"findings"`
}

// Count returns how many findings have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, f := range r.Findings {
		if f.Status == s {
			n++
		}
	}
	return n
}

// Failed reports whether any finding failed; mailctl then exits 1.
func (r *Report) Failed() bool { return r.Count(Fail) > 0 }

// Check runs every check on opts.Domain and returns the findings in a
// fixed order: MX, MX hosts, reverse DNS, SPF, DKIM, DMARC, MTA-STS,
// TLS-RPT.
func Check(ctx context.Context, r Resolver, opts Options) *Report {
	c := &checker{ctx: ctx, r: r, opts: opts, domain: opts.Domain, spfCache: map[string]spfResult{}}
	hosts := c.checkMX()
	mxIPs := c.checkMXHosts(hosts)
	serverIPs, fromMX := opts.IPs, false
	if len(serverIPs) == 0 {
		serverIPs, fromMX = mxIPs, true
	}
	c.checkPTR(serverIPs)
	c.checkSPF(serverIPs, fromMX)
	c.checkDKIM()
	c.checkDMARC()
	c.checkMTASTS()
	c.checkTLSRPT()
	return &Report{Domain: opts.Domain, Findings: c.findings}
}

// checker carries one run. It is used by one goroutine.
type checker struct {
	ctx      context.Context
	r        Resolver
	opts     Options
	domain   string
	findings []Finding
	spfCache map[string]spfResult // SPF records fetched, by domain
}

func (c *checker) add(check string, st Status, msg, detail string) {
	c.findings = append(c.findings, Finding{Check: check, Status: st, Message: msg, Detail: detail})
}

// lookupFailed adds a fail finding for a lookup error other than "not
// found" and reports whether it did. what says what was looked up.
func (c *checker) lookupFailed(check, what string, err error) bool {
	switch {
	case err == nil, errors.Is(err, dnsclient.ErrNotFound):
		return false
	case errors.Is(err, dnsclient.ErrTemporary):
		c.add(check, Fail, what+": temporary DNS failure, try again",
			"No DNS server gave an answer ("+err.Error()+"). Run the check again; if this persists, the domain's name servers are down or misconfigured, and senders see the same failure.")
	default:
		c.add(check, Fail, what+": the lookup failed", err.Error())
	}
	return true
}

// txtRecords returns the TXT records at name that belong to one protocol
// (those sel accepts) and the others, or ok false after adding a finding
// for a failed lookup.
func (c *checker) txtRecords(check, name string, sel func(string) bool) (chosen, others []string, ok bool) {
	txts, err := c.r.TXT(c.ctx, name)
	if c.lookupFailed(check, "TXT lookup of "+name, err) {
		return nil, nil, false
	}
	for _, t := range txts {
		if sel(t) {
			chosen = append(chosen, t)
		} else {
			others = append(others, t)
		}
	}
	return chosen, others, true
}

// indent formats records or other literal text for a Detail: one per line,
// indented by two spaces.
func indent(lines ...string) string {
	return "  " + strings.Join(lines, "\n  ")
}

// quoted lists TXT record texts for a Detail.
func quoted(txts []string) string {
	q := make([]string, len(txts))
	for i, t := range txts {
		q[i] = fmt.Sprintf("%q", t)
	}
	return indent(q...)
}

// pointAt shows text with a caret under byte offset pos, to locate a
// syntax error; without a position, just the text.
func pointAt(text string, pos int) string {
	if pos < 0 || pos > len(text) {
		return indent(text)
	}
	return indent(text, strings.Repeat(" ", pos)+"^")
}

// errPos returns the position a dnsrecord error points at, or -1.
func errPos(err error) int {
	var e *dnsrecord.Error
	if errors.As(err, &e) {
		return e.Pos
	}
	return -1
}

// txtLine is a zone-file line publishing a TXT record, split into
// character-strings of at most 255 bytes (RFC 1035 §3.3).
func txtLine(name, value string) string {
	parts := dkimkey.SplitTXT(value)
	for i, p := range parts {
		parts[i] = fmt.Sprintf("%q", p)
	}
	data := strings.Join(parts, " ")
	if len(parts) > 1 {
		data = "( " + data + " )"
	}
	return fmt.Sprintf("%s. 3600 IN TXT %s", name, data)
}

// joinAddrs lists addresses for a message.
func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
