// Package dnsgen builds the DNS records a postcove mail domain needs, for
// `mailctl dns records`: pure functions from options (and the DKIM keys under
// keys/DOMAIN/) to records, so that `mailctl dns check` and its tests can
// serve exactly what an operator is told to publish.
//
// The records and the choices behind them:
//
//   - A/AAAA of the mail host (default mail.DOMAIN), and an MX 10 pointing at
//     it (RFC 5321 §5.1).
//   - SPF (RFC 7208): "v=spf1 ip4:ADDR ip6:ADDR -all". The addresses are given
//     on the command line, so they are listed explicitly instead of "mx": no
//     DNS lookups at evaluation (the limit is 10, RFC 7208 §4.6.4), and no
//     surprise when the MX later moves to a host that does not send. "-all"
//     because a domain served by postcove sends only through postcove.
//   - DKIM (RFC 6376 §3.6.1, RFC 8463): one TXT record per key in
//     keys/DOMAIN/, at SELECTOR._domainkey, in strings of at most 255 bytes.
//   - DMARC (RFC 7489 §6.3): "v=DMARC1; p=quarantine; rua=mailto:postmaster@DOMAIN"
//     by default. quarantine rather than none because SPF and DKIM are set up
//     together here, so legitimate mail aligns from day one, and rather than
//     reject so that a mistake files mail as spam instead of bouncing it.
//     Reports go to postmaster, which RFC 5321 §4.5.1 requires to exist.
//     adkim and aspf are left out: relaxed alignment (the default) lets
//     subdomains of DOMAIN sign and send; strict buys nothing here. No ruf:
//     few receivers send failure reports and they carry personal data.
//   - MTA-STS (RFC 8461): the _mta-sts TXT with a time-based id, a CNAME
//     mta-sts → the mail host, and the policy file to serve at
//     https://mta-sts.DOMAIN/.well-known/mta-sts.txt. Mode testing by default,
//     since enforce makes senders refuse to deliver when the certificate is
//     wrong; switch once the TLS reports are clean.
//   - TLS-RPT (RFC 8460): _smtp._tls, reports to the same addresses as DMARC.
//   - SRV records for mail clients (RFC 6186, RFC 8314 §5.1): implicit TLS
//     preferred over STARTTLS, IMAP over POP3, by priority across services
//     (RFC 6186 §3.4); and an autoconfig CNAME for clients that look up
//     https://autoconfig.DOMAIN/mail/config-v1.1.xml.
//   - PTR (reverse DNS), which lives at the hosting provider, not in the
//     zone: it must name the mail host, whose A/AAAA points back.
package dnsgen

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/postcove/postcove/services/internal/address"
	"github.com/postcove/postcove/services/internal/dkimkey"
)

// DefaultTTL is the TTL of every record: an hour is short enough to fix a
// mistake the same day, long enough not to matter for load.
const DefaultTTL = 3600

// Where a record is published.
const (
	WhereZone     = "zone"     // in the zone of the domain (or of the mail host)
	WhereProvider = "provider" // reverse DNS, set at the hosting provider of the address
)

// DMARCPolicy is the p= of a DMARC record (RFC 7489 §6.3).
type DMARCPolicy string

// The DMARC policies.
const (
	DMARCNone       DMARCPolicy = "none"
	DMARCQuarantine DMARCPolicy = "quarantine"
	DMARCReject     DMARCPolicy = "reject"
)

// ParseDMARCPolicy returns the policy named s.
func ParseDMARCPolicy(s string) (DMARCPolicy, error) {
	return parseName(s, "DMARC policy", DMARCNone, DMARCQuarantine, DMARCReject)
}

// MTASTSMode is the mode of an MTA-STS policy (RFC 8461 §3.2).
type MTASTSMode string

// The MTA-STS modes.
const (
	MTASTSTesting MTASTSMode = "testing"
	MTASTSEnforce MTASTSMode = "enforce"
	MTASTSNone    MTASTSMode = "none"
)

