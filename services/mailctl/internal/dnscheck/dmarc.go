package dnscheck

import (
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/postcove/postcove/services/internal/dnsrecord"
)

// looksLikeDMARC selects the TXT records at _dmarc that are meant as DMARC:
// receivers discard those not starting with a v= tag (RFC 7489 §6.6.3);
// matching "v=dmarc" loosely lets ParseDMARC explain a wrong version.
func looksLikeDMARC(txt string) bool {
	t := strings.ToLower(strings.TrimLeft(txt, " \t"))
	return strings.HasPrefix(strings.ReplaceAll(t, " ", ""), "v=dmarc")
}

// checkDMARC checks the record at _dmarc.DOMAIN: one, valid, a policy that
// protects, and report addresses that will receive reports.
func (c *checker) checkDMARC() {
	d := c.domain
	name := "_dmarc." + d
	recs, others, ok := c.txtRecords("dmarc", name, looksLikeDMARC)
	if !ok {
		return
	}
	suggested := indent(txtLine(name, "v=DMARC1; p=quarantine; rua=mailto:postmaster@"+d))
	switch len(recs) {
	case 0:
		detail := "DMARC (RFC 7489) tells receivers what to do with mail that claims to be from " + d + " but fails SPF and DKIM, " +
			"and where to send reports about it; Gmail and Yahoo require it of bulk senders. Publish:\n" + suggested +
			"\n(p=none first if you want to read the reports before anything is filtered.)"
		if len(others) > 0 {
			detail += "\nThe TXT records there now are not DMARC: a DMARC record starts with \"v=DMARC1\":\n" + quoted(others)
		}
		c.add("dmarc", Fail, "no DMARC record at "+name, detail)
		return
	case 1:
	default:
		c.add("dmarc", Fail, fmt.Sprintf("%d DMARC records at %s, so receivers ignore them all", len(recs), name),
			"With more than one DMARC record, receivers apply no DMARC policy at all (RFC 7489 §6.6.3). Keep one. The records now:\n"+quoted(recs))
		return
	}
	txt := recs[0]
	rec, warnings, err := dnsrecord.ParseDMARC(txt)
	if err != nil {
		c.add("dmarc", Fail, "the DMARC record at "+name+" has an error: "+err.Error(),
			"Receivers ignore a DMARC record they cannot parse, so "+d+" has no DMARC policy. Where:\n"+pointAt(txt, errPos(err))+
				"\nThe tags are v (first), p, sp, rua, ruf, adkim, aspf, pct, fo, rf and ri (RFC 7489 §6.3). A sound record:\n"+suggested)
		return
	}
	for _, w := range warnings {
		c.add("dmarc", Warn, "DMARC: "+w.String(), "")
	}
	switch {
	case rec.Policy == dmarc.PolicyNone:
		c.add("dmarc", Warn, "DMARC policy is p=none: receivers deliver mail that fails it",
			"p=none is the right start while you read the reports; once they show only your own servers passing, "+
				"move to p=quarantine, then p=reject. Until then, mail spoofing "+d+" is delivered.")
	case rec.Percent != nil && *rec.Percent < 100:
		c.add("dmarc", Warn, fmt.Sprintf("DMARC policy applies to %d%% of failing mail (pct=%d)", *rec.Percent, *rec.Percent),
			"The rest is treated one step more leniently (RFC 7489 §6.6.4). Fine while moving to a stricter policy; remove pct when done.")
	}
	if len(rec.AggregateReports) == 0 {
		c.add("dmarc", Warn, "the DMARC record asks for no reports (no rua)",
			"Without aggregate reports you cannot see who sends mail as "+d+", or whether your own mail passes. Add rua=mailto:postmaster@"+d+".")
	}
	c.add("dmarc", Pass, "DMARC record: "+txt, "")
	c.checkReportAuth(rec)
}

// checkReportAuth checks that domains receiving reports for this one have
// agreed to (RFC 7489 §7.1): DOMAIN._report._dmarc.REPORTDOMAIN must hold
// a "v=DMARC1" record, or receivers send nothing there.
func (c *checker) checkReportAuth(rec *dnsrecord.DMARC) {
	var domains []string
	for _, u := range append(slices.Clone(rec.AggregateReports), rec.FailureReports...) {
		_, ad, ok := strings.Cut(u.Address, "@")
		if !ok || sameOrganization(ad, c.domain) || slices.Contains(domains, ad) {
			continue
		}
		domains = append(domains, ad)
	}
	for _, ad := range domains {
		name := c.domain + "._report._dmarc." + ad
		recs, _, ok := c.txtRecords("dmarc-report", name, func(t string) bool { return strings.HasPrefix(t, "v=DMARC1") })
		switch {
		case !ok:
		case len(recs) == 0:
			c.add("dmarc-report", Warn, "DMARC reports to "+ad+" will not be sent: "+ad+" has not agreed to receive them",
				"Receivers send reports to another domain only when that domain publishes that it wants them (RFC 7489 §7.1). "+
					"In the zone of "+ad+", publish:\n"+indent(txtLine(name, "v=DMARC1")))
		default:
			c.add("dmarc-report", Pass, ad+" agrees to receive the DMARC reports of "+c.domain, "")
		}
	}
}

// sameOrganization approximates the organizational domain test of RFC
// 7489 §3.2 without the public suffix list: equal, or one below the other.
func sameOrganization(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	return a == b || strings.HasSuffix(a, "."+b) || strings.HasSuffix(b, "."+a)
}
