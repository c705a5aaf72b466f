package dnsrecord

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postcove/postcove/services/internal/address"
)

// MTASTS is the TXT record at _mta-sts.DOMAIN (RFC 8461 §3.1). It only
// announces that a policy exists; the policy itself is served over HTTPS
// and parsed by ParseMTASTSPolicy.
type MTASTS struct {
	// ID changes whenever the policy changes, so that senders fetch it
	// again: 1 to 32 letters and digits.
	ID string
	// Extensions are the other fields, which senders ignore.
	Extensions []Tag
}

// IsMTASTS reports whether txt is meant as an MTA-STS record: senders
// discard TXT records at _mta-sts that do not begin with "v=STSv1" (RFC
// 8461 §3.1).
func IsMTASTS(txt string) bool { return strings.HasPrefix(txt, "v=STSv1") }

// ParseMTASTS parses an _mta-sts TXT record.
func ParseMTASTS(txt string) (*MTASTS, error) {
	id, ext, err := parseFields("mta-sts", txt, "v=STSv1", "id", "add id=, changed whenever the policy changes")
	if err != nil {
		return nil, err
	}
	rec := &MTASTS{Extensions: ext}
	if len(id.Value) > 32 || !isAlnum(id.Value) {
		return nil, &Error{Record: "mta-sts", Term: "id", Pos: id.Pos,
			Msg: fmt.Sprintf("%q is not valid: the id is 1 to 32 letters and digits, such as 20250101T000000", id.Value)}
	}
	rec.ID = id.Value
	return rec, nil
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlpha(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// MTASTSPolicy is the policy file served at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.2).
type MTASTSPolicy struct {
	// Mode is "enforce", "testing" or "none".
	Mode string
	// MX are the patterns the MX hosts must match: a domain, or
	// "*.domain" matching one more label (§4.1).
	MX []string
	// MaxAge is how long senders may cache the policy, at most a year.
	MaxAge time.Duration
	// Extensions are the other fields, which senders ignore.
	Extensions []Tag
}

// maxMTASTSAge is the largest max_age, 31557600 seconds (RFC 8461 §3.2).
const maxMTASTSAge = 31557600

// ParseMTASTSPolicy parses a policy file: "key: value" lines ending in LF
// or CRLF. version, mode and max_age are required, mx too unless the mode
// is none; of a repeated field other than mx the first counts (§3.2).
func ParseMTASTSPolicy(body string) (*MTASTSPolicy, error) {
	const rec = "mta-sts policy"
	pol := &MTASTSPolicy{}
	seen := map[string]bool{}
	lines := strings.Split(body, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // the final line ending
	}
	pos := 0
	for n, raw := range lines {
		linePos := pos
		pos += len(raw) + 1
		line := strings.TrimSuffix(raw, "\r")
		if line == "" {
			return nil, &Error{Record: rec, Pos: -1, Msg: fmt.Sprintf("line %d is empty: write one \"key: value\" per line", n+1)}
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, &Error{Record: rec, Term: line, Pos: linePos, Msg: `not a "key: value" line`}
		}
		if msg := fieldNameProblem(key); msg != "" {
			return nil, &Error{Record: rec, Term: line, Pos: linePos, Msg: msg}
		}
		value = strings.Trim(value, " \t")
		fail := func(format string, args ...any) error {
			return &Error{Record: rec, Term: key, Pos: linePos, Msg: fmt.Sprintf(format, args...)}
		}
		first := !seen[key]
		seen[key] = true
		switch key {
		case "version":
			if value != "STSv1" {
				return nil, fail("%q is not valid: write version: STSv1", value)
			}
		case "mode":
			if value != "enforce" && value != "testing" && value != "none" {
				return nil, fail("%q is not valid: use enforce, testing or none (lower case)", value)
			}
			if first {
				pol.Mode = value
			}
		case "max_age":
			n, err := strconv.Atoi(value)
			if !allDigits(value) || len(value) > 10 || err != nil || n > maxMTASTSAge {
				return nil, fail("%q is not valid: give seconds, at most %d (a year); 604800 (a week) is common", value, maxMTASTSAge)
			}
			if first {
				pol.MaxAge = time.Duration(n) * time.Second
			}
		case "mx":
			if msg := mxPatternProblem(value); msg != "" {
				return nil, fail("%s", msg)
			}
			pol.MX = append(pol.MX, value)
		default:
			if value == "" {
				return nil, fail("the value is empty")
			}
			pol.Extensions = append(pol.Extensions, Tag{Name: key, Value: value, Pos: linePos})
		}
	}
	for _, key := range []string{"version", "mode", "max_age"} {
		if !seen[key] {
			return nil, &Error{Record: rec, Pos: -1, Msg: fmt.Sprintf("the %s field is missing", key)}
		}
	}
	if len(pol.MX) == 0 && pol.Mode != "none" {
		return nil, &Error{Record: rec, Pos: -1, Msg: "no mx field: list each MX host (or *.domain pattern) on an mx: line"}
	}
	return pol, nil
}

// mxPatternProblem checks ["*."] Domain, in A-labels (RFC 8461 §3.2).
func mxPatternProblem(v string) string {
	d := strings.TrimPrefix(v, "*.")
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			return fmt.Sprintf("%q: write the domain in ASCII (punycode, xn--...)", v)
		}
	}
	if _, err := address.ParseDomain(d); err != nil || strings.HasSuffix(d, ".") {
		return fmt.Sprintf("%q is not a host name or *.domain pattern", v)
	}
	return ""
}
