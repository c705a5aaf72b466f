package verify

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/postcove/postcove/services/internal/dnsclient"
)

// Resolver is the DNS the checks need: TXT for SPF, DKIM keys and DMARC
// policies; MX, addresses and PTR for SPF's mechanisms. dnsclient.Resolver
// is the one in service; its errors wrap dnsclient.ErrNotFound (a definite
// "no such record") or dnsclient.ErrTemporary.
type Resolver interface {
	TXT(ctx context.Context, name string) ([]string, error)
	MX(ctx context.Context, name string) ([]dnsclient.MX, error)
	IPs(ctx context.Context, name string) ([]netip.Addr, error)
	PTR(ctx context.Context, ip netip.Addr) ([]string, error)
}

var _ Resolver = (*dnsclient.Resolver)(nil)

// netResolver presents a Resolver the way both libraries ask for DNS:
// blitiri.com.ar/go/spf through its DNSResolver interface (the methods of
// *net.Resolver) and go-msgauth's dkim and dmarc through a LookupTXT
// function. Both tell "no record" from "try later" only by a *net.DNSError
// (IsNotFound, Temporary()), returned as is, not wrapped, since they use
// type assertions rather than errors.As.
type netResolver struct {
	r   Resolver
	txt *txtCache // nil: every TXT lookup asks r
}

func (n netResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if n.txt == nil {
		txts, err := n.r.TXT(ctx, name)
		return txts, dnsError(name, err)
	}
	key := strings.ToLower(name)
	if e, ok := n.txt.get(key); ok {
		return e.txts, dnsError(name, e.err)
	}
	txts, err := n.r.TXT(ctx, name)
	n.txt.put(key, txts, err)
	return txts, dnsError(name, err)
}

func (n netResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, err := n.r.MX(ctx, name)
	if err != nil {
		return nil, dnsError(name, err)
	}
	out := make([]*net.MX, 0, len(mxs))
	for _, mx := range mxs {
		out = append(out, &net.MX{Host: mx.Host, Pref: mx.Pref})
	}
	return out, nil
}

func (n netResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := n.r.IPs(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	out := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: net.IP(ip.AsSlice())})
	}
	return out, nil
}

func (n netResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "not an IP address", Name: addr, IsNotFound: true}
	}
	names, err := n.r.PTR(ctx, ip)
	return names, dnsError(addr, err)
}

// txtFunc is LookupTXT bound to ctx, for go-msgauth, whose lookups take
// no context.
func (n netResolver) txtFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return n.LookupTXT(ctx, name) }
}

// dnsError turns a Resolver error into the *net.DNSError the libraries
// understand. Anything not a definite ErrNotFound counts as temporary: an
// unclear DNS answer must never become a permanent verdict (RFC 7208
// section 2.6.6, RFC 7489 section 6.6.2).
func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	notFound := errors.Is(err, dnsclient.ErrNotFound)
	return &net.DNSError{
		UnwrapErr:   err,
		Err:         err.Error(),
		Name:        name,
		IsNotFound:  notFound,
		IsTemporary: !notFound,
	}
}
