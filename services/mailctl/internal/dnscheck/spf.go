package dnscheck

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/dnsrecord"
)

const (
	// maxSPFLookups is the limit of RFC 7208 §4.6.4 on DNS-lookup terms
	// in one evaluation, included records counted.
	maxSPFLookups = 10
	// maxSPFRecords bounds the records fetched while following includes,
	// so that a hostile or looping chain cannot keep the check busy; it
	// is far past the point where the limit above fails anyway.
	maxSPFRecords = 40
	// maxSPFDepth bounds include/redirect nesting while evaluating.
	maxSPFDepth = 10
	// maxMXPerLookup is the limit of RFC 7208 §4.6.4 on MX hosts looked
	// at by one mx mechanism.
	maxMXPerLookup = 10
)

// spfResult is the SPF record of one domain, fetched once per run.
type spfResult struct {
	rec *dnsrecord.SPF
	// problem says why the domain has no usable record ("has no SPF
	// record"): receivers then return permerror for an include of it.
	problem string
	err     error // a failed lookup
}

// spfRecord fetches and parses the SPF record of domain.
func (c *checker) spfRecord(domain string) spfResult {
	if res, ok := c.spfCache[domain]; ok {
		return res
	}
	var res spfResult
	txts, err := c.r.TXT(c.ctx, domain)
	if err != nil && !errors.Is(err, dnsclient.ErrNotFound) {
		res.err = err
	}
	spfs := slices.DeleteFunc(txts, func(t string) bool { return !dnsrecord.IsSPF(t) })
	switch {
	case res.err != nil:
	case len(spfs) == 0:
		res.problem = "has no SPF record"
	case len(spfs) > 1:
		res.problem = fmt.Sprintf("has %d SPF records", len(spfs))
	default:
		res.rec, err = dnsrecord.ParseSPF(spfs[0])
		if err != nil {
			res.problem = "has an SPF record with an error (" + err.Error() + ")"
		}
	}
	c.spfCache[domain] = res
	return res
}

// checkSPF checks the domain's SPF record: exactly one, valid, within the
// lookup limit, authorising ips, ending well.
func (c *checker) checkSPF(ips []netip.Addr, fromMX bool) {
	d := c.domain
	spfs, others, ok := c.txtRecords("spf", d, dnsrecord.IsSPF)
	if !ok {
		return
	}
	why := "SPF (RFC 7208) lists the servers allowed to send mail from " + d + "; receivers check it on every message, " +
		"and Gmail and Yahoo refuse unauthenticated mail."
	switch len(spfs) {
	case 0:
		detail := why + " Publish one TXT record:\n" + indent(txtLine(d, c.suggestedSPF()))
		for _, t := range others {
			if strings.Contains(strings.ToLower(t), "spf1") {
				detail += fmt.Sprintf("\nThe TXT record %q looks like SPF, but receivers ignore it: an SPF record starts with exactly \"v=spf1\" and a space.", t)
			}
		}
		c.add("spf", Fail, "no SPF record for "+d, detail)
		return
	case 1:
	default:
		c.add("spf", Fail, fmt.Sprintf("%s has %d SPF records, so receivers ignore them all", d, len(spfs)),
			"RFC 7208 §4.5: with more than one v=spf1 record, the result is permerror, as if there were no SPF at all. "+
				"Merge them into one record: keep one v=spf1, the mechanisms of both, and a single all at the end. The records now:\n"+quoted(spfs))
		return
	}
	txt := spfs[0]
	rec, err := dnsrecord.ParseSPF(txt)
	if err != nil {
		c.add("spf", Fail, "the SPF record of "+d+" has an error: "+err.Error(),
			"Receivers treat a record with a syntax error as no SPF at all (permerror, RFC 7208 §4.6). Where:\n"+pointAt(txt, errPos(err))+
				"\nA record that works for most single servers:\n"+indent(txtLine(d, c.suggestedSPF())))
		return
	}
	c.spfCache[d] = spfResult{rec: rec}
	c.add("spf", Pass, "SPF record: "+txt, "")
	for _, w := range rec.Warnings() {
		c.add("spf", Warn, "SPF: "+w.String(), "")
	}
	c.checkSPFLookups(rec)
	c.checkSPFAll(rec, txt)
	c.checkSPFIPs(rec, txt, ips, fromMX)
}

// suggestedSPF is a record authorising the server: its addresses when
// given, else the MX hosts.
func (c *checker) suggestedSPF() string {
	if len(c.opts.IPs) == 0 {
		return "v=spf1 mx -all"
	}
	terms := []string{"v=spf1"}
	for _, ip := range c.opts.IPs {
		terms = append(terms, ipTerm(ip))
	}
	return strings.Join(append(terms, "-all"), " ")
}