// ParseMTASTSMode returns the mode named s.
func ParseMTASTSMode(s string) (MTASTSMode, error) {
	return parseName(s, "MTA-STS mode", MTASTSTesting, MTASTSEnforce, MTASTSNone)
}

// parseName returns the one of names that s is, exactly.
func parseName[T ~string](s, what string, names ...T) (T, error) {
	if i := slices.Index(names, T(s)); i >= 0 {
		return names[i], nil
	}
	list := make([]string, len(names))
	for i, n := range names {
		list[i] = string(n)
	}
	return "", fmt.Errorf("unknown %s %q: use one of %s", what, s, strings.Join(list, ", "))
}

// maxAge is the max_age of a policy in mode m, in seconds: a day while
// testing or withdrawing, so that a change spreads fast; a week when
// enforcing, so that an attacker who blocks the policy fetch gains little
// (RFC 8461 §3.2 suggests weeks).
func (m MTASTSMode) maxAge() int {
	if m == MTASTSEnforce {
		return 7 * 24 * 3600
	}
	return 24 * 3600
}

// ParseRUA reads comma-separated "mailto:ADDRESS" report URIs (RFC 7489
// §6.4, RFC 8460 §3) and returns them with canonical addresses.
func ParseRUA(s string) ([]string, error) {
	var uris []string
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		scheme, addr, ok := strings.Cut(part, ":")
		if !ok || !strings.EqualFold(scheme, "mailto") {
			return nil, fmt.Errorf("report address %q: want mailto:ADDRESS", part)
		}
		a, err := address.Parse(addr)
		if err != nil {
			return nil, fmt.Errorf("report address %q: %w", part, err)
		}
		uris = append(uris, "mailto:"+a.String())
	}
	return uris, nil
}

// Options describe the mail setup of one domain.
type Options struct {
	Domain   string // the mail domain; Build canonicalises it (address.ParseDomain)
	Hostname string // the mail host, canonicalised likewise; "" means mail.DOMAIN
	// IPv4 and IPv6 are the mail host's public addresses; at least one.
	IPv4, IPv6  netip.Addr
	DMARCPolicy DMARCPolicy // "" means quarantine
	RUA         []string    // report URIs from ParseRUA; nil means mailto:postmaster@DOMAIN
	MTASTSMode  MTASTSMode  // "" means testing
	KeysDir     string      // DKIM keys are read from KeysDir/DOMAIN/; "" means none
	TTL         uint32      // 0 means DefaultTTL
	Now         time.Time   // makes the MTA-STS policy id
}

// Record is one DNS record to publish.
type Record struct {
	Name string `json:"name"` // fully qualified, with the trailing dot
	Type string `json:"type"` // A, AAAA, MX, TXT, CNAME, SRV, PTR
	TTL  uint32 `json:"ttl"`
	// Value is the record data as a checker reads it: for TXT the text
	// with its strings joined (what SPF, DKIM and DMARC parse), otherwise
	// the zone-file form ("10 mail.example.org.", "192.0.2.1").
	Value string `json:"value"`
	// Strings are, for TXT, the character-strings to publish: Value cut
	// into pieces of at most 255 bytes.
	Strings []string `json:"strings,omitempty"`
	Note    string   `json:"note"`
	Where   string   `json:"where"` // WhereZone or WhereProvider
}

// RR returns the record as one zone-file line (RFC 1035 §5.1), which
// dns.NewRR and the zone parser of testlib.StartDNS read back. A TXT record
// without Strings is published as Value, split.
func (r Record) RR() string {
	data := r.Value
	if r.Type == "TXT" {
		parts := r.Strings
		if parts == nil {
			parts = dkimkey.SplitTXT(r.Value)
		}
		quoted := make([]string, len(parts))
		for i, s := range parts {
			quoted[i] = quote(s)
		}
		data = strings.Join(quoted, " ")
		if len(quoted) > 1 {
			data = "( " + data + " )"
		}
	}
	return fmt.Sprintf("%s %d IN %s %s", r.Name, r.TTL, r.Type, data)
}

