package dnsrecord

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SPF is the structure of an SPF record (RFC 7208 §4.5, §12 ABNF):
// directives in record order, the redirect and exp modifiers and any unknown
// modifiers. It says nothing about whether a host is authorised; that is
// check_host() (§4), which belongs to an SPF library.
type SPF struct {
	Mechanisms []Mechanism
	// Redirect and Exp are the domain-specs of the redirect= and exp=
	// modifiers (§6.1, §6.2), empty when absent. Each may appear once.
	Redirect    string
	RedirectPos int // -1 when absent
	Exp         string
	ExpPos      int // -1 when absent
	// Modifiers are the unknown modifiers, which receivers ignore (§6) but
	// which are kept here because they are often typos ("ip4=192.0.2.1").
	Modifiers []Modifier
}

// Qualifier is the result a directive gives when its mechanism matches
// (RFC 7208 §4.6.2).
type Qualifier byte

// The qualifiers, by their symbol in the record.
const (
	QualifierPass     Qualifier = '+'
	QualifierFail     Qualifier = '-'
	QualifierSoftFail Qualifier = '~'
	QualifierNeutral  Qualifier = '?'
)

// String returns the symbol: "+", "-", "~" or "?".
func (q Qualifier) String() string { return string(rune(q)) }

// Result returns the name of the result the qualifier gives (§2.6): "pass",
// "fail", "softfail" or "neutral".
func (q Qualifier) Result() string {
	switch q {
	case QualifierFail:
		return "fail"
	case QualifierSoftFail:
		return "softfail"
	case QualifierNeutral:
		return "neutral"
	}
	return "pass"
}

// Mechanism is one directive: a qualifier and a mechanism (RFC 7208 §5).
type Mechanism struct {
	Qualifier Qualifier // QualifierPass when the record has none
	// Name is the mechanism in lower case: "all", "include", "a", "mx",
	// "ptr", "ip4", "ip6" or "exists".
	Name string
	// Domain is the domain-spec as written (it may contain macros, §7):
	// always set for include and exists, optional for a, mx and ptr.
	Domain string
	// Network is the network of ip4 and ip6; a bare address has the full
	// prefix length. The address keeps the host bits as written.
	Network netip.Prefix
	// CIDR4 and CIDR6 are the prefix lengths of a and mx (the
	// dual-cidr-length of §5.6): 32 and 128 unless given.
	CIDR4, CIDR6 int
	Term         string // as written, with its qualifier
	Pos          int    // byte offset of Term in the record
}

// Modifier is an unknown name=value modifier (RFC 7208 §6).
type Modifier struct {
	Name  string // lower case
	Value string
	Pos   int
}

// lookupMechanisms are the mechanisms that cost a DNS query, which RFC
// 7208 §4.6.4 limits to 10 per evaluation (redirect counts too).
var lookupMechanisms = map[string]bool{"include": true, "a": true, "mx": true, "ptr": true, "exists": true}

// LooksUp reports whether the mechanism causes a DNS query that counts
// towards the limit of 10 (RFC 7208 §4.6.4).
func (m Mechanism) LooksUp() bool { return lookupMechanisms[m.Name] }

// Target returns the domain the mechanism queries when the record belongs
// to domain: Domain, or domain itself when the mechanism has none, in lower
// case and without a trailing dot. ok is false when Domain contains macros,
// which only an evaluation can expand.
func (m Mechanism) Target(domain string) (target string, ok bool) {
	if m.Domain == "" {
		return domain, true
	}
	if strings.Contains(m.Domain, "%") {
		return "", false
	}
	return strings.ToLower(strings.TrimSuffix(m.Domain, ".")), true
}

// RedirectTarget returns the domain the redirect modifier names when the
// record belongs to domain, like Mechanism.Target. ok is false without a
// redirect or when it contains macros.
func (rec *SPF) RedirectTarget(domain string) (target string, ok bool) {
	if rec.Redirect == "" {
		return "", false
	}
	return Mechanism{Domain: rec.Redirect}.Target(domain)
}

// IsSPF reports whether txt is an SPF record by the selection rule of RFC
// 7208 §4.5: it begins with "v=spf1" (case-insensitive, as ABNF strings
// are) followed by a space or the end of the record. TXT records that are
// not SPF are ignored, so ParseSPF is only meaningful when IsSPF is true.
func IsSPF(txt string) bool {
	const v = "v=spf1"
	return len(txt) >= len(v) && strings.EqualFold(txt[:len(v)], v) && (len(txt) == len(v) || txt[len(v)] == ' ')
}

