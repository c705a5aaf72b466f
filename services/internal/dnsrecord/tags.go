package dnsrecord

import (
	"fmt"
	"strings"
)

// Tag is one name=value pair of a record.
type Tag struct {
	Name  string
	Value string // white space around it removed
	Pos   int    // byte offset of Name in the record
}

// parseTagList splits s with the tag-list syntax of DKIM (RFC 6376 §3.2),
// which DMARC records reuse (RFC 7489 §6.4):
//
//	tag-list  = tag-spec *( ";" tag-spec ) [ ";" ]
//	tag-spec  = [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
//	tag-name  = ALPHA *ALNUMPUNC
//	tag-value = [ tval *( 1*(WSP / FWS) tval ) ]   ; tval = 1*(%x21-3A / %x3C-7E)
//
// Tag names are case-sensitive. A duplicated tag makes the whole list
// invalid (§3.2). Empty tag-specs (";;") are not in the grammar but are
// skipped, as go-msgauth and most receivers do, so that a diagnostic does
// not fail a record that works everywhere.
func parseTagList(record, s string) ([]Tag, error) {
	var tags []Tag
	seen := map[string]int{}
	for start := 0; start <= len(s); {
		end := start
		for end < len(s) && s[end] != ';' {
			end++
		}
		seg := s[start:end]
		next := end + 1
		// Trim the segment, keeping track of where it starts.
		i, j := 0, len(seg)
		for i < j && isWSP(seg[i]) {
			i++
		}
		for j > i && isWSP(seg[j-1]) {
			j--
		}
		pos := start + i
		spec := seg[i:j]
		start = next
		if spec == "" {
			continue
		}
		eq := -1
		for k := 0; k < len(spec); k++ {
			if spec[k] == '=' {
				eq = k
				break
			}
		}
		if eq < 0 {
			return nil, &Error{Record: record, Term: spec, Pos: pos, Msg: "not a tag=value pair"}
		}
		name := spec[:eq]
		for len(name) > 0 && isWSP(name[len(name)-1]) {
			name = name[:len(name)-1]
		}
		if msg := tagNameProblem(name); msg != "" {
			return nil, &Error{Record: record, Term: spec, Pos: pos, Msg: msg}
		}
		value := spec[eq+1:]
		for len(value) > 0 && isWSP(value[0]) {
			value = value[1:]
		}
		for k := 0; k < len(value); k++ {
			c := value[k]
			if !isWSP(c) && (c < 0x21 || c > 0x7e) {
				return nil, &Error{Record: record, Term: name, Pos: pos,
					Msg: fmt.Sprintf("the value contains %q: only printable ASCII is allowed", c)}
			}
		}
		if first, dup := seen[name]; dup {
			return nil, &Error{Record: record, Term: name, Pos: pos,
				Msg: fmt.Sprintf("appears twice (first at position %d), which makes the whole record invalid", first)}
		}
		seen[name] = pos
		tags = append(tags, Tag{Name: name, Value: value, Pos: pos})
	}
	return tags, nil
}

// tagNameProblem checks tag-name = ALPHA *(ALPHA / DIGIT / "_").
func tagNameProblem(name string) string {
	if name == "" {
		return "the tag name before \"=\" is missing"
	}
	if !isAlpha(name[0]) {
		return fmt.Sprintf("tag name %q must start with a letter", name)
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !isDigit(c) && c != '_' {
			return fmt.Sprintf("tag name %q may contain only letters, digits and \"_\"", name)
		}
	}
	return ""
}

