// Package nxdns is a DNS server on loopback that knows no name: it answers
// every query with NXDOMAIN (RFC 1035 section 4.1.1, RCODE 3), over UDP and
// TCP on one port. A benchmark points the servers it measures at it, so
// that a lookup they make (a client's PTR, a sender domain's SPF or DMARC
// record) is answered at once, the same way every time, and no query ever
// leaves the machine.
package nxdns

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Server is a running NXDOMAIN server.
type Server struct {
	addr    string
	servers []*dns.Server
	queries atomic.Int64
}

// Start listens on a free 127.0.0.1 port, UDP and TCP, and serves until
// Stop.
func Start() (*Server, error) {
	pc, lis, err := listen()
	if err != nil {
		return nil, err
	}
	s := &Server{addr: pc.LocalAddr().String()}
	s.servers = []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: lis, Handler: s}}
	for i, srv := range s.servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		served := make(chan error, 1)
		go func() { served <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-served:
			for _, running := range s.servers[:i] {
				running.Shutdown() //nolint:errcheck // the start failed already
			}
			return nil, fmt.Errorf("dns server: %w", err)
		}
	}
	return s, nil
}

// listen takes one port for both protocols: the kernel picks the UDP one,
// which may be taken for TCP, so it tries again.
func listen() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("dns server: %w", err)
		}
		lis, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, lis, nil
		}
		lastErr = err
		pc.Close()
	}
	return nil, nil, fmt.Errorf("dns server: no port free for both UDP and TCP: %w", lastErr)
}

// ServeDNS answers NXDOMAIN, authoritatively, to any query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeNameError)
	m.Authoritative = true
	w.WriteMsg(m) //nolint:errcheck // the client retries or gives up
}

// Addr is the server's address, 127.0.0.1:PORT, for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Queries is how many queries were answered.
func (s *Server) Queries() int { return int(s.queries.Load()) }

// Stop stops serving.
func (s *Server) Stop() error {
	var errs []error
	for _, srv := range s.servers {
		errs = append(errs, srv.Shutdown())
	}
	return errors.Join(errs...)
}