// ParseSPF parses an SPF record. Any syntax error is an *Error naming the
// term, which receivers treat as a permerror (RFC 7208 §4.6): the domain
// then has no usable SPF at all.
func ParseSPF(txt string) (*SPF, error) {
	if !IsSPF(txt) {
		return nil, &Error{Record: "spf", Pos: -1, Msg: `an SPF record starts with "v=spf1" followed by a space`}
	}
	for i := 0; i < len(txt); i++ {
		if c := txt[i]; c < 0x20 || c > 0x7e {
			return nil, &Error{Record: "spf", Term: termAt(txt, i), Pos: termStart(txt, i),
				Msg: fmt.Sprintf("contains %q: an SPF record is printable ASCII with terms separated by spaces", c)}
		}
	}
	rec := &SPF{RedirectPos: -1, ExpPos: -1}
	i := len("v=spf1")
	for i < len(txt) {
		for i < len(txt) && txt[i] == ' ' {
			i++
		}
		start := i
		for i < len(txt) && txt[i] != ' ' {
			i++
		}
		if start == i {
			break
		}
		if err := rec.parseTerm(txt[start:i], start); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// termStart and termAt locate the space-separated term around offset i.
func termStart(s string, i int) int {
	for i > 0 && s[i-1] != ' ' {
		i--
	}
	return i
}

func termAt(s string, i int) string {
	start := termStart(s, i)
	end := i
	for end < len(s) && s[end] != ' ' {
		end++
	}
	return s[start:end]
}

func (rec *SPF) parseTerm(term string, pos int) error {
	fail := func(format string, args ...any) error {
		return &Error{Record: "spf", Term: term, Pos: pos, Msg: fmt.Sprintf(format, args...)}
	}
	q, rest, explicit := QualifierPass, term, false
	switch term[0] {
	case '+', '-', '~', '?':
		q, rest, explicit = Qualifier(term[0]), term[1:], true
	}
	k := strings.IndexAny(rest, ":/=")
	if k < 0 {
		k = len(rest)
	}
	name := strings.ToLower(rest[:k])
	sep := byte(0)
	if k < len(rest) {
		sep = rest[k]
	}

	if sep == '=' {
		if explicit {
			return fail("a modifier (name=value) takes no qualifier")
		}
		return rec.parseModifier(term, pos, name, rest[k+1:], fail)
	}

	m := Mechanism{Qualifier: q, Name: name, CIDR4: 32, CIDR6: 128, Term: term, Pos: pos}
	arg := rest[k:]
	switch name {
	case "all":
		if arg != "" {
			return fail("all takes no domain or network")
		}
	case "include", "exists":
		if sep != ':' || len(arg) == 1 {
			return fail("%s needs a domain: %s:example.org", name, name)
		}
		m.Domain = arg[1:]
		if msg := domainSpecProblem(m.Domain); msg != "" {
			return fail("%s", msg)
		}
	case "ptr":
		if sep == '/' {
			return fail("ptr takes no CIDR length")
		}
		if sep == ':' {
			m.Domain = arg[1:]
			if msg := domainSpecProblem(m.Domain); msg != "" {
				return fail("%s", msg)
			}
		}
	case "a", "mx":
		if sep == ':' {
			d, cidr := splitMacroAware(arg[1:], '/')
			m.Domain, arg = d, cidr
			if msg := domainSpecProblem(m.Domain); msg != "" {
				return fail("%s", msg)
			}
		}
		var msg string
		m.CIDR4, m.CIDR6, msg = parseDualCIDR(arg)
		if msg != "" {
			return fail("%s", msg)
		}
	case "ip4", "ip6":
		if sep != ':' || len(arg) == 1 {
			return fail("%s needs a network: %s", name, map[string]string{"ip4": "ip4:192.0.2.0/24", "ip6": "ip6:2001:db8::/32"}[name])
		}
		var msg string
		m.Network, msg = parseSPFNetwork(name, arg[1:])
		if msg != "" {
			return fail("%s", msg)
		}
	case "":
		return fail("a qualifier must be followed by a mechanism")
	default:
		if hint, ok := mechanismTypos[name]; ok {
			return fail("unknown mechanism %q: %s", name, hint)
		}
		return fail("unknown mechanism %q: the mechanisms are all, include, a, mx, ptr, ip4, ip6 and exists", name)
	}
	rec.Mechanisms = append(rec.Mechanisms, m)
	return nil
}

// mechanismTypos are misspellings seen in the wild, with what to write.
var mechanismTypos = map[string]string{
	"ipv4":     "write ip4:",
	"ipv6":     "write ip6:",
	"ip":       "write ip4: or ip6:",
	"includes": "write include:",
	"redirect": "redirect is a modifier: write redirect=example.org",
	"exp":      "exp is a modifier: write exp=explain.example.org",
	"v":        `"v=spf1" must be the first term, once`,
}

func (rec *SPF) parseModifier(term string, pos int, name, value string, fail func(string, ...any) error) error {
	if msg := modifierNameProblem(name); msg != "" {
		return fail("%s", msg)
	}
	switch name {
	case "redirect", "exp":
		if msg := domainSpecProblem(value); msg != "" {
			return fail("%s", msg)
		}
		// RFC 7208 §6: each may appear at most once, else permerror.
		if name == "redirect" {
			if rec.RedirectPos >= 0 {
				return fail("redirect appears twice; a record may have one")
			}
			rec.Redirect, rec.RedirectPos = value, pos
		} else {
			if rec.ExpPos >= 0 {
				return fail("exp appears twice; a record may have one")
			}
			rec.Exp, rec.ExpPos = value, pos
		}
	default:
		// Unknown modifiers are ignored by receivers, but their value must
		// still be a valid macro-string (§6, §7.1).
		if msg, _ := macroStringProblem(value, true); msg != "" {
			return fail("%s", msg)
		}
		rec.Modifiers = append(rec.Modifiers, Modifier{Name: name, Value: value, Pos: pos})
	}
	return nil
}

// modifierNameProblem checks name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
func modifierNameProblem(name string) string {
	if name == "" || !isAlpha(name[0]) {
		return fmt.Sprintf("modifier name %q must start with a letter", name)
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Sprintf("modifier name %q may contain only letters, digits, \"-\", \"_\" and \".\"", name)
		}
	}
	return ""
}

// splitMacroAware splits s at the first sep that is not inside a macro
// expansion "%{...}" (whose delimiters may include "/").
func splitMacroAware(s string, sep byte) (before, after string) {
	in := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && i+1 < len(s) && s[i+1] == '{':
			in = true
		case s[i] == '}':
			in = false
		case s[i] == sep && !in:
			return s[:i], s[i:]
		}
	}
	return s, ""
}

