package address

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Joiners are invisible, but IDNA2008 allows them in some scripts (RFC 5892
// Appendix A.1 and A.2, e.g. ZWNJ in Persian); the idna profile checks their
// context, so domains accept them where local parts do not.
const (
	zeroWidthNonJoiner = '\u200c'
	zeroWidthJoiner    = '\u200d'
)

// ParseDomain parses a domain name and returns its canonical form: the
// lower-case A-label (punycode) spelling without a trailing dot.
func ParseDomain(s string) (string, error) {
	reason := checkInput(s)
	d := ""
	if reason == "" {
		d, reason = canonicalDomain(s)
	}
	if reason != "" {
		return "", &Error{Input: s, Reason: reason, domain: true}
	}
	return d, nil
}

// DomainUnicode returns the U-label form of the canonical domain d, for
// display: DomainUnicode("xn--bcher-kva.example") is "bücher.example". It is
// best effort: if d cannot be converted, it is returned unchanged. The result
// is for people to read; store and compare the canonical form.
func DomainUnicode(d string) string {
	u, err := idnaProfile().ToUnicode(d)
	if err != nil {
		return d
	}
	return u
}

// idnaProfile returns the IDNA profile used for all conversions: the
// RFC 5891 §5 lookup mapping as specified by UTS #46 (case folding, width
// and compatibility mappings), non-transitional so that "ß" and "ς" stay
// distinct letters as in IDNA2008, with the STD3 (letters, digits, hyphen)
// rule, hyphen and joiner checks and the RFC 5893 Bidi rule. Label and name
// lengths are verified by checkCanonicalDomain instead of the profile, which
// gives clearer reasons. A new profile is built per call to keep the package free of
// mutable globals; it is a handful of fields.
func idnaProfile() *idna.Profile {
	return idna.New(
		idna.MapForLookup(),
		idna.Transitional(false),
		idna.StrictDomainName(true),
		idna.CheckHyphens(true),
		idna.CheckJoiners(true),
		idna.BidiRule(),
	)
}

// canonicalDomain validates the domain s and returns its canonical form, or
// a non-empty reason why it is refused.
func canonicalDomain(s string) (string, string) {
	if s == "" {
		return "", "empty domain"
	}
	// Address literals (RFC 5321 §4.1.3) bypass DNS and MX policy and
	// cannot be a virtual domain; postcove only delivers to and hosts
	// domain names.
	if s[0] == '[' || s[len(s)-1] == ']' {
		return "", "address literals such as [192.0.2.1] are not accepted; use a domain name"
	}
	// Refuse what can never be part of a host name before IDNA mapping, so
	// that the reason names the character the user typed.
	for _, r := range s {
		if reason := domainRuneReason(r); reason != "" {
			return "", reason
		}
	}
	// A fully qualified name may end in the root label's dot; it names the
	// same domain. Only one is removed: "example.com.." has an empty label.
	// The ideographic and full-width stops are dots under UTS #46 too.
	for _, dot := range []string{".", "\u3002", "\uff0e", "\uff61"} {
		if strings.HasSuffix(s, dot) {
			s = s[:len(s)-len(dot)]
			break
		}
	}
	if s == "" {
		return "", "domain is only a dot"
	}
	// Cheap checks on ASCII labels give clearer reasons than the idna
	// package does; everything is checked again on the result below.
	for label := range strings.SplitSeq(s, ".") {
		if reason := asciiLabelReason(label); reason != "" {
			return "", reason
		}
	}

	p := idnaProfile()
	a, err := p.ToASCII(s)
	if err != nil {
		return "", "not a valid internationalised domain name (RFC 5891): " + strings.TrimPrefix(err.Error(), "idna: ")
	}
	if reason := checkCanonicalDomain(a); reason != "" {
		return "", reason
	}
	u, err := p.ToUnicode(a)
	if err != nil {
		return "", "not a valid internationalised domain name (RFC 5891): " + strings.TrimPrefix(err.Error(), "idna: ")
	}
	for label := range strings.SplitSeq(u, ".") {
		if reason := uLabelReason(label); reason != "" {
			return "", reason
		}
	}
	// The A-label must be a fixed point of the conversion in both
	// directions, or the same domain could be stored under two names.
	if again, err := p.ToASCII(u); err != nil || again != a {
		return "", "domain has no stable canonical form"
	}
	if again, err := p.ToASCII(a); err != nil || again != a {
		return "", "domain has no stable canonical form"
	}
	return a, ""
}

// domainRuneReason reports why r can never appear in a domain name, or ""
// if it may (non-ASCII characters are left to IDNA).
func domainRuneReason(r rune) string {
	if r != zeroWidthNonJoiner && r != zeroWidthJoiner {
		if reason := invisibleReason(r); reason != "" {
			return reason
		}
	}
	if r >= utf8.RuneSelf {
		return ""
	}
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '.':
		return ""
	}
	switch r {
	// Underscores appear in DNS names such as _dmarc.example, but those
	// are not host names and cannot receive mail (RFC 1123 §2.1).
	case '_':
		return "contains '_' (host names may only use letters, digits and hyphens)"
	case '/':
		return "contains '/', which would act as a path separator"
	case '\\':
		return "contains '\\', which is a path separator on some systems"
	case '@':
		return "contains '@' in the domain"
	case '[', ']':
		return "address literals such as [192.0.2.1] are not accepted; use a domain name"
	}
	return fmt.Sprintf("contains %q (domain names may only use letters, digits, hyphens and dots)", r)
}

