package verify

import (
	"context"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
)

// spfResult is the outcome of the SPF check of one message.
type spfResult struct {
	value authres.ResultValue
	// domain is the identity checked: the MAIL FROM domain, or the HELO
	// name for the null sender (RFC 7208 section 2.4). "" when there was
	// nothing to check. DMARC aligns the From domain with it.
	domain string
	helo   bool // domain is the HELO identity
}

// checkSPF evaluates the sender's SPF record for the client IP (RFC 7208
// section 4): the MAIL FROM domain, or for the null sender the HELO name
// as postmaster@helo (section 2.4). A HELO that is no domain name (an
// address literal) gives none (section 2.3).
func (v *Verifier) checkSPF(ctx context.Context, ip net.IP, helo, sender string) spfResult {
	var res spfResult
	local := "postmaster"
	if sender == "" {
		res.domain, res.helo = normalizeDomain(helo), true
	} else {
		i := strings.LastIndexByte(sender, '@')
		if i < 0 {
			return spfResult{value: authres.ResultNone}
		}
		local, res.domain = sender[:i], normalizeDomain(sender[i+1:])
	}
	if res.domain == "" {
		res.value = authres.ResultNone
		return res
	}
	// The library looks up the domain of the address it is given: give
	// it the A-label form (RFC 7208 section 4.3).
	sender = local + "@" + res.domain
	// RFC 7208 section 4.6.4: at least 20 seconds for the whole
	// evaluation; the lookups themselves are bounded by the resolver.
	ctx, cancel := context.WithTimeout(ctx, v.spfTimeout)
	defer cancel()
	r, err := spf.CheckHostWithSender(ip, helo, sender,
		spf.WithContext(ctx), spf.WithResolver(v.dns))
	if err != nil {
		v.log.Debug("spf", "domain", res.domain, "result", r, "detail", err)
	}
	// The library's results carry RFC 8601's names already (section
	// 2.7.2): none, neutral, pass, fail, softfail, temperror, permerror.
	res.value = authres.ResultValue(r)
	if r == "" {
		res.value = authres.ResultTempError
	}
	return res
}