// parseDualCIDR parses dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ],
// that is "", "/N", "//N" or "/N//M".
func parseDualCIDR(s string) (c4, c6 int, problem string) {
	c4, c6 = 32, 128
	if s == "" {
		return c4, c6, ""
	}
	v4, v6, hasV6 := s, "", false
	if i := strings.Index(s, "//"); i >= 0 {
		v4, v6, hasV6 = s[:i], s[i+2:], true
	}
	if v4 != "" {
		n, msg := parseCIDRLength(strings.TrimPrefix(v4, "/"), 32)
		if msg != "" || !strings.HasPrefix(v4, "/") {
			return 0, 0, cidrProblem(s, msg)
		}
		c4 = n
	}
	if hasV6 {
		n, msg := parseCIDRLength(v6, 128)
		if msg != "" {
			return 0, 0, cidrProblem(s, msg)
		}
		c6 = n
	}
	return c4, c6, ""
}

func cidrProblem(s, msg string) string {
	if msg == "" {
		msg = "write /N for IPv4, //N for IPv6 or /N//M for both"
	}
	return fmt.Sprintf("bad CIDR length %q: %s", s, msg)
}

// parseCIDRLength parses a prefix length: digits without a leading zero
// ("0" / %x31-39 0*2DIGIT), at most max.
func parseCIDRLength(s string, max int) (int, string) {
	if !allDigits(s) || len(s) > 3 {
		return 0, "the length must be a number"
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, "no leading zeros"
	}
	n, _ := strconv.Atoi(s)
	if n > max {
		return 0, fmt.Sprintf("at most %d", max)
	}
	return n, ""
}