// quote returns s as a zone-file character-string: in double quotes, with
// '"' and '\' escaped, and bytes outside printable ASCII as \DDD.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Policy is the MTA-STS policy file (RFC 8461 §3.2) and where to serve it.
type Policy struct {
	URL  string `json:"url"`
	Text string `json:"text"`
}

// Plan is everything to publish for a domain.
type Plan struct {
	Domain   string   `json:"domain"`
	Hostname string   `json:"hostname"`
	Records  []Record `json:"records"`
	Policy   Policy   `json:"mta_sts_policy"`
	// Notes are things the operator must know that are not records, such
	// as a domain with no DKIM key yet.
	Notes []string `json:"notes,omitempty"`
}

// Build returns the records for o. It reads the DKIM keys under
// o.KeysDir/o.Domain/ and fails if any cannot be read.
func Build(o Options) (Plan, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Plan{}, err
	}
	b := builder{o: o, plan: Plan{Domain: o.Domain, Hostname: o.Hostname}}
	b.mailHost()
	b.spf()
	if err := b.dkim(); err != nil {
		return Plan{}, err
	}
	b.dmarc()
	b.mtaSTS()
	b.clients()
	b.ptr()
	return b.plan, nil
}

// withDefaults checks o, canonicalises its names and fills in the
// defaults.
func (o Options) withDefaults() (Options, error) {
	var err error
	if o.Domain, err = address.ParseDomain(o.Domain); err != nil {
		return o, fmt.Errorf("domain: %w", err)
	}
	if o.Hostname == "" {
		o.Hostname = "mail." + o.Domain
	}
	if o.Hostname, err = address.ParseDomain(o.Hostname); err != nil {
		return o, fmt.Errorf("hostname: %w", err)
	}
	for _, taken := range []string{"mta-sts", "autoconfig"} {
		if o.Hostname == taken+"."+o.Domain {
			return o, fmt.Errorf("hostname %s is taken by the %s record: name the mail host otherwise", o.Hostname, taken)
		}
	}
	switch {
	case !o.IPv4.IsValid() && !o.IPv6.IsValid():
		return o, errors.New("no address for the mail host: give its public IPv4 address, IPv6 address or both")
	case o.IPv4.IsValid() && !o.IPv4.Is4():
		return o, fmt.Errorf("%s is not an IPv4 address", o.IPv4)
	case o.IPv6.IsValid() && (!o.IPv6.Is6() || o.IPv6.Is4In6()):
		return o, fmt.Errorf("%s is not an IPv6 address", o.IPv6)
	}
	if o.DMARCPolicy == "" {
		o.DMARCPolicy = DMARCQuarantine
	}
	if len(o.RUA) == 0 {
		o.RUA = []string{"mailto:postmaster@" + o.Domain}
	}
	if o.MTASTSMode == "" {
		o.MTASTSMode = MTASTSTesting
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	return o, nil
}

// builder accumulates a plan.
type builder struct {
	o    Options
	plan Plan
}

// add appends a record of the zone; name is relative to the domain ("" for
// the domain itself) unless it ends with a dot.
func (b *builder) add(name, typ, value, note string) {
	switch {
	case name == "":
		name = b.o.Domain + "."
	case !strings.HasSuffix(name, "."):
		name += "." + b.o.Domain + "."
	}
	b.plan.Records = append(b.plan.Records, newRecord(name, b.o.TTL, typ, value, note))
}

// newRecord returns a record of the zone at the fully-qualified name.
func newRecord(name string, ttl uint32, typ, value, note string) Record {
	r := Record{Name: name, Type: typ, TTL: ttl, Value: value, Note: note, Where: WhereZone}
	if typ == "TXT" {
		r.Strings = dkimkey.SplitTXT(value)
	}
	return r
}

func (b *builder) mailHost() {
	host := b.o.Hostname + "."
	where := ""
	if !dns.IsSubDomain(b.o.Domain+".", host) {
		where = fmt.Sprintf(" This record belongs in the zone that holds %s, not in that of %s.", b.o.Hostname, b.o.Domain)
	}
	if b.o.IPv4.IsValid() {
		b.add(host, "A", b.o.IPv4.String(), "The mail host's IPv4 address. The MX, SPF, PTR and TLS certificate all name this host."+where)
	}
	if b.o.IPv6.IsValid() {
		b.add(host, "AAAA", b.o.IPv6.String(), "The mail host's IPv6 address. Publish it only if the host really sends and receives over IPv6."+where)
	}
	b.add("", "MX", "10 "+host, fmt.Sprintf("Mail for %s goes to %s.", b.o.Domain, b.o.Hostname))
}

func (b *builder) spf() {
	mech := []string{"v=spf1"}
	if b.o.IPv4.IsValid() {
		mech = append(mech, "ip4:"+b.o.IPv4.String())
	}
	if b.o.IPv6.IsValid() {
		mech = append(mech, "ip6:"+b.o.IPv6.String())
	}
	b.add("", "TXT", strings.Join(append(mech, "-all"), " "),
		"SPF: only the mail host's addresses may send mail from "+b.o.Domain+"; receivers fail the rest. "+
			"A domain must have exactly one v=spf1 record: if it has one already (say for a newsletter service), merge the two.")
}

func (b *builder) dkim() error {
	if b.o.KeysDir == "" {
		return nil
	}
	keys, err := dkimkey.List(b.o.KeysDir, b.o.Domain)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		b.plan.Notes = append(b.plan.Notes, fmt.Sprintf(
			"No DKIM key in %s/%s/: create one with 'mailctl dkim keygen %s', then run this again to get its record.",
			b.o.KeysDir, b.o.Domain, b.o.Domain))
	}
	for _, k := range keys {
		r, err := DKIM(k, b.o.TTL)
		if err != nil {
			return err
		}
		b.plan.Records = append(b.plan.Records, r)
	}
	return nil
}

