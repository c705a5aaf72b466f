package address

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// atextSymbols are the RFC 5322 §3.2.3 atext symbols that postcove accepts
// in a local part. '!', '%' and '/' are atext as well but are refused; see
// asciiLocalReason.
const atextSymbols = "#$&'*+-=?^_`{|}~"

// canonicalLocal validates the local part s and returns its canonical form,
// or a non-empty reason why it is refused.
func canonicalLocal(s string) (string, string) {
	// Validate what the user wrote first, so that the reason names the
	// character they typed.
	if reason := checkLocal(s); reason != "" {
		return "", reason
	}
	c := foldLocal(s)
	// NFC and case mapping can turn an accepted character into a different
	// one (U+212A KELVIN SIGN becomes "k"); check the result again so that
	// the canonical form always satisfies the same rules as the input.
	if reason := checkLocal(c); reason != "" {
		return "", "after normalisation, " + reason
	}
	// Lower-casing after NFC may in principle leave a string that is not
	// fixed under another round; refuse rather than store a name that
	// another lookup would canonicalise differently.
	if foldLocal(c) != c {
		return "", "local part has no stable canonical form"
	}
	if len(c) > maxLocalLen {
		return "", fmt.Sprintf("local part is %d octets long, more than the %d allowed", len(c), maxLocalLen)
	}
	return c, ""
}

// foldLocal returns the canonical spelling of a local part: NFC, so that
// precomposed and decomposed accents are the same name, then lower case,
// because postcove treats local parts case-insensitively, then NFC again
// because case mapping does not preserve normalisation in general.
func foldLocal(s string) string {
	return norm.NFC.String(strings.ToLower(norm.NFC.String(s)))
}

// checkLocal reports why s is not an acceptable local part, or "" if it is.
func checkLocal(s string) string {
	switch {
	case s == "":
		return "empty local part"
	// "." and ".." would name the directory itself or its parent in any
	// path built from the local part.
	case s == "." || s == "..":
		return fmt.Sprintf("local part %q is a relative path component", s)
	// Dot-atom (RFC 5322 §3.4.1) forbids a leading dot; a file name that
	// starts with one is also hidden and may collide with Maildir's own
	// entries such as ".Sent".
	case s[0] == '.':
		return "local part starts with '.'"
	case s[len(s)-1] == '.':
		return "local part ends with '.'"
	// Dot-atom forbids empty atoms, and ".." is a parent-directory
	// reference wherever the string ends up in a path.
	case strings.Contains(s, ".."):
		return "local part contains '..'"
	}
	var prev rune
	for _, r := range s {
		if reason := localRuneReason(r, prev); reason != "" {
			return reason
		}
		prev = r
	}
	return ""
}

// localRuneReason reports why r may not appear in a local part after prev
// (0 at the start), or "" if it may.
func localRuneReason(r, prev rune) string {
	if reason := invisibleReason(r); reason != "" {
		return reason
	}
	if r < utf8.RuneSelf {
		return asciiLocalReason(r)
	}
	switch {
	case unicode.IsLetter(r), unicode.Is(unicode.Nd, r):
		return ""
	case unicode.IsMark(r):
		// A combining mark must extend a base character; at the start or
		// after a dot or symbol it would visually merge with the
		// punctuation and make, say, "a.́b" look like "a.b".
		if isBase(prev) {
			return ""
		}
		return fmt.Sprintf("combining mark %U does not follow a letter or digit", r)
	case unicode.Is(unicode.Co, r):
		return fmt.Sprintf("contains private-use character %U", r)
	case unicode.Is(unicode.Cn, r):
		return fmt.Sprintf("contains unassigned code point %U", r)
	}
	// Punctuation, symbols (including emoji) and non-decimal numbers are
	// refused: RFC 6531 would allow them, but they include many look-alikes
	// of '.', '/', '@' and the like (U+2024, U+2215, U+FF20) and nobody
	// needs them in a mailbox name.
	return fmt.Sprintf("contains %U, which is not a letter or digit", r)
}

// isBase reports whether a combining mark may follow r.
func isBase(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Nd, r) || unicode.IsMark(r)
}

// invisibleReason refuses characters that cannot be seen or that are not
// text at all. It is shared by local parts and domains.
func invisibleReason(r rune) string {
	switch {
	// NUL terminates strings in C, in many databases and in system calls;
	// "a\x00b" could be stored as "a\x00b" and opened as "a".
	case r == 0:
		return "contains a NUL byte"
	// Whitespace and line breaks (including U+2028 and U+2029) separate
	// protocol tokens and header lines; they are never part of an
	// unquoted address.
	case unicode.IsSpace(r), unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp):
		return fmt.Sprintf("contains whitespace or a line break (%U)", r)
	// C0, DEL and C1 control characters can end or rewrite protocol lines
	// and terminal output.
	case unicode.IsControl(r):
		return fmt.Sprintf("contains control character %U", r)
	// Format characters (zero-width spaces and joiners, bidi marks and
	// overrides, soft hyphen, tags, ...), variation selectors and the
	// other default-ignorable code points are invisible: they let two
	// addresses that render identically be different mailboxes, and bidi
	// overrides can make an address display as a different one.
	case unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point):
		return fmt.Sprintf("contains invisible formatting character %U", r)
	}
	return ""
}

// asciiLocalReason reports why the ASCII character r may not appear in a
// local part, or "" if it may.
func asciiLocalReason(r rune) string {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.':
		return ""
	case strings.ContainsRune(atextSymbols, r):
		return ""
	}
	switch r {
	// Path separators: the mailbox service turns local parts into
	// directory names.
	case '/':
		return "contains '/', which would act as a path separator"
	case '\\':
		return "contains '\\', which is a path separator on some systems and an escape character in quoted strings"
	// user%host@relay asks the receiving MTA to forward to host: the
	// "percent hack", a classic open-relay vector.
	case '%':
		return "contains '%' (the percent-hack relay syntax user%host@relay is not accepted)"
	// host!user is a UUCP bang path, another way to request relaying.
	case '!':
		return "contains '!' (UUCP bang paths such as host!user are not accepted)"
	// ':' ends the relay list of a source route and introduces RFC 5322
	// groups; ',' and ';' separate addresses in lists and groups.
	case ':':
		return "contains ':' (source-route and group syntax is not accepted)"
	case ',', ';':
		return fmt.Sprintf("contains %q (address-list syntax is not accepted)", r)
	case '<', '>':
		return fmt.Sprintf("contains %q; angle brackets belong around an SMTP path, not inside an address", r)
	case '"':
		return "quoted local parts are not accepted; only the dot-atom form is"
	case '(', ')':
		return "contains a parenthesis (RFC 5322 comments are not accepted)"
	case '[', ']':
		return fmt.Sprintf("contains %q, which is not allowed in a local part", r)
	case '@':
		return "contains more than one '@'"
	}
	return fmt.Sprintf("contains %q, which is not allowed in a local part", r)
}