// parseSPFNetwork parses the argument of ip4 (ip4-network [ip4-cidr-length])
// or ip6 (ip6-network [ip6-cidr-length]).
func parseSPFNetwork(name, s string) (netip.Prefix, string) {
	addrText, cidr, _ := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrText)
	switch {
	case err != nil || addr.Zone() != "":
		return netip.Prefix{}, fmt.Sprintf("%q is not an IP address", addrText)
	case name == "ip4" && !addr.Is4():
		return netip.Prefix{}, fmt.Sprintf("%q is not an IPv4 address: use ip6: for IPv6", addrText)
	case name == "ip6" && !addr.Is6():
		return netip.Prefix{}, fmt.Sprintf("%q is not an IPv6 address: use ip4: for IPv4", addrText)
	}
	bits := addr.BitLen()
	if strings.Contains(s, "/") {
		n, msg := parseCIDRLength(cidr, bits)
		if msg != "" {
			return netip.Prefix{}, fmt.Sprintf("bad CIDR length %q: %s", "/"+cidr, msg)
		}
		bits = n
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, err.Error()
	}
	// Keep the address as written: Addr.Prefix masks the host bits.
	return netip.PrefixFrom(addr, p.Bits()), ""
}

// domainSpecProblem checks domain-spec = macro-string domain-end, where
// domain-end = ( "." toplabel [ "." ] ) / macro-expand (RFC 7208 §7.1).
// The c, r and t macro letters are for explanation text only (§7.2).
func domainSpecProblem(s string) string {
	if s == "" {
		return "the domain is missing"
	}
	msg, endsWithMacro := macroStringProblem(s, false)
	if msg != "" {
		return msg
	}
	if endsWithMacro {
		return ""
	}
	trimmed := strings.TrimSuffix(s, ".")
	dot := strings.LastIndexByte(trimmed, '.')
	if dot < 0 {
		return fmt.Sprintf("%q is not a fully qualified domain name", s)
	}
	if msg := toplabelProblem(trimmed[dot+1:]); msg != "" {
		return fmt.Sprintf("%q does not end in a valid top-level label: %s", s, msg)
	}
	if strings.Contains(s, "%") {
		return ""
	}
	// Without macros the domain is queried as it is, so it must be a
	// usable DNS name (RFC 1035 §2.3.4).
	if len(trimmed) > 253 {
		return fmt.Sprintf("domain %q is longer than 253 characters", s)
	}
	for _, label := range strings.Split(trimmed, ".") {
		if label == "" {
			return fmt.Sprintf("domain %q has an empty label", s)
		}
		if len(label) > 63 {
			return fmt.Sprintf("domain %q has a label longer than 63 characters", s)
		}
	}
	return ""
}

// toplabelProblem checks toplabel = ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ): a top-level domain
// label that is not all digits, so "a:192.0.2.1" is refused (it wants
// ip4:).
func toplabelProblem(t string) string {
	if t == "" {
		return "it is empty"
	}
	letters := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case isAlpha(c):
			letters = true
		case isDigit(c):
		case c == '-' && i > 0 && i < len(t)-1:
			letters = true // the second alternative: digits with a hyphen inside
		default:
			return fmt.Sprintf("%q may contain only letters, digits and inner hyphens", t)
		}
	}
	if !letters {
		return fmt.Sprintf("%q is all digits (an IP address belongs in ip4: or ip6:)", t)
	}
	return ""
}

// macroStringProblem checks macro-string = *( macro-expand / macro-literal )
// (RFC 7208 §7.1) and reports whether it ends with a macro-expand. allLetters
// allows the c, r and t macro letters, which §7.2 restricts to explanation
// text.
func macroStringProblem(s string, allLetters bool) (problem string, endsWithMacro bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e {
				return fmt.Sprintf("%q is not allowed in a domain", c), false
			}
			i++
			endsWithMacro = false
			continue
		}
		if i+1 >= len(s) {
			return `a "%" must be followed by "{", "%", "_" or "-" (write "%%" for a literal percent sign)`, false
		}
		switch s[i+1] {
		case '%', '_', '-':
			i += 2
			endsWithMacro = true
			continue
		case '{':
		default:
			return fmt.Sprintf(`"%%%c" is not a macro: a "%%" must be followed by "{", "%%", "_" or "-"`, s[i+1]), false
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return fmt.Sprintf("macro %q is not closed with \"}\"", s[i:]), false
		}
		if msg := macroExpandProblem(s[i+2:i+end], allLetters); msg != "" {
			return fmt.Sprintf("macro %q: %s", s[i:i+end+1], msg), false
		}
		i += end + 1
		endsWithMacro = true
	}
	return "", endsWithMacro
}

