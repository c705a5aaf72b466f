package dnscheck

import (
	"fmt"
	"strings"

	"github.com/postcove/postcove/services/internal/dnsrecord"
)

// optionalRecord is one of the records a domain may do without: MTA-STS
// and TLS-RPT. Absent is a warning; present and wrong is a failure.
type optionalRecord struct {
	check  string // finding name
	title  string // the protocol's name, for messages
	name   string // where the record is
	is     func(string) bool
	parse  func(string) (string, error) // returns a one-line summary
	absent string                       // why to publish it, and how
	many   string                       // the rule for several records
}

// checkOptional checks an optional record and reports whether it is there
// and valid.
func (c *checker) checkOptional(o optionalRecord) bool {
	recs, _, ok := c.txtRecords(o.check, o.name, o.is)
	if !ok {
		return false
	}
	switch len(recs) {
	case 0:
		c.add(o.check, Warn, "no "+o.title+" record at "+o.name, o.absent)
		return false
	case 1:
	default:
		c.add(o.check, Fail, fmt.Sprintf("%d %s records at %s, so senders ignore them all", len(recs), o.title, o.name),
			o.many+" Keep one. The records now:\n"+quoted(recs))
		return false
	}
	summary, err := o.parse(recs[0])
	if err != nil {
		c.add(o.check, Fail, "the "+o.title+" record at "+o.name+" has an error: "+err.Error(),
			"Senders ignore a record they cannot parse. Where:\n"+pointAt(recs[0], errPos(err))+"\n"+o.absent)
		return false
	}
	c.add(o.check, Pass, summary, "")
	return true
}

// checkMTASTS checks the _mta-sts TXT record (RFC 8461 §3.1) and that the
// policy host has an address. The policy file itself is served over HTTPS
// and not fetched here.
func (c *checker) checkMTASTS() {
	d := c.domain
	policyHost := "mta-sts." + d
	ok := c.checkOptional(optionalRecord{
		check: "mta-sts",
		title: "MTA-STS",
		name:  "_mta-sts." + d,
		is:    dnsrecord.IsMTASTS,
		parse: func(txt string) (string, error) {
			rec, err := dnsrecord.ParseMTASTS(txt)
			if err != nil {
				return "", err
			}
			return "MTA-STS record, policy id " + rec.ID, nil
		},
		absent: "MTA-STS (RFC 8461) lets senders insist on TLS with a valid certificate when they deliver to " + d +
			", so that nobody on the path can strip STARTTLS and read the mail. It is optional: a TXT record plus a policy file at https://" +
			policyHost + "/.well-known/mta-sts.txt; 'mailctl dns records " + d + "' prints both.",
		many: "RFC 8461 §3.1: with more than one v=STSv1 record, senders assume there is no policy.",
	})
	if !ok {
		return
	}
	ips, err := c.r.IPs(c.ctx, policyHost)
	switch {
	case c.lookupFailed("mta-sts", "address lookup of "+policyHost, err):
	case len(ips) == 0:
		c.add("mta-sts", Warn, "the MTA-STS policy host "+policyHost+" has no address",
			"Senders fetch the policy from https://"+policyHost+"/.well-known/mta-sts.txt; without the host they find none, and the record does nothing. "+
				"Point "+policyHost+" at a web server (a CNAME to the mail host works) with a certificate for that name.")
	default:
		c.add("mta-sts", Pass, fmt.Sprintf("MTA-STS policy host %s has address %s", policyHost, joinAddrs(ips)),
			"Senders fetch the policy from https://"+policyHost+"/.well-known/mta-sts.txt (not checked here); change the record's id whenever the policy changes.")
	}
}

// checkTLSRPT checks the _smtp._tls TXT record (RFC 8460 §3).
func (c *checker) checkTLSRPT() {
	d := c.domain
	c.checkOptional(optionalRecord{
		check: "tls-rpt",
		title: "TLS-RPT",
		name:  "_smtp._tls." + d,
		is:    dnsrecord.IsTLSRPT,
		parse: func(txt string) (string, error) {
			rec, err := dnsrecord.ParseTLSRPT(txt)
			if err != nil {
				return "", err
			}
			uris := make([]string, len(rec.Reports))
			for i, u := range rec.Reports {
				uris[i] = u.URI
			}
			return "TLS-RPT reports go to " + strings.Join(uris, ", "), nil
		},
		absent: "TLS-RPT (RFC 8460) asks senders to report failed TLS connections to " + d +
			", which is how you learn that a certificate expired or MTA-STS blocks mail. It is optional:\n" +
			indent(txtLine("_smtp._tls."+d, "v=TLSRPTv1; rua=mailto:postmaster@"+d)),
		many: "RFC 8460 §3: senders need exactly one v=TLSRPTv1 record.",
	})
}