// asciiLabelReason reports what is wrong with an all-ASCII label, or ""; it
// does not judge labels with other characters.
func asciiLabelReason(label string) string {
	if label == "" {
		return "domain contains an empty label (a leading dot or two dots in a row)"
	}
	for i := 0; i < len(label); i++ {
		if label[i] >= utf8.RuneSelf {
			return ""
		}
	}
	return ldhLabelReason(label)
}

// ldhLabelReason checks the length and hyphen rules of a non-empty ASCII
// label (RFC 1035 §2.3.4, RFC 1123 §2.1, RFC 5891 §4.2.3.1).
func ldhLabelReason(label string) string {
	if len(label) > maxLabelLen {
		return fmt.Sprintf("domain label %q is %d octets long, more than the %d allowed", label, len(label), maxLabelLen)
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Sprintf("domain label %q starts or ends with '-'", label)
	}
	return ""
}

// checkCanonicalDomain verifies the IDNA output a independently of the idna
// package: this is the string other services use as a directory name and
// a map key, so its shape is checked here rather than trusted.
func checkCanonicalDomain(a string) string {
	if len(a) > maxDomainLen {
		return fmt.Sprintf("domain is %d octets long, more than the %d allowed", len(a), maxDomainLen)
	}
	labels := strings.Split(a, ".")
	for _, label := range labels {
		if label == "" {
			return "domain contains an empty label (a leading dot or two dots in a row)"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Sprintf("domain contains %q after IDNA conversion", c)
			}
		}
		if reason := ldhLabelReason(label); reason != "" {
			return reason
		}
	}
	// A single-label name ("localhost", "example", a bare TLD) is never a
	// valid Internet mail domain, and what it resolves to depends on the
	// local resolver's search list. postcove refuses all of them, with no
	// exception for "localhost".
	if len(labels) < 2 {
		return "single-label domains are not accepted; a domain needs at least one dot"
	}
	// Top-level domains are never all-numeric (RFC 3696 §2); refusing them
	// keeps "192.0.2.1" from passing as a domain name.
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return "top-level label is all digits (an IP address is not a domain name)"
	}
	return ""
}

// uLabelReason applies the IDNA2008 repertoire (RFC 5892) to a U-label as
// far as the UTS #46 tables used by the idna package do not: non-ASCII
// characters must be lower-case or caseless letters, decimal digits or
// combining marks, and the CONTEXTO characters need their context. This is
// what refuses symbol and emoji domains.
func uLabelReason(label string) string {
	runes := []rune(label)
	hasArabicIndic, hasExtArabicIndic := false, false
	for i, r := range runes {
		if r < utf8.RuneSelf {
			continue
		}
		if r != zeroWidthNonJoiner && r != zeroWidthJoiner {
			if reason := invisibleReason(r); reason != "" {
				return reason
			}
		}
		switch {
		case r == zeroWidthNonJoiner, r == zeroWidthJoiner:
			// Context checked by the idna profile (CheckJoiners).
		case r == '\u00b7': // MIDDLE DOT, only in Catalan "l·l" (RFC 5892 A.3)
			if i == 0 || i == len(runes)-1 || runes[i-1] != 'l' || runes[i+1] != 'l' {
				return "domain contains U+00B7 MIDDLE DOT outside \"l·l\""
			}
		case r == '\u0375': // GREEK LOWER NUMERAL SIGN, before Greek (A.4)
			if i == len(runes)-1 || !unicode.Is(unicode.Greek, runes[i+1]) {
				return "domain contains U+0375 GREEK LOWER NUMERAL SIGN not followed by a Greek letter"
			}
		case r == '\u05f3', r == '\u05f4': // HEBREW GERESH, GERSHAYIM, after Hebrew (A.5, A.6)
			if i == 0 || !unicode.Is(unicode.Hebrew, runes[i-1]) {
				return fmt.Sprintf("domain contains %U not preceded by a Hebrew letter", r)
			}
		case r == '\u30fb': // KATAKANA MIDDLE DOT, with Japanese script (A.7)
			if !hasJapanese(runes) {
				return "domain contains U+30FB KATAKANA MIDDLE DOT in a label without Hiragana, Katakana or Han"
			}
		case unicode.In(r, unicode.Ll, unicode.Lo, unicode.Lm, unicode.Nd, unicode.Mn, unicode.Mc):
			// A label must not mix the two sets of Arabic-Indic digits
			// (A.8, A.9): they look alike but are different characters.
			hasArabicIndic = hasArabicIndic || '\u0660' <= r && r <= '\u0669'
			hasExtArabicIndic = hasExtArabicIndic || '\u06f0' <= r && r <= '\u06f9'
			if hasArabicIndic && hasExtArabicIndic {
				return "domain label mixes Arabic-Indic and extended Arabic-Indic digits"
			}
		default:
			return fmt.Sprintf("domain contains %U, which is not a letter or digit (RFC 5892)", r)
		}
	}
	return ""
}

// hasJapanese reports whether runes contain a Hiragana, Katakana or Han
// character other than U+30FB itself.
func hasJapanese(runes []rune) bool {
	for _, r := range runes {
		if r != '\u30fb' && unicode.In(r, unicode.Hiragana, unicode.Katakana, unicode.Han) {
			return true
		}
	}
	return false
}