// parseFieldList splits the records of MTA-STS (RFC 8461 §3.1) and TLS-RPT
// (RFC 8460 §3), which share one shape and, unlike DKIM tag-lists, are
// case-sensitive and allow no white space around "=":
//
//	record    = version 1*(field-sep field) [field-sep]
//	field-sep = *WSP ";" *WSP
//	field     = name "=" value        ; name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//
// The values are returned unchecked but non-empty. A field given twice is
// an error: receivers disagree on which one counts.
func parseFieldList(record, txt, version string) ([]Tag, error) {
	var tags []Tag
	seen := map[string]bool{}
	start := 0
	for n := 0; start <= len(txt); n++ {
		end := start
		for end < len(txt) && txt[end] != ';' {
			end++
		}
		i, j := start, end
		for i < j && (txt[i] == ' ' || txt[i] == '\t') {
			i++
		}
		for j > i && (txt[j-1] == ' ' || txt[j-1] == '\t') {
			j--
		}
		field := txt[i:j]
		start = end + 1
		if n == 0 {
			// The version comes first, without white space before it.
			if i != 0 || field != version {
				return nil, &Error{Record: record, Pos: -1, Msg: fmt.Sprintf("the record must start with %q followed by \";\" (case-sensitive)", version)}
			}
			continue
		}
		if field == "" {
			if end == len(txt) {
				break // one trailing separator is allowed
			}
			return nil, &Error{Record: record, Pos: i, Term: ";", Msg: "an empty field: separate fields with a single \";\""}
		}
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			return nil, &Error{Record: record, Term: field, Pos: i, Msg: "not a name=value field"}
		}
		if msg := fieldNameProblem(name); msg != "" {
			return nil, &Error{Record: record, Term: field, Pos: i, Msg: msg}
		}
		if value == "" {
			return nil, &Error{Record: record, Term: name, Pos: i, Msg: "the value is empty"}
		}
		if seen[name] {
			return nil, &Error{Record: record, Term: name, Pos: i, Msg: "appears twice: receivers disagree on which one counts; keep one"}
		}
		seen[name] = true
		tags = append(tags, Tag{Name: name, Value: value, Pos: i})
	}
	if len(tags) == 0 {
		return nil, &Error{Record: record, Pos: -1, Msg: fmt.Sprintf("the record has no field after %q", version)}
	}
	return tags, nil
}

// fieldNameProblem checks (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."),
// the extension field names of RFC 8461 §3.1 and §3.2 and RFC 8460 §3.
func fieldNameProblem(name string) string {
	if name == "" || !isAlpha(name[0]) && !isDigit(name[0]) {
		return fmt.Sprintf("field name %q must start with a letter or digit", name)
	}
	if len(name) > 32 {
		return fmt.Sprintf("field name %q is longer than 32 characters", name)
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' {
			return fmt.Sprintf("field name %q may contain only letters, digits, \"_\", \"-\" and \".\"", name)
		}
	}
	return ""
}

// extValueProblem checks an extension value: 1*(%x21-3A / %x3C / %x3E-7E),
// printable ASCII without ";" and "=".
func extValueProblem(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return fmt.Sprintf("the value contains %q: only printable ASCII without \";\" and \"=\" is allowed", c)
		}
	}
	return ""
}

// parseFields parses a record of the parseFieldList shape that defines
// one field, name, which is required (missing says what to add). It
// returns that field and the others, extensions that senders ignore (RFC
// 8461 §3.1 sts-extension, RFC 8460 §3 tlsrpt-extension), whose values it
// checks.
func parseFields(record, txt, version, name, missing string) (Tag, []Tag, error) {
	tags, err := parseFieldList(record, txt, version)
	if err != nil {
		return Tag{}, nil, err
	}
	var known *Tag
	var ext []Tag
	for i, t := range tags {
		if t.Name == name {
			known = &tags[i]
			continue
		}
		if msg := extValueProblem(t.Value); msg != "" {
			return Tag{}, nil, &Error{Record: record, Term: t.Name, Pos: t.Pos, Msg: msg}
		}
		ext = append(ext, t)
	}
	if known == nil {
		return Tag{}, nil, &Error{Record: record, Pos: -1, Msg: fmt.Sprintf("the %s field is missing: %s", name, missing)}
	}
	return *known, ext, nil
}