func ipTerm(ip netip.Addr) string {
	if ip.Is4() || ip.Is4In6() {
		return "ip4:" + ip.Unmap().String()
	}
	return "ip6:" + ip.String()
}

// spfCount is the lookup terms of one record reached from the domain's.
type spfCount struct {
	domain string
	n      int
}

// walkSPF adds the lookup terms of rec (the record of domain) and of every
// record it includes or redirects to, and notes includes that cannot be
// counted. path guards against loops.
func (c *checker) walkSPF(domain string, rec *dnsrecord.SPF, path []string, counts *[]spfCount, broken, notes *[]string) error {
	*counts = append(*counts, spfCount{domain, rec.LookupTerms()})
	type edge struct{ term, target string }
	var edges []edge
	for _, m := range rec.Mechanisms {
		if m.Name != "include" {
			continue
		}
		target, ok := m.Target(domain)
		if !ok {
			*notes = append(*notes, fmt.Sprintf("%s (in the record of %s) has macros, so what it includes depends on each message and is not counted", m.Term, domain))
			continue
		}
		edges = append(edges, edge{m.Term, target})
	}
	if _, hasAll := rec.All(); !hasAll && rec.Redirect != "" {
		if target, ok := rec.RedirectTarget(domain); ok {
			edges = append(edges, edge{"redirect=" + rec.Redirect, target})
		} else {
			*notes = append(*notes, fmt.Sprintf("redirect=%s (in the record of %s) has macros and is not counted", rec.Redirect, domain))
		}
	}
	for _, e := range edges {
		if slices.Contains(path, e.target) {
			*broken = append(*broken, fmt.Sprintf("%s in the record of %s loops back: %s → %s", e.term, domain, strings.Join(path, " → "), e.target))
			continue
		}
		if len(*counts) >= maxSPFRecords {
			return nil
		}
		res := c.spfRecord(e.target)
		if res.err != nil {
			return res.err
		}
		if res.problem != "" {
			*broken = append(*broken, fmt.Sprintf("%s in the record of %s: %s %s", e.term, domain, e.target, res.problem))
			continue
		}
		if err := c.walkSPF(e.target, res.rec, append(slices.Clip(path), e.target), counts, broken, notes); err != nil {
			return err
		}
	}
	return nil
}

// checkSPFLookups counts the DNS lookups an evaluation of the record
// needs, through includes and redirects, against the limit of 10.
func (c *checker) checkSPFLookups(rec *dnsrecord.SPF) {
	var counts []spfCount
	var broken, notes []string
	err := c.walkSPF(c.domain, rec, []string{c.domain}, &counts, &broken, &notes)
	if c.lookupFailed("spf-lookups", "SPF lookup of an included record", err) {
		return
	}
	for _, b := range broken {
		c.add("spf-include", Fail, "SPF: "+b,
			"An include: or redirect= of a domain without exactly one valid SPF record, or one that loops, makes the evaluation of your whole record fail "+
				"with permerror (RFC 7208 §5.2, §6.1), which receivers treat as no SPF. Remove the term, or ask the service you include for the right name.")
	}
	total := 0
	var lines []string
	for _, sc := range counts {
		total += sc.n
		lines = append(lines, fmt.Sprintf("%s: %d", sc.domain, sc.n))
	}
	detail := "Lookups per record: " + strings.Join(lines, ", ") + "."
	if len(notes) > 0 {
		detail += " Not counted: " + strings.Join(notes, "; ") + "."
	}
	if total > maxSPFLookups {
		c.add("spf-lookups", Fail, fmt.Sprintf("SPF needs %d DNS lookups, more than the %d allowed", total, maxSPFLookups),
			"Receivers stop after 10 lookups (include, a, mx, ptr, exists and redirect, counted through every included record, RFC 7208 §4.6.4) "+
				"and return permerror, which DMARC counts as an SPF failure. "+detail+
				" Replace includes by the ip4:/ip6: ranges they list, or drop services that no longer send for you.")
		return
	}
	c.add("spf-lookups", Pass, fmt.Sprintf("SPF needs %d of the %d DNS lookups allowed", total, maxSPFLookups), detail)
}