// DKIM returns the key record (RFC 6376 §3.6.1) for a key in the keys
// directory, with the TTL given (0 means DefaultTTL).
func DKIM(k dkimkey.Key, ttl uint32) (Record, error) {
	value, err := dkimkey.Record(k.Signer.Public())
	if err != nil {
		return Record{}, fmt.Errorf("%s: %w", k.Path, err)
	}
	return newRecord(dkimkey.RecordName(k.Domain, k.Selector)+".", cmp.Or(ttl, DefaultTTL), "TXT", value,
		fmt.Sprintf("DKIM public key of %s: receivers check the signatures made with selector %s against it.", k.Path, k.Selector)), nil
}

func (b *builder) dmarc() {
	value := fmt.Sprintf("v=DMARC1; p=%s; rua=%s", b.o.DMARCPolicy, strings.Join(b.o.RUA, ","))
	var what string
	switch b.o.DMARCPolicy {
	case DMARCNone:
		what = "receivers only report mail that fails SPF and DKIM alignment; move to p=quarantine once the reports show only your own mail passing"
	case DMARCQuarantine:
		what = "receivers file mail that fails both SPF and DKIM alignment as spam"
	case DMARCReject:
		what = "receivers refuse mail that fails both SPF and DKIM alignment"
	}
	note := fmt.Sprintf("DMARC: %s; daily aggregate reports go to %s.", what, b.reportAddresses())
	if ext := b.externalRUA(); len(ext) > 0 {
		note += fmt.Sprintf(" Reports to another domain are only sent if that domain agrees, by publishing %s (RFC 7489 §7.1).",
			strings.Join(ext, " and "))
	}
	b.add("_dmarc", "TXT", value, note)
}

// reportAddresses lists the report addresses for people to read.
func (b *builder) reportAddresses() string {
	return strings.ReplaceAll(strings.Join(b.o.RUA, ", "), "mailto:", "")
}

