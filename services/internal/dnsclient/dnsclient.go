// Package dnsclient is the one DNS resolver postcove uses: the MTA for MX
// (RFC 5321 §5.1), SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489)
// lookups, and mailctl to check a domain's records. It is a stub resolver
// over github.com/miekg/dns that asks configured recursive servers instead of
// the operating system, so that answers carry what mail needs and the system
// resolver hides: the difference between "no such record" and "the lookup
// failed" (an MTA must answer 5xx for the first and 4xx for the second,
// RFC 7208 §2.6.6/§2.6.7, RFC 5321 §4.2.5).
//
// Queries go over UDP with EDNS0 advertising a 4096-byte buffer (RFC 6891
// §6.2.5), and are retried over TCP when the answer is truncated (RFC 7766
// §5, RFC 1035 §4.2.1). A server that answers FORMERR to EDNS0 is asked again
// without it (RFC 6891 §7). Servers are tried in order, each once, until one
// gives a definite answer.
//
// Every error wraps ErrNotFound (NXDOMAIN, RFC 1035 §4.1.1, or NODATA,
// RFC 2308 §2.2) or ErrTemporary (SERVFAIL, REFUSED, timeouts, network
// errors), and names the query.
package dnsclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

var (
	// ErrNotFound means the name does not exist (NXDOMAIN) or has no record
	// of the type asked for (NODATA): a definite answer.
	ErrNotFound = errors.New("not found")
	// ErrTemporary means no server gave a definite answer: SERVFAIL,
	// REFUSED, a timeout or a network error. Asking again later may work.
	ErrTemporary = errors.New("temporary DNS failure")
)

const (
	// DefaultTimeout is the time allowed to each server for one query when
	// New is given none.
	DefaultTimeout = 5 * time.Second
	// ResolvConf is where New finds the servers when given none.
	ResolvConf = "/etc/resolv.conf"

	ednsBufferSize = 4096
	// maxCNAMEHops bounds CNAME chains, including loops. Real chains are
	// one or two long; BIND gives up at 16 (max-recursion-queries differs).
	maxCNAMEHops = 8
)

// Resolver asks a fixed list of recursive DNS servers. It is safe for
// concurrent use.
type Resolver struct {
	servers []string // "ip:port", tried in order
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
}

// New returns a resolver asking servers ("192.0.2.53:53", "[2001:db8::53]:53"
// or a bare IP address for port 53), each for at most timeout per query (0:
// DefaultTimeout). With no servers, it asks the nameservers of
// /etc/resolv.conf.
func New(servers []string, timeout time.Duration) (*Resolver, error) {
	if len(servers) == 0 {
		var err error
		if servers, err = resolvConfServers(ResolvConf); err != nil {
			return nil, err
		}
	}
	addrs := make([]string, 0, len(servers))
	for _, s := range servers {
		ap, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, ap.String())
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Resolver{
		servers: addrs,
		timeout: timeout,
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: ednsBufferSize},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
	}, nil
}

// Servers returns the servers r asks, as "ip:port", in order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// parseServer reads "ip:port" or a bare IP address (port 53). Host names
// are refused: resolving the resolver would need a resolver.
func parseServer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53), nil
	}
	return netip.AddrPort{}, fmt.Errorf("DNS server %q: want an IP address with an optional port, like 192.0.2.53:53 or [2001:db8::53]:53", s)
}

// resolvConfServers returns the nameservers listed in a resolv.conf(5)
// file, with port 53.
func resolvConfServers(path string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read DNS servers: %w", err)
	}
	if len(conf.Servers) == 0 {
		return nil, fmt.Errorf("read DNS servers: no nameserver line in %s", path)
	}
	servers := make([]string, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("read DNS servers: %s: nameserver %q is not an IP address", path, s)
		}
		servers = append(servers, netip.AddrPortFrom(ip, 53).String())
	}
	return servers, nil
}

// TXT returns the TXT records at name, one string per record with its
// character-strings concatenated (RFC 7208 §3.3, RFC 6376 §3.6.2.2), as raw
// bytes: the presentation escapes of the DNS library are undone.
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	return lookupAs(ctx, r, name, dns.TypeTXT, func(rr *dns.TXT) string {
		var b strings.Builder
		for _, s := range rr.Txt {
			b.WriteString(unescape(s))
		}
		return b.String()
	})
}

