// Package address is the one place where postcove parses and canonicalises
// mail addresses and domain names. The auth service stores users and aliases
// with it, the MTA checks envelope addresses with it and the mailbox service
// derives Maildir paths from its output, so every caller gets the same rules
// and anything that could turn into a path, a relay hack or a look-alike
// elsewhere is refused here, once.
//
// # Accepted syntax
//
// An address is local@domain with a local part in dot-atom form: RFC 5322
// §3.2.3 atext characters separated by single dots (RFC 5322 §3.4.1), extended
// by RFC 6531 to UTF-8. postcove accepts a subset of that grammar:
//
//   - ASCII letters, digits and the atext symbols # $ & ' * + - = ? ^ _ ` { | } ~
//     ('!', '%' and '/' are atext too but are refused, see below);
//   - non-ASCII letters (Unicode category L) and decimal digits (Nd), and
//     combining marks (M) directly after a letter, digit or another mark, so
//     that scripts such as Devanagari work. Symbols, punctuation, emoji,
//     private-use, unassigned and invisible code points are refused;
//   - '.' between two of the above, never first, last or doubled.
//
// Quoted local parts, comments, address literals ([192.0.2.1]) and source
// routes (@a,@b:user@c) are refused. Leading or trailing whitespace is an
// error, not something this package trims: callers strip what their protocol
// allows.
//
// # Canonical form
//
// The local part is normalised to NFC and lower-cased (Unicode simple case
// mapping), because postcove treats local parts case-insensitively, as
// postfix virtual maps and dovecot with auth_username_format=%Lu do. The domain
// is converted with IDNA (RFC 5891, using the UTS #46 non-transitional lookup
// mapping of golang.org/x/net/idna) to its lower-case A-label form, so
// "Bücher.Example" and "xn--bcher-kva.example" are the same domain; a single
// trailing dot is removed. Canonicalisation is idempotent:
// Parse(Parse(x).String()) returns the same Address.
//
// # Limits
//
// Lengths are checked on the canonical form: a local part is at most 64
// octets (RFC 5321 §4.5.3.1.1), a domain at most 253 octets with labels of at
// most 63 octets (RFC 5321 §4.5.3.1.2, RFC 1035 §2.3.4), and a whole address
// at most 254 octets, which is the 256-octet path limit of RFC 5321
// §4.5.3.1.3 minus the angle brackets. Source routes, which RFC 5321 §4.1.2
// still lets appear in a reverse- or forward-path, are refused instead of
// silently ignored.
//
// # Domains
//
// A domain must have at least two labels: single-label names, including
// "localhost", are refused with no exception, since such a name is never a
// valid destination for Internet mail and accepting one would let a stored
// alias point at whatever the local resolver makes of it. A top-level label
// made only of digits is refused too (it would make 192.0.2.1 look like a
// domain). Domains are restricted to letters, digits and hyphens (the LDH rule
// of RFC 1123); in U-label form, non-ASCII characters must be letters, digits
// or combining marks as RFC 5892 requires, which refuses symbol and emoji
// domains that the UTS #46 tables still let through.
//
// Every error returned by this package is an *Error.
package address

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Length limits, in octets of the canonical form.
const (
	// maxLocalLen is RFC 5321 §4.5.3.1.1.
	maxLocalLen = 64
	// maxDomainLen is the longest textual domain name without the trailing
	// dot: RFC 5321 §4.5.3.1.2 allows 255 octets, but a DNS name of 255 wire
	// octets (RFC 1035 §2.3.4) is 253 characters in text.
	maxDomainLen = 253
	// maxLabelLen is RFC 1035 §2.3.4.
	maxLabelLen = 63
	// maxAddressLen is the 256-octet path limit of RFC 5321 §4.5.3.1.3 minus
	// the enclosing "<" and ">".
	maxAddressLen = 254
	// maxInputLen bounds the raw input before any Unicode normalisation or
	// punycode conversion runs, so that a hostile peer cannot make us spend
	// time on megabyte-long "addresses". It is about four times
	// maxAddressLen, which leaves room for the longest realistic spelling of
	// a valid address (full-width domain characters that IDNA maps to ASCII
	// take three octets each, decomposed accents two or three).
	maxInputLen = 1024
)

// Address is a canonical mail address.
//
// Local is empty only for a domain-wide (catch-all) source as returned by
// ParseSource. Values built by hand rather than by Parse or ParseSource are
// not checked.
type Address struct {
	Local, Domain string
}

// String returns "local@domain", or "@domain" when Local is empty.
func (a Address) String() string {
	return a.Local + "@" + a.Domain
}

// Error is the type of every error returned by this package.
type Error struct {
	// Input is the string that was refused, exactly as given.
	Input string
	// Reason says in plain words what is wrong with Input.
	Reason string

	// domain reports that Input was passed to ParseDomain, which only
	// changes the wording of Error.
	domain bool
}