// macroExpandProblem checks the inside of "%{...}": macro-letter
// transformers *delimiter, with transformers = *DIGIT [ "r" ].
func macroExpandProblem(s string, allLetters bool) string {
	if s == "" {
		return "a macro letter is missing"
	}
	letter := s[0] | 0x20 // upper case means URL-escaped, same letter (§7.3)
	switch {
	case strings.IndexByte("slodiphv", letter) >= 0:
	case strings.IndexByte("crt", letter) >= 0:
		if !allLetters {
			return fmt.Sprintf("macro letter %q is allowed only in explanation text", s[0])
		}
	default:
		return fmt.Sprintf("unknown macro letter %q: the letters are s, l, o, d, i, p, h, c, r, t and v", s[0])
	}
	i := 1
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if digits := s[1:i]; digits != "" {
		// §7.3: the number of labels to keep, which must be nonzero.
		n, err := strconv.Atoi(digits)
		if err != nil || n == 0 || n > 128 {
			return fmt.Sprintf("%q labels: the count must be between 1 and 128", digits)
		}
	}
	if i < len(s) && s[i]|0x20 == 'r' {
		i++
	}
	for ; i < len(s); i++ {
		if strings.IndexByte(".-+,/_=", s[i]) < 0 {
			return fmt.Sprintf("%q is not a delimiter: the delimiters are . - + , / _ =", s[i])
		}
	}
	return ""
}

// LookupTerms counts the terms of this record that cause DNS queries:
// include, a, mx, ptr, exists and redirect (RFC 7208 §4.6.4, at most 10 per
// evaluation, counted through included and redirected records too). redirect
// is not counted when the record has an all mechanism, because it is then
// never followed (§6.1).
func (rec *SPF) LookupTerms() int {
	n := 0
	for _, m := range rec.Mechanisms {
		if m.LooksUp() {
			n++
		}
	}
	if _, hasAll := rec.All(); rec.Redirect != "" && !hasAll {
		n++
	}
	return n
}

// All returns the qualifier of the record's all mechanism, and false when it
// has none (the result is then neutral, or that of the redirect target).
func (rec *SPF) All() (Qualifier, bool) {
	for _, m := range rec.Mechanisms {
		if m.Name == "all" {
			return m.Qualifier, true
		}
	}
	return 0, false
}

// Warnings lists what receivers accept but an operator should look at:
// unknown modifiers (typos), the ptr mechanism, terms that are never
// evaluated.
func (rec *SPF) Warnings() []Warning {
	var ws []Warning
	allPos := -1
	for _, m := range rec.Mechanisms {
		switch {
		case allPos >= 0:
			ws = append(ws, Warning{Term: m.Term, Pos: m.Pos,
				Msg: "never evaluated: it comes after all (RFC 7208 §5.1); move it before all or remove it"})
		case m.Name == "all":
			allPos = m.Pos
		case m.Name == "ptr":
			ws = append(ws, Warning{Term: m.Term, Pos: m.Pos,
				Msg: "ptr is slow and unreliable and RFC 7208 §5.5 says not to use it; list the addresses with ip4:/ip6: or use a or mx"})
		}
	}
	if rec.Redirect != "" && allPos >= 0 {
		ws = append(ws, Warning{Term: "redirect=" + rec.Redirect, Pos: rec.RedirectPos,
			Msg: "ignored because the record has an all mechanism (RFC 7208 §6.1); remove one of them"})
	}
	for _, m := range rec.Modifiers {
		msg := "an unknown modifier, which receivers ignore"
		switch {
		case m.Name == "v":
			msg = `a second "v=spf1": two records run together? Receivers ignore it; publish one record`
		case lookupMechanisms[m.Name] || m.Name == "ip4" || m.Name == "ip6" || m.Name == "all":
			msg = fmt.Sprintf("an unknown modifier, which receivers ignore: did you mean the mechanism %s:%s?", m.Name, m.Value)
		}
		ws = append(ws, Warning{Term: m.Name + "=" + m.Value, Pos: m.Pos, Msg: msg})
	}
	return ws
}