// MX is one mail exchanger (RFC 5321 §5.1).
type MX struct {
	// Host is the exchanger's name without the trailing dot, or "." for a
	// null MX (RFC 7505): the domain accepts no mail.
	Host string
	Pref uint16
}

// MX returns the mail exchangers of name, lowest preference first.
func (r *Resolver) MX(ctx context.Context, name string) ([]MX, error) {
	out, err := lookupAs(ctx, r, name, dns.TypeMX, func(rr *dns.MX) MX { return MX{Host: hostName(rr.Mx), Pref: rr.Preference} })
	slices.SortStableFunc(out, func(a, b MX) int { return cmp.Compare(a.Pref, b.Pref) })
	return out, err
}

// SRV is one service location record (RFC 2782).
type SRV struct {
	Target                 string // without the trailing dot; "." means the service is not offered
	Port, Priority, Weight uint16
}

// SRV returns the SRV records at name ("_submissions._tcp.example.org"),
// sorted by priority, heavier weight first within a priority. Picking among
// equal priorities by weight (RFC 2782) is left to the caller.
func (r *Resolver) SRV(ctx context.Context, name string) ([]SRV, error) {
	out, err := lookupAs(ctx, r, name, dns.TypeSRV, func(rr *dns.SRV) SRV {
		return SRV{Target: hostName(rr.Target), Port: rr.Port, Priority: rr.Priority, Weight: rr.Weight}
	})
	slices.SortStableFunc(out, func(a, b SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(b.Weight, a.Weight))
	})
	return out, err
}

// A returns the IPv4 addresses of name.
func (r *Resolver) A(ctx context.Context, name string) ([]netip.Addr, error) {
	return lookupAs(ctx, r, name, dns.TypeA, func(rr *dns.A) netip.Addr { ip, _ := netip.AddrFromSlice(rr.A.To4()); return ip })
}

// AAAA returns the IPv6 addresses of name.
func (r *Resolver) AAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	return lookupAs(ctx, r, name, dns.TypeAAAA, func(rr *dns.AAAA) netip.Addr { ip, _ := netip.AddrFromSlice(rr.AAAA.To16()); return ip })
}

// IPs returns the IPv4 then the IPv6 addresses of name. As long as either
// lookup finds addresses they are returned without error, the way getaddrinfo
// does, since a host reachable over one family is reachable. With none, the
// error is ErrTemporary when either lookup failed temporarily, else
// ErrNotFound.
func (r *Resolver) IPs(ctx context.Context, name string) ([]netip.Addr, error) {
	v4, err4 := r.A(ctx, name)
	v6, err6 := r.AAAA(ctx, name)
	if ips := append(v4, v6...); len(ips) > 0 {
		return ips, nil
	}
	if errors.Is(err6, ErrTemporary) {
		return nil, err6
	}
	return nil, err4
}

// PTR returns the names ip's reverse record points at (RFC 1035 §3.5,
// RFC 3596 §2.5), without trailing dots.
func (r *Resolver) PTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	arpa, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, fmt.Errorf("lookup PTR %s: %w", ip, err)
	}
	return lookupAs(ctx, r, arpa, dns.TypePTR, func(rr *dns.PTR) string { return hostName(rr.Ptr) })
}

// CNAME returns the target of the CNAME record at name, without the
// trailing dot. It does not follow the chain further.
func (r *Resolver) CNAME(ctx context.Context, name string) (string, error) {
	targets, err := lookupAs(ctx, r, name, dns.TypeCNAME, func(rr *dns.CNAME) string { return hostName(rr.Target) })
	if err != nil {
		return "", err
	}
	return targets[0], nil
}

// lookupAs looks up the records of type qtype at name and converts each
// with conv, whose argument type must be that of qtype.
func lookupAs[T any, RR dns.RR](ctx context.Context, r *Resolver, name string, qtype uint16, conv func(RR) T) ([]T, error) {
	rrs, err := r.lookup(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, conv(rr.(RR)))
	}
	return out, nil
}