// Error implements the error interface.
func (e *Error) Error() string {
	what := "address"
	if e.domain {
		what = "domain"
	}
	return fmt.Sprintf("invalid %s %q: %s", what, e.Input, e.Reason)
}

// Parse parses a full address "local@domain" and returns its canonical form.
func Parse(s string) (Address, error) {
	return parse(s, false)
}

// ParseSource is like Parse but also accepts "@domain", a domain-wide
// (catch-all) alias source, which it returns with an empty Local.
func ParseSource(s string) (Address, error) {
	return parse(s, true)
}

func parse(s string, catchAll bool) (Address, error) {
	a, reason := parseAddress(s, catchAll)
	if reason != "" {
		return Address{}, &Error{Input: s, Reason: reason}
	}
	return a, nil
}

// parseAddress does the work of Parse and ParseSource. It returns the
// canonical address, or a non-empty reason why s is refused.
func parseAddress(s string, catchAll bool) (Address, string) {
	if reason := checkInput(s); reason != "" {
		return Address{}, reason
	}
	// Angle brackets delimit an SMTP path (RFC 5321 §4.1.2); they are the
	// caller's protocol syntax, not part of the address, and a stray one
	// would end up in a stored alias.
	if strings.ContainsAny(s, "<>") {
		return Address{}, "contains '<' or '>'; angle brackets belong around an SMTP path, not inside an address"
	}
	// "@relay1,@relay2:user@domain" is an RFC 5321 source route. Honouring
	// one would make us an open relay and RFC 5321 §4.1.2 only asks servers
	// to ignore it; refusing is simpler than rewriting and leaves no doubt
	// about which domain is meant.
	if s[0] == '@' && strings.ContainsAny(s, ":,") {
		return Address{}, "source routes such as \"@relay:user@domain\" are not accepted"
	}
	// Quoted local parts (RFC 5322 §3.2.4) can carry spaces, '@', '/',
	// backslashes and anything else; they are rare in practice and a
	// standing source of confusion between systems, so postcove only
	// accepts the dot-atom form.
	if strings.ContainsRune(s, '"') {
		return Address{}, "quoted local parts are not accepted; only the dot-atom form is"
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, "missing '@'"
	}
	if strings.IndexByte(s, '@') != at {
		return Address{}, "contains more than one '@'"
	}
	local, domain := s[:at], s[at+1:]
	if domain == "" {
		return Address{}, "missing domain after '@'"
	}

	var a Address
	if local == "" {
		if !catchAll {
			return Address{}, "empty local part (\"@domain\" is only accepted as a catch-all alias source)"
		}
	} else {
		l, reason := canonicalLocal(local)
		if reason != "" {
			return Address{}, reason
		}
		a.Local = l
	}
	d, reason := canonicalDomain(domain)
	if reason != "" {
		return Address{}, reason
	}
	a.Domain = d

	if n := len(a.Local) + 1 + len(a.Domain); n > maxAddressLen {
		return Address{}, fmt.Sprintf("address is %d octets long, more than the %d allowed", n, maxAddressLen)
	}
	return a, ""
}

// checkInput applies the checks shared by addresses and domains to the raw
// input: it must be non-empty, bounded, valid UTF-8 and without surrounding
// whitespace.
func checkInput(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > maxInputLen {
		return fmt.Sprintf("input is %d octets long, far more than any valid address", len(s))
	}
	// Invalid UTF-8 cannot be normalised, compared or displayed reliably,
	// and RFC 6531 only extends the grammar to well-formed UTF-8.
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	// Trimming is the caller's decision: SMTP allows no whitespace around a
	// path, while a configuration file may. Silently trimming here would let
	// two different strings name the same stored entry.
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return "leading or trailing whitespace"
	}
	return ""
}

// StripTag removes a subaddress tag from the local part: for sep "+",
// "user+tag@domain" becomes "user@domain". Like postfix's
// recipient_delimiter, the local part is cut at the first occurrence of sep,
// so "a+b+c@d" becomes "a@d" and "a+@d" becomes "a@d".
//
// ok is false, and a is returned unchanged, when sep is empty, a is a
// catch-all source, the local part does not contain sep, sep is at the very
// start (the part before it would be empty, as in "+tag@d"), or the part
// before sep is not a valid local part on its own (as in "a.+tag@d", whose
// remainder "a." ends with a dot).
func (a Address) StripTag(sep string) (Address, bool) {
	if sep == "" || a.Local == "" {
		return a, false
	}
	i := strings.Index(a.Local, sep)
	if i <= 0 {
		return a, false
	}
	l, reason := canonicalLocal(a.Local[:i])
	if reason != "" {
		return a, false
	}
	return Address{Local: l, Domain: a.Domain}, true
}