// checkSPFAll checks how the record treats servers it does not list: the
// all mechanism, followed through redirect when there is none.
func (c *checker) checkSPFAll(rec *dnsrecord.SPF, txt string) {
	q, found, via := c.effectiveAll(c.domain, rec, 0)
	from := ""
	if via != c.domain {
		from = " (in the record of " + via + ", through redirect)"
	}
	fix := txt + " -all"
	for _, m := range rec.Mechanisms {
		if m.Name == "all" {
			fix = txt[:m.Pos] + "-all" + txt[m.Pos+len(m.Term):]
			break
		}
	}
	fixLine := indent(txtLine(c.domain, fix))
	switch {
	case !found:
		c.add("spf-all", Warn, "SPF has no all at the end: mail from servers it does not list gets neutral",
			"Neutral tells receivers nothing, so anyone can send as "+c.domain+" without failing SPF. End the record with -all "+
				"(or ~all while you make sure every service that sends for you is listed):\n"+fixLine)
	case q == dnsrecord.QualifierFail:
		c.add("spf-all", Pass, "SPF ends in -all"+from+": mail from servers it does not list fails", "")
	case q == dnsrecord.QualifierSoftFail:
		c.add("spf-all", Pass, "SPF ends in ~all"+from+": mail from servers it does not list gets softfail",
			"Fine, and common while DMARC does the enforcing; -all is stricter.")
	case q == dnsrecord.QualifierNeutral:
		c.add("spf-all", Warn, "SPF ends in ?all"+from+", which says nothing about other servers",
			"Neutral gives receivers no signal, so anyone can send as "+c.domain+" without failing SPF. Use -all "+
				"(or ~all while you make sure every service that sends for you is listed):\n"+fixLine)
	default:
		c.add("spf-all", Fail, "SPF ends in +all"+from+": every server on the Internet may send as "+c.domain,
			"+all (or a bare all) authorises any address, which makes SPF worthless and helps spammers pass as you. Replace it with -all:\n"+fixLine)
	}
}

// effectiveAll returns the all qualifier that applies to rec, following
// redirect when rec has no all, and the domain whose record has it.
func (c *checker) effectiveAll(domain string, rec *dnsrecord.SPF, depth int) (dnsrecord.Qualifier, bool, string) {
	if q, ok := rec.All(); ok {
		return q, true, domain
	}
	target, ok := rec.RedirectTarget(domain)
	if !ok || depth >= maxSPFDepth {
		return 0, false, domain
	}
	res := c.spfRecord(target)
	if res.rec == nil {
		return 0, false, domain
	}
	return c.effectiveAll(target, res.rec, depth+1)
}

// spfOutcome is how a record treats one address.
type spfOutcome struct {
	matched   bool
	q         dnsrecord.Qualifier // when matched
	term      string              // the term that matched, through includes
	undecided string              // why this simple evaluation cannot tell
	err       error
}

// checkSPFIPs checks that the record authorises each of the server's
// addresses.
func (c *checker) checkSPFIPs(rec *dnsrecord.SPF, txt string, ips []netip.Addr, fromMX bool) {
	if len(ips) == 0 {
		c.add("spf-ip", Warn, "no server address to check SPF against",
			"Give the address the server sends mail from with --ip, or fix the MX records so that their hosts' addresses can be used.")
		return
	}
	whose := ""
	if fromMX {
		whose = " (an address of the MX host; if the server sends from another address, give it with --ip)"
	}
	for _, ip := range ips {
		o := c.spfEval(c.domain, rec, ip, 0)
		switch {
		case c.lookupFailed("spf-ip", "SPF check of "+ip.String(), o.err):
		case o.undecided != "":
			c.add("spf-ip", Warn, "cannot tell whether SPF allows "+ip.String()+whose,
				o.undecided+". Check with a full SPF evaluation, or list the address with "+ipTerm(ip)+" before the all.")
		case o.matched && o.q == dnsrecord.QualifierPass:
			c.add("spf-ip", Pass, fmt.Sprintf("SPF allows %s, matched by %s", ip, o.term), "")
		default:
			result, why := "neutral", "no term of the record matches it"
			if o.matched {
				result, why = o.q.Result(), "it matches "+o.term
			}
			c.add("spf-ip", Fail, fmt.Sprintf("SPF does not allow %s%s: %s (result %s)", ip, whose, why, result),
				"Mail the server sends from this address fails SPF, and with DMARC that means the spam folder or a rejection unless DKIM passes. "+
					"Add the address before the all:\n"+indent(txtLine(c.domain, insertTerm(rec, txt, ipTerm(ip)))))
		}
	}
}

// insertTerm returns txt with term added before the all mechanism or the
// redirect, or at the end.
func insertTerm(rec *dnsrecord.SPF, txt, term string) string {
	pos := len(txt)
	for _, m := range rec.Mechanisms {
		if m.Name == "all" {
			pos = m.Pos
			break
		}
	}
	if pos == len(txt) && rec.RedirectPos >= 0 {
		pos = rec.RedirectPos
	}
	if pos == len(txt) {
		return strings.TrimRight(txt, " ") + " " + term
	}
	return txt[:pos] + term + " " + txt[pos:]
}