// lookup returns the records of type qtype at name, following CNAMEs: those
// in the answer first, and a new query for the end of the chain when the
// server stopped before it (an authoritative server does, for a target in
// another zone). The result is never empty: an empty answer is ErrNotFound.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	typ := dns.TypeToString[qtype]
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return nil, fmt.Errorf("lookup %s %q: %w: not a domain name", typ, name, ErrNotFound)
	}
	qname := dns.CanonicalName(name)
	target := qname
	for hops := 0; hops <= maxCNAMEHops; {
		msg, err := r.exchange(ctx, target, qtype)
		if err != nil {
			return nil, fmt.Errorf("lookup %s %s: %w", typ, queryName(qname, target), err)
		}
		var found []dns.RR
		found, target, hops = fromAnswer(msg.Answer, target, qtype, hops)
		switch {
		case len(found) > 0:
			return found, nil
		case msg.Rcode == dns.RcodeNameError:
			return nil, fmt.Errorf("lookup %s %s: %w: no such domain (NXDOMAIN)", typ, queryName(qname, target), ErrNotFound)
		case target == dns.CanonicalName(msg.Question[0].Name):
			return nil, fmt.Errorf("lookup %s %s: %w: the name has no %s record", typ, queryName(qname, target), ErrNotFound, typ)
		}
		// The answer ended in a CNAME whose target it did not resolve:
		// ask for the target.
	}
	return nil, fmt.Errorf("lookup %s %s: %w: more than %d CNAMEs in a row (a loop?)", typ, qname, ErrNotFound, maxCNAMEHops)
}

// fromAnswer picks the records of type qtype at name out of an answer
// section, following the CNAME chain from name (RFC 1034 §3.6.2, §4.3.2). It
// returns them, the name at the end of the chain and the hop count so far.
// Records at other names are ignored, so that a lying or confused server
// cannot slip in records for a name that was not asked about.
func fromAnswer(answer []dns.RR, name string, qtype uint16, hops int) ([]dns.RR, string, int) {
	for ; hops <= maxCNAMEHops; hops++ {
		var found []dns.RR
		next := ""
		for _, rr := range answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || dns.CanonicalName(h.Name) != name {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				found = append(found, rr)
			case h.Rrtype == dns.TypeCNAME:
				next = dns.CanonicalName(rr.(*dns.CNAME).Target)
			}
		}
		if len(found) > 0 || next == "" {
			return found, name, hops
		}
		name = next
	}
	return nil, name, hops
}

// exchange asks the servers in turn for one answer with a definite
// response code: NOERROR or NXDOMAIN.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsBufferSize, false)
	var errs []error
	for _, server := range r.servers {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		msg, err := r.exchangeOne(ctx, q, server)
		if err == nil && msg.Rcode == dns.RcodeFormatError {
			// RFC 6891 §7: a server without EDNS0 support.
			plain := q.Copy()
			plain.Extra = nil
			msg, err = r.exchangeOne(ctx, plain, server)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("server %s: %w", server, err))
		case len(msg.Question) != 1 || !strings.EqualFold(msg.Question[0].Name, name) || msg.Question[0].Qtype != qtype:
			errs = append(errs, fmt.Errorf("server %s: answer to a different question", server))
		case msg.Rcode == dns.RcodeSuccess || msg.Rcode == dns.RcodeNameError:
			return msg, nil
		default:
			errs = append(errs, fmt.Errorf("server %s: %s", server, dns.RcodeToString[msg.Rcode]))
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrTemporary, errors.Join(errs...))
}

// exchangeOne asks one server, over UDP then over TCP if the answer was
// truncated.
func (r *Resolver) exchangeOne(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	msg, _, err := r.udp.ExchangeContext(ctx, q, server)
	if err == nil && msg.Truncated {
		msg, _, err = r.tcp.ExchangeContext(ctx, q, server)
	}
	return msg, err
}

// queryName names a query in errors: the name asked, and where a CNAME
// chain led if elsewhere.
func queryName(qname, target string) string {
	if target == qname {
		return hostName(qname)
	}
	return hostName(qname) + " (CNAME to " + hostName(target) + ")"
}

// hostName drops the trailing dot of a fully-qualified name, keeping the
// root "." as it is (the null MX of RFC 7505, the "no service" SRV target of
// RFC 2782).
func hostName(fqdn string) string {
	if fqdn == "." {
		return fqdn
	}
	return strings.TrimSuffix(fqdn, ".")
}

// unescape turns a character-string in the presentation form the DNS
// library keeps (RFC 1035 §5.1: \" \\ and \DDD for other bytes) back into
// its bytes.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b = append(b, s[i])
			continue
		}
		i++
		if i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			n := int(s[i]-'0')*100 + int(s[i+1]-'0')*10 + int(s[i+2]-'0')
			if n <= 255 {
				b = append(b, byte(n))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
