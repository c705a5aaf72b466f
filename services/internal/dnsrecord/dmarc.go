package dnsrecord

import (
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
)

// DMARC is a DMARC policy record (RFC 7489 §6.3). The embedded
// dmarc.Record holds the tag values as go-msgauth, the DMARC library the MTA
// uses, parses them, defaults included (adkim and aspf relaxed); the other
// fields add what a diagnostic needs and that parser leaves out.
type DMARC struct {
	dmarc.Record
	// Tags are the tags in record order, unknown ones included.
	Tags []Tag
	// AggregateReports and FailureReports are rua and ruf, parsed.
	AggregateReports []ReportURI
	FailureReports   []ReportURI
}

// dmarcTagHints says, for each tag whose value go-msgauth checks, what a
// valid value looks like (RFC 7489 §6.3).
var dmarcTagHints = map[string]string{
	"p":     "use none, quarantine or reject",
	"sp":    "use none, quarantine or reject",
	"adkim": "use r (relaxed) or s (strict)",
	"aspf":  "use r (relaxed) or s (strict)",
	"pct":   "use a whole number from 0 to 100",
	"fo":    "use 0, 1, d or s, several separated by colons",
	"rf":    "use afrf",
	"ri":    "use a number of seconds greater than zero, such as 86400",
	"rua":   "",
	"ruf":   "",
	"v":     "",
}

// dmarcCaseInsensitive are the tags whose values are keywords, which the
// ABNF of RFC 7489 §6.4 makes case-insensitive but go-msgauth compares in
// lower case.
var dmarcCaseInsensitive = map[string]bool{"p": true, "sp": true, "adkim": true, "aspf": true, "fo": true, "rf": true}

// ParseDMARC parses a DMARC record. Errors (an *Error naming the tag) are
// what makes receivers ignore the record, so the domain has no DMARC
// policy; warnings are what receivers accept but probably is not what the
// operator meant (unknown tags, which receivers ignore, RFC 7489 §6.3).
func ParseDMARC(txt string) (*DMARC, []Warning, error) {
	tags, err := parseTagList("dmarc", txt)
	if err != nil {
		return nil, nil, err
	}
	// RFC 7489 §6.3: v must be the first tag, and its value is
	// case-sensitive (§6.4 spells it with %x codes).
	if len(tags) == 0 || tags[0].Name != "v" {
		return nil, nil, &Error{Record: "dmarc", Pos: -1, Msg: `a DMARC record starts with "v=DMARC1"`}
	}
	if tags[0].Value != "DMARC1" {
		return nil, nil, &Error{Record: "dmarc", Term: "v", Pos: tags[0].Pos,
			Msg: fmt.Sprintf("version %q is unknown: write v=DMARC1 (in upper case)", tags[0].Value)}
	}

	rec := &DMARC{Tags: tags}
	var ws []Warning
	var canon []string // the known tags, for go-msgauth
	byName := map[string]Tag{}
	for _, t := range tags {
		byName[t.Name] = t
		if _, known := dmarcTagHints[t.Name]; !known {
			ws = append(ws, Warning{Term: t.Name, Pos: t.Pos, Msg: unknownDMARCTag(t.Name)})
			continue
		}
		v := t.Value
		switch {
		case dmarcCaseInsensitive[t.Name] && v != strings.ToLower(v):
			v = strings.ToLower(v)
			ws = append(ws, Warning{Term: t.Name, Pos: t.Pos,
				Msg: fmt.Sprintf("%q is valid but some receivers only understand lower case: write %s=%s", t.Value, t.Name, v)})
		case (t.Name == "pct" || t.Name == "ri") && !allDigits(v):
			return nil, nil, &Error{Record: "dmarc", Term: t.Name, Pos: t.Pos,
				Msg: fmt.Sprintf("%q is not valid: %s", t.Value, dmarcTagHints[t.Name])}
		case t.Name == "rua" || t.Name == "ruf":
			uris, msg := parseReportURIs(v, true)
			if msg != "" {
				return nil, nil, &Error{Record: "dmarc", Term: t.Name, Pos: t.Pos, Msg: msg}
			}
			for _, u := range uris {
				if u.Scheme != "mailto" {
					ws = append(ws, Warning{Term: t.Name, Pos: t.Pos,
						Msg: fmt.Sprintf("%q: receivers send reports by mail only (RFC 7489 §7.1 requires only mailto:); use a mailto: address", u.URI)})
				}
			}
			if t.Name == "rua" {
				rec.AggregateReports = uris
			} else {
				rec.FailureReports = uris
			}
		}
		canon = append(canon, t.Name+"="+v)
	}
	// The values are go-msgauth's to judge; its errors name the tag.
	r, err := dmarc.Parse(strings.Join(canon, "; "))
	if err != nil {
		name := msgauthParam(err)
		t, present := byName[name]
		switch {
		case present:
			return nil, nil, &Error{Record: "dmarc", Term: t.Name, Pos: t.Pos,
				Msg: fmt.Sprintf("%q is not valid: %s", t.Value, dmarcTagHints[t.Name])}
		case name == "p":
			return nil, nil, &Error{Record: "dmarc", Pos: -1,
				Msg: "the policy tag p is missing: add p=none to only collect reports, p=quarantine or p=reject"}
		}
		return nil, nil, &Error{Record: "dmarc", Pos: -1, Msg: "rejected by go-msgauth", Err: err}
	}
	rec.Record = *r
	return rec, ws, nil
}

// msgauthParam returns the tag named in a go-msgauth dmarc error, which
// quotes it: "dmarc: invalid policy for parameter 'sp'".
func msgauthParam(err error) string {
	_, rest, ok := strings.Cut(err.Error(), "'")
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, "'")
	if !ok {
		return ""
	}
	return name
}

// unknownDMARCTag explains an unknown tag, guessing the one meant.
func unknownDMARCTag(name string) string {
	for known := range dmarcTagHints {
		if strings.EqualFold(name, known) {
			return fmt.Sprintf("unknown tag, which receivers ignore: tag names are case-sensitive, write %s", known)
		}
	}
	return "unknown tag, which receivers ignore: the tags are v, p, sp, rua, ruf, adkim, aspf, pct, fo, rf and ri"
}