// spfEval is a simplified check_host() (RFC 7208 §4.6): the first
// mechanism that matches ip decides. It handles all, ip4, ip6, a, mx,
// include and redirect, and gives up on ptr, exists and macros, which need
// the message's sender and a full evaluation.
func (c *checker) spfEval(domain string, rec *dnsrecord.SPF, ip netip.Addr, depth int) spfOutcome {
	if depth > maxSPFDepth {
		return spfOutcome{undecided: "the record nests includes more than 10 deep"}
	}
	for _, m := range rec.Mechanisms {
		match, o := c.spfMatch(domain, m, ip, depth)
		if o.err != nil || o.undecided != "" {
			return o
		}
		if match {
			if o.term == "" {
				o.term = m.Term
			}
			o.matched, o.q = true, m.Qualifier
			return o
		}
	}
	if _, hasAll := rec.All(); hasAll || rec.Redirect == "" {
		return spfOutcome{}
	}
	target, ok := rec.RedirectTarget(domain)
	if !ok {
		return spfOutcome{undecided: "redirect=" + rec.Redirect + " has macros"}
	}
	res := c.spfRecord(target)
	switch {
	case res.err != nil:
		return spfOutcome{err: res.err}
	case res.problem != "":
		return spfOutcome{undecided: "redirect=" + rec.Redirect + ": " + target + " " + res.problem}
	}
	o := c.spfEval(target, res.rec, ip, depth+1)
	if o.matched {
		o.term += " through redirect=" + rec.Redirect
	}
	return o
}

// spfMatch reports whether mechanism m of domain's record matches ip; the
// outcome carries errors, undecided cases and, for include, the inner term.
func (c *checker) spfMatch(domain string, m dnsrecord.Mechanism, ip netip.Addr, depth int) (bool, spfOutcome) {
	ip = ip.Unmap()
	switch m.Name {
	case "all":
		return true, spfOutcome{}
	case "ip4", "ip6":
		return m.Network.Contains(ip), spfOutcome{}
	case "ptr", "exists":
		return false, spfOutcome{undecided: "the record uses " + m.Term + ", which only a full SPF evaluation can check"}
	}
	target, ok := m.Target(domain)
	if !ok {
		return false, spfOutcome{undecided: m.Term + " has macros, which only a full SPF evaluation can expand"}
	}
	switch m.Name {
	case "a":
		ips, err := c.r.IPs(c.ctx, target)
		if err != nil && !errors.Is(err, dnsclient.ErrNotFound) {
			return false, spfOutcome{err: err}
		}
		return inPrefixes(ips, ip, m), spfOutcome{}
	case "mx":
		mxs, err := c.r.MX(c.ctx, target)
		if err != nil && !errors.Is(err, dnsclient.ErrNotFound) {
			return false, spfOutcome{err: err}
		}
		for i, mx := range mxs {
			if i == maxMXPerLookup || mx.Host == "." {
				break
			}
			ips, err := c.r.IPs(c.ctx, mx.Host)
			if err != nil && !errors.Is(err, dnsclient.ErrNotFound) {
				return false, spfOutcome{err: err}
			}
			if inPrefixes(ips, ip, m) {
				return true, spfOutcome{term: m.Term + " (" + mx.Host + ")"}
			}
		}
		return false, spfOutcome{}
	default: // include
		res := c.spfRecord(target)
		switch {
		case res.err != nil:
			return false, spfOutcome{err: res.err}
		case res.problem != "":
			return false, spfOutcome{undecided: m.Term + ": " + target + " " + res.problem}
		}
		// RFC 7208 §5.2: include matches when the included record passes.
		o := c.spfEval(target, res.rec, ip, depth+1)
		if o.err != nil || o.undecided != "" {
			return false, o
		}
		if o.matched && o.q == dnsrecord.QualifierPass {
			return true, spfOutcome{term: o.term + " in " + m.Term}
		}
		return false, spfOutcome{}
	}
}

// inPrefixes reports whether ip is in the network of one of addrs, with
// the CIDR lengths of mechanism m (a/24//64, RFC 7208 §5.6).
func inPrefixes(addrs []netip.Addr, ip netip.Addr, m dnsrecord.Mechanism) bool {
	for _, a := range addrs {
		bits := m.CIDR6
		if a.Is4() {
			bits = m.CIDR4
		}
		if p, err := a.Prefix(bits); err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}
