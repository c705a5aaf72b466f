package dnsrecord

import (
	"fmt"
	"strings"
)

// TLSRPT is the TXT record at _smtp._tls.DOMAIN that asks senders for
// reports about TLS failures (SMTP TLS Reporting, RFC 8460 §3).
type TLSRPT struct {
	// Reports are the rua addresses: mailto: or https: URIs.
	Reports []ReportURI
	// Extensions are the other fields, which senders ignore.
	Extensions []Tag
}

// IsTLSRPT reports whether txt is meant as a TLS-RPT record: it begins
// with "v=TLSRPTv1" (RFC 8460 §3).
func IsTLSRPT(txt string) bool { return strings.HasPrefix(txt, "v=TLSRPTv1") }

// ParseTLSRPT parses a TLS-RPT record. rua is required; its URIs must be
// mailto: or https:, the two ways RFC 8460 §3 defines to deliver reports.
func ParseTLSRPT(txt string) (*TLSRPT, error) {
	rua, ext, err := parseFields("tls-rpt", txt, "v=TLSRPTv1", "rua", "add rua=mailto:tls-reports@example.org")
	if err != nil {
		return nil, err
	}
	rec := &TLSRPT{Extensions: ext}
	uris, msg := parseReportURIs(rua.Value, false)
	if msg != "" {
		return nil, &Error{Record: "tls-rpt", Term: "rua", Pos: rua.Pos, Msg: msg}
	}
	for _, u := range uris {
		if u.Scheme != "mailto" && u.Scheme != "https" {
			return nil, &Error{Record: "tls-rpt", Term: "rua", Pos: rua.Pos,
				Msg: fmt.Sprintf("%q: senders deliver reports only to mailto: and https: URIs", u.URI)}
		}
	}
	rec.Reports = uris
	return rec, nil
}