// externalRUA returns, for report addresses outside the domain, the
// authorisation records their domains must publish (RFC 7489 §7.1).
func (b *builder) externalRUA() []string {
	var out []string
	for _, uri := range b.o.RUA {
		_, domain, _ := strings.Cut(uri, "@")
		if domain != b.o.Domain && !strings.HasSuffix(domain, "."+b.o.Domain) {
			out = append(out, fmt.Sprintf(`%s._report._dmarc.%s. TXT "v=DMARC1"`, b.o.Domain, domain))
		}
	}
	return out
}

func (b *builder) mtaSTS() {
	id := b.o.Now.UTC().Format("20060102150405")
	b.add("_mta-sts", "TXT", "v=STSv1; id="+id,
		"MTA-STS: tells senders to require TLS to the MX. Change the id whenever the policy file changes, or senders keep the old policy.")
	b.add("mta-sts", "CNAME", b.o.Hostname+".",
		"The MTA-STS policy host: an HTTPS server there, with a certificate valid for mta-sts."+b.o.Domain+", must serve the policy file below.")
	b.plan.Policy = Policy{
		URL: "https://mta-sts." + b.o.Domain + "/.well-known/mta-sts.txt",
		// RFC 8461 §3.2: "key: value" lines; LF is allowed as the line end.
		Text: fmt.Sprintf("version: STSv1\nmode: %s\nmx: %s\nmax_age: %d\n", b.o.MTASTSMode, b.o.Hostname, b.o.MTASTSMode.maxAge()),
	}
	b.add("_smtp._tls", "TXT", "v=TLSRPTv1; rua="+strings.Join(b.o.RUA, ","),
		"TLS-RPT: senders report failed TLS connections to "+b.reportAddresses()+", which shows when MTA-STS can move to enforce.")
}

func (b *builder) clients() {
	// Lower priority is preferred, compared across the services of one
	// protocol family (RFC 6186 §3.4): implicit TLS first (RFC 8314 §5.1),
	// and IMAP before POP3.
	services := []struct {
		name           string
		priority, port uint16
		what           string
	}{
		{"_submissions._tcp", 0, 465, "mail submission over implicit TLS (RFC 8314), preferred"},
		{"_submission._tcp", 10, 587, "mail submission with STARTTLS"},
		{"_imaps._tcp", 0, 993, "IMAP over implicit TLS, preferred"},
		{"_imap._tcp", 10, 143, "IMAP with STARTTLS"},
		{"_pop3s._tcp", 20, 995, "POP3 over implicit TLS, for clients without IMAP"},
		{"_pop3._tcp", 30, 110, "POP3 with STARTTLS"},
	}
	for _, s := range services {
		b.add(s.name, "SRV", fmt.Sprintf("%d 1 %d %s.", s.priority, s.port, b.o.Hostname),
			"Lets mail clients find the server (RFC 6186): "+s.what+".")
	}
	b.add("autoconfig", "CNAME", b.o.Hostname+".",
		"Thunderbird and others fetch https://autoconfig."+b.o.Domain+"/mail/config-v1.1.xml: serve it there, or leave this out.")
}

func (b *builder) ptr() {
	for _, ip := range []netip.Addr{b.o.IPv4, b.o.IPv6} {
		if !ip.IsValid() {
			continue
		}
		arpa, _ := dns.ReverseAddr(ip.String()) // a valid address always reverses
		r := newRecord(arpa, b.o.TTL, "PTR", b.o.Hostname+".", fmt.Sprintf(
			"Reverse DNS of %s: not in your zone, but set in the control panel of whoever provides the address (often called \"reverse DNS\" or \"rDNS\"). "+
				"It must name %s, whose address points back to %s: receivers reject or file as spam mail from addresses without it.",
			ip, b.o.Hostname, ip))
		r.Where = WhereProvider
		b.plan.Records = append(b.plan.Records, r)
	}
}
