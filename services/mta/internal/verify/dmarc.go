package verify

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/mail"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/postcove/postcove/services/mta/internal/policy"
)

// dmarcResult is the DMARC evaluation of one author domain (RFC 7489
// section 6.6).
type dmarcResult struct {
	domain string              // the RFC5322.From domain
	value  authres.ResultValue // pass, fail, none, temperror or permerror
	// policy is the policy to apply: reject or quarantine when the
	// message fails, after sp and pct; none otherwise.
	policy dmarc.Policy
	// unsure: the outcome hangs on a temporary DNS failure and could be
	// reject or quarantine. The message is deferred (4xx), never refused
	// on a guess; see the package documentation.
	unsure bool
}

// alignment is how the SPF and DKIM results stand for one domain.
type alignment int

const (
	notAligned    alignment = iota // no aligned identifier passed
	alignedUnsure                  // none passed, but an aligned one had a temperror
	alignedPass                    // SPF or a DKIM signature passed, aligned
)

// alignedResult tells whether SPF or DKIM authenticated a domain aligned
// with the author domain (RFC 7489 section 4.2), in the given modes.
func alignedResult(author string, spfMode, dkimMode dmarc.AlignmentMode, s spfResult, dkims []dkimResult) alignment {
	a := notAligned
	consider := func(domain string, value authres.ResultValue, mode dmarc.AlignmentMode) {
		if !aligned(domain, author, mode) {
			return
		}
		switch value {
		case authres.ResultPass:
			a = alignedPass
		case authres.ResultTempError:
			a = max(a, alignedUnsure)
		}
	}
	consider(s.domain, s.value, spfMode)
	for _, d := range dkims {
		consider(d.domain, d.value, dkimMode)
	}
	return a
}

// evalDMARC evaluates DMARC for one author domain.
func (v *Verifier) evalDMARC(ctx context.Context, author string, s spfResult, dkims []dkimResult) dmarcResult {
	res := dmarcResult{domain: author, policy: dmarc.PolicyNone}
	rec, sub, err := v.lookupPolicy(ctx, author)
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		// RFC 7489 section 6.6.3: no record, no DMARC processing.
		res.value = authres.ResultNone
		return res
	case dmarc.IsTempFail(err):
		// The policy is unknown. A pass in strict alignment passes
		// whatever the record says; anything less may fail a reject
		// policy we could not read.
		res.value = authres.ResultTempError
		res.unsure = alignedResult(author, dmarc.AlignmentStrict, dmarc.AlignmentStrict, s, dkims) != alignedPass
		return res
	case err != nil:
		// A record that does not parse: no DMARC processing (RFC 7489
		// section 6.6.3).
		v.log.Debug("dmarc", "domain", author, "detail", err)
		res.value = authres.ResultPermError
		return res
	}
	p := rec.Policy
	if sub && rec.SubdomainPolicy != "" {
		p = rec.SubdomainPolicy // sp: the record is the organizational domain's
	}
	switch alignedResult(author, rec.SPFAlignment, rec.DKIMAlignment, s, dkims) {
	case alignedPass:
		res.value = authres.ResultPass
	case alignedUnsure:
		res.value = authres.ResultTempError
		res.unsure = p != dmarc.PolicyNone
	default:
		res.value = authres.ResultFail
		res.policy = sampled(p, rec.Percent)
	}
	return res
}

// lookupPolicy finds the DMARC record for the author domain: at the
// domain, else at its organizational domain (RFC 7489 section 6.6.3), in
// which case sub is true. The error is dmarc.ErrNoPolicy when there is
// none, a dmarc.IsTempFail one when DNS failed.
func (v *Verifier) lookupPolicy(ctx context.Context, author string) (rec *dmarc.Record, sub bool, err error) {
	opts := &dmarc.LookupOptions{LookupTXT: v.dns.txtFunc(ctx)}
	rec, err = dmarc.LookupWithOptions(author, opts)
	if !errors.Is(err, dmarc.ErrNoPolicy) {
		return rec, false, err
	}
	org := orgDomain(author)
	if org == author {
		return nil, false, err
	}
	rec, err = dmarc.LookupWithOptions(org, opts)
	return rec, true, err
}

// sampled applies pct (RFC 7489 section 6.3): a failing message outside
// the sample gets the next less strict policy. The draw is random, as the
// RFC asks; pct=100 (the default) and pct=0 are deterministic.
func sampled(p dmarc.Policy, pct *int) dmarc.Policy {
	if pct == nil || *pct >= 100 || rand.IntN(100) < *pct {
		return p
	}
	switch p {
	case dmarc.PolicyReject:
		return dmarc.PolicyQuarantine
	case dmarc.PolicyQuarantine:
		return dmarc.PolicyNone
	}
	return p
}

// authorDomains returns the domains of the From field(s), the author
// domains DMARC evaluates (RFC 7489 section 6.6.1), without duplicates.
// RFC 5322 wants one From field, usually with one address; when there are
// more, each domain is evaluated and the strictest outcome applies. A
// field the address parser refuses is scanned for "@domain" instead:
// being hard to parse must not exempt a message from DMARC.
func authorDomains(h *policy.Header) []string {
	var out []string
	for _, v := range h.Values("From") {
		var domains []string
		if list, err := mail.ParseAddressList(v); err == nil {
			for _, a := range list {
				domains = append(domains, a.Address[strings.LastIndexByte(a.Address, '@')+1:])
			}
		} else {
			domains = scanDomains(v)
		}
		for _, d := range domains {
			if d = normalizeDomain(d); d != "" && !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// scanDomains returns what follows each "@" in s up to the first
// character no domain has.
func scanDomains(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		j := i + 1
		for j < len(s) && (s[j] >= 0x80 || s[j] == '.' || s[j] == '-' || s[j] == '_' ||
			s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		out = append(out, s[i+1:j])
		i = j - 1
	}
	return out
}
