package verify

import (
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// normalizeDomain returns d as DNS and alignment compare it: A-labels
// (RFC 5890), lower case, no trailing dot. "" when d is no domain name
// (empty, an address literal, bad labels).
func normalizeDomain(d string) string {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		d = a
	}
	d = strings.ToLower(d)
	if !isDomainName(d) {
		return ""
	}
	return d
}

// isDomainName reports whether d is an ASCII domain name of at least two
// labels.
func isDomainName(d string) bool {
	return strings.Contains(d, ".") && validLabels(d)
}

// validLabels reports whether s is dot-separated labels of letters,
// digits, hyphens and (seen in real host names and DKIM selectors)
// underscores, 63 octets a label, 253 in all: a domain name, or a DKIM
// selector (RFC 6376 section 3.1), safe to copy into a header field.
func validLabels(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// orgDomain is the Organizational Domain of d (RFC 7489 section 3.2): the
// public suffix plus one label, found in the Public Suffix List. A public
// suffix itself is its own organizational domain.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// aligned reports whether an authenticated domain (SPF's, or a DKIM
// signature's d=) aligns with the author domain (RFC 7489 section 3.1):
// the same name in strict mode, the same organizational domain in
// relaxed mode.
func aligned(authenticated, author string, mode dmarc.AlignmentMode) bool {
	if authenticated == "" || author == "" {
		return false
	}
	if authenticated == author {
		return true
	}
	return mode != dmarc.AlignmentStrict && orgDomain(authenticated) == orgDomain(author)
}
