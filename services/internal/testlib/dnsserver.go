package testlib

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// DNSServer is an authoritative DNS server for tests, on 127.0.0.1 over UDP
// and TCP on the same port, serving records given as zone-file text. Point
// dnsclient (or mailctl --resolver) at Addr.
//
// It answers like an authoritative server (RFC 1034 §4.3.2): the records of
// the type asked for; the CNAME chain leading to them while it stays inside
// the records served; NXDOMAIN when nothing exists at or below the name, and
// NODATA (NOERROR with an empty answer, RFC 2308 §2.2) when the name exists
// with other types or as an empty non-terminal (RFC 8020). UDP answers larger
// than the client's EDNS0 buffer (512 bytes without EDNS0) are truncated with
// the TC bit set, so that TCP fallback is exercised.
type DNSServer struct {
	Addr string // "127.0.0.1:PORT", for UDP and TCP

	mu       sync.Mutex          // protects records and servFail
	records  map[string][]dns.RR // by lower-case owner name with trailing dot
	servFail map[string]bool     // lower-case names with trailing dot
	queries  atomic.Int64
}

// StartDNS starts a DNS server serving zone (see SetZone) and stops it when
// the test ends.
func StartDNS(t testing.TB, zone string) *DNSServer {
	t.Helper()
	s := &DNSServer{servFail: map[string]bool{}}
	s.SetZone(t, zone)
	pc, lis := listenUDPAndTCP(t)
	s.Addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: lis, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		served := make(chan error, 1)
		go func() { served <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-served:
			t.Fatalf("start DNS server: %v", err)
		}
		t.Cleanup(func() {
			if err := srv.Shutdown(); err != nil {
				t.Errorf("stop DNS server: %v", err)
			}
		})
	}
	return s
}

// listenUDPAndTCP listens on one port for both protocols. The kernel picks
// the UDP port; the TCP one may be taken by then, so it retries.
func listenUDPAndTCP(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("DNS server: %v", err)
		}
		lis, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, lis
		}
		lastErr = err
		pc.Close()
	}
	t.Fatalf("DNS server: no port free for both UDP and TCP: %v", lastErr)
	return nil, nil
}

// SetZone replaces every record served, atomically. zone is zone-file text
// (RFC 1035 §5) with absolute owner names, such as
//
//	example.org. 300 IN MX 10 mail.example.org.
//	example.org. IN TXT "v=spf1 " "-all"
//
// Comments, parentheses across lines, $TTL and $ORIGIN work as in a zone file
// (it is read with the DNS library's zone parser, as dns.NewRR does). A TXT
// record is served as the character-strings written, except that the parser
// splits a quoted string longer than 255 bytes, the most one may hold
// (RFC 1035 §3.3). A record that does not parse fails the test.
func (s *DNSServer) SetZone(t testing.TB, zone string) {
	t.Helper()
	records := map[string][]dns.RR{}
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "zone")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := dns.CanonicalName(rr.Header().Name)
		records[name] = append(records[name], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("DNS server zone: %v", err)
	}
	s.mu.Lock()
	s.records = records
	s.mu.Unlock()
}

// ServFail makes the server answer SERVFAIL to every query for name, as a
// broken or unreachable authoritative server would make a resolver do.
func (s *DNSServer) ServFail(name string) {
	s.mu.Lock()
	s.servFail[dns.CanonicalName(name)] = true
	s.mu.Unlock()
}

// Queries returns how many queries the server has received.
func (s *DNSServer) Queries() int { return int(s.queries.Load()) }

// ServeDNS implements dns.Handler.
func (s *DNSServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	resp := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(resp)
		return
	}
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0]
	resp.Answer, resp.Rcode = s.answer(dns.CanonicalName(q.Name), q.Qtype)

	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
		resp.SetEdns0(opt.UDPSize(), false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		resp.Truncate(size)
	}
	w.WriteMsg(resp) // an error means the client went away: nobody to tell
}

// answer returns the answer section and response code for a question.
func (s *DNSServer) answer(name string, qtype uint16) ([]dns.RR, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.servFail[name] {
		return nil, dns.RcodeServerFailure
	}
	var answer []dns.RR
	for hop := 0; ; hop++ {
		matched, cname := s.at(name, qtype)
		answer = append(answer, matched...)
		if len(matched) > 0 || cname == nil || hop == 8 { // 8 bounds CNAME loops
			if len(matched) == 0 && !s.exists(name) {
				// Nothing at the name asked, or at the end of the
				// chain (RFC 6604: the code is that of the last name).
				return answer, dns.RcodeNameError
			}
			return answer, dns.RcodeSuccess
		}
		answer = append(answer, cname)
		name = dns.CanonicalName(cname.Target)
		if s.servFail[name] {
			return answer, dns.RcodeServerFailure
		}
	}
}

// at returns copies of the records of type qtype at name, and the CNAME
// there if any. s.mu must be held.
func (s *DNSServer) at(name string, qtype uint16) ([]dns.RR, *dns.CNAME) {
	var matched []dns.RR
	var cname *dns.CNAME
	for _, rr := range s.records[name] {
		switch {
		case rr.Header().Rrtype == qtype || qtype == dns.TypeANY:
			matched = append(matched, dns.Copy(rr))
		case rr.Header().Rrtype == dns.TypeCNAME:
			cname = dns.Copy(rr).(*dns.CNAME)
		}
	}
	return matched, cname
}

// exists reports whether anything is served at name or below it (an empty
// non-terminal exists, RFC 8020). s.mu must be held.
func (s *DNSServer) exists(name string) bool {
	if len(s.records[name]) > 0 {
		return true
	}
	for owner := range s.records {
		if strings.HasSuffix(owner, "."+name) || name == "." {
			return true
		}
	}
	return false
}
