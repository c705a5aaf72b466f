package dnsrecord

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/postcove/postcove/services/internal/address"
)

// ReportURI is a reporting address: DMARC's rua and ruf (RFC 7489 §6.4
// dmarc-uri) and TLS-RPT's rua (RFC 8460 §3).
type ReportURI struct {
	URI     string // as written, without DMARC's "!size" suffix
	Scheme  string // lower case: "mailto", "https", ...
	Address string // for mailto: the address in canonical form
	Host    string // for https: the host
	MaxSize uint64 // DMARC's "!size" limit in bytes, 0 when none
}

// sizeUnits are the multipliers of the DMARC size suffix (RFC 7489 §6.2:
// k, m, g and t are powers of two).
var sizeUnits = map[byte]uint64{'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}

// parseReportURIs parses a comma-separated list of URIs. withSize allows
// DMARC's "!size" suffix.
func parseReportURIs(list string, withSize bool) ([]ReportURI, string) {
	if strings.TrimSpace(list) == "" {
		return nil, "no reporting address: write mailto:reports@example.org"
	}
	var uris []ReportURI
	for _, s := range strings.Split(list, ",") {
		u, msg := parseReportURI(strings.Trim(s, " \t\r\n"), withSize)
		if msg != "" {
			return nil, msg
		}
		uris = append(uris, u)
	}
	return uris, ""
}

func parseReportURI(s string, withSize bool) (ReportURI, string) {
	if s == "" {
		return ReportURI{}, "an empty address between commas"
	}
	var u ReportURI
	if withSize {
		if i := strings.LastIndexByte(s, '!'); i >= 0 {
			n, msg := parseSizeLimit(s[i+1:])
			if msg != "" {
				return ReportURI{}, fmt.Sprintf("%q: bad size limit %q: %s", s, s[i:], msg)
			}
			s, u.MaxSize = s[:i], n
		}
	}
	u.URI = s
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" || !isAlpha(scheme[0]) || strings.ContainsAny(scheme, "@/") {
		if strings.Contains(s, "@") {
			return ReportURI{}, fmt.Sprintf("%q is not a URI: write mailto:%s", s, s)
		}
		return ReportURI{}, fmt.Sprintf("%q is not a URI: write mailto:reports@example.org", s)
	}
	u.Scheme = strings.ToLower(scheme)
	switch u.Scheme {
	case "mailto":
		// RFC 6068: mailto:addr[?headers]; commas and "!" inside a DMARC
		// URI must be percent-encoded, so decode before parsing.
		to, _, _ := strings.Cut(rest, "?")
		dec, err := url.PathUnescape(to)
		if err != nil {
			return ReportURI{}, fmt.Sprintf("%q: bad percent-encoding", s)
		}
		if strings.Contains(dec, ",") {
			return ReportURI{}, fmt.Sprintf("%q: give one address per mailto: URI", s)
		}
		a, err := address.Parse(dec)
		if err != nil {
			return ReportURI{}, fmt.Sprintf("%q: %v", s, err)
		}
		u.Address = a.String()
	default:
		pu, err := url.Parse(s)
		if err != nil {
			return ReportURI{}, fmt.Sprintf("%q is not a valid URI", s)
		}
		if u.Scheme == "https" || u.Scheme == "http" {
			u.Host = pu.Hostname()
			if u.Host == "" {
				return ReportURI{}, fmt.Sprintf("%q has no host", s)
			}
		}
	}
	return u, ""
}

// parseSizeLimit parses 1*DIGIT [ "k" / "m" / "g" / "t" ].
func parseSizeLimit(s string) (uint64, string) {
	mult := uint64(1)
	if s != "" {
		if m, ok := sizeUnits[s[len(s)-1]|0x20]; ok && !isDigit(s[len(s)-1]) {
			mult, s = m, s[:len(s)-1]
		}
	}
	if !allDigits(s) {
		return 0, "write a number of bytes with an optional k, m, g or t, such as !10m"
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > math.MaxUint64/mult {
		return 0, "too large"
	}
	return n * mult, ""
}
