package smtpd

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener enforces the connection limits before go-smtp sees a
// connection: one over the limit gets a 421 (RFC 5321 section 3.8) and
// is closed, costing no session.
type limitListener struct {
	net.Listener
	srv *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.srv.admit(c); tc != nil {
			return tc, nil
		}
		go l.srv.refuse(c)
	}
}

// trackedConn is an accepted connection, counted against the limits
// until closed, and known to Shutdown.
//
// While the connection is in plaintext it also watches the raw bytes for
// CRLF "." CR followed by anything but LF. go-smtp's DATA reader drops
// such a ".\r" without a trace (package policy, CRLFReader), so it is
// only visible here; no client has a reason to send it in a command or a
// message, and some servers take it for the end of the data (SMTP
// smuggling). Over TLS the bytes here are ciphertext and the watch stops:
// the sequence then stays harmless message content.
type trackedConn struct {
	net.Conn
	srv  *Server
	ip   string
	busy atomic.Bool // in a mail transaction: Shutdown lets it finish
	once sync.Once

	plain    atomic.Bool // the bytes read are plaintext SMTP
	smuggled atomic.Bool // CRLF "." CR not followed by LF was read
	tail     uint32      // the last bytes read, for the watch; reader only
}

// startTLSReply is how go-smtp answers STARTTLS, just before it reads
// the TLS handshake from this connection.
var startTLSReply = []byte("220 2.0.0 Ready to start TLS")

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.plain.Load() {
		c.watch(p[:n])
	}
	return n, err
}

// smuggleSeq is what trackedConn watches for, when the byte after it is
// not LF.
const smuggleSeq = "\r\n.\r"

// watch looks for CRLF "." CR followed by anything but LF in b, the next
// bytes read, with the bytes read before (tail). Only the first bytes of
// b can complete a sequence begun in an earlier read: they are looked at
// one by one; the rest with bytes.Index, not a loop over every byte.
func (c *trackedConn) watch(b []byte) {
	head := b[:min(len(b), len(smuggleSeq))]
	for _, x := range head {
		// tail holds the last four bytes: CR LF "." CR, then x.
		if c.tail == 0x0d0a2e0d && x != '\n' {
			c.smuggled.Store(true)
		}
		c.tail = c.tail<<8 | uint32(x)
	}
	if len(b) <= len(head) {
		return
	}
	// Sequences wholly inside b, followed by a byte of b. One ending b
	// is followed by the next read's first byte: the tail covers it.
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(smuggleSeq))
		if j < 0 {
			break
		}
		next := i + j + len(smuggleSeq)
		if next < len(b) && b[next] != '\n' {
			c.smuggled.Store(true)
		}
		i += j + 1 // sequences may overlap: CR LF "." CR LF "." CR
	}
	t := b[len(b)-4:]
	c.tail = uint32(t[0])<<24 | uint32(t[1])<<16 | uint32(t[2])<<8 | uint32(t[3])
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, startTLSReply) {
		c.plain.Store(false)
	}
	return c.Conn.Write(p)
}

// admit counts c in, or returns nil when a limit is reached.
func (s *Server) admit(c net.Conn) *trackedConn {
	ip := hostOf(c.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= s.opts.MaxConnections || s.perIP[ip] >= s.opts.MaxConnectionsPerIP {
		return nil
	}
	tc := &trackedConn{Conn: c, srv: s, ip: ip}
	// The greeting counts as the line before the first command, so a
	// data line at the very start is watched too.
	tc.tail = 0x0d0a
	tc.plain.Store(!s.opts.ImplicitTLS)
	s.conns[tc] = struct{}{}
	s.perIP[ip]++
	s.metrics.connOpened(s.name)
	return tc
}

// refuse answers a connection over the limits and closes it. On an
// implicit TLS port there is no plaintext to answer in: it is closed.
func (s *Server) refuse(c net.Conn) {
	defer c.Close()
	s.metrics.reject(s.name, "too_many_connections")
	s.log.Warn("connection refused: too many connections", "remote", c.RemoteAddr().String())
	if s.opts.ImplicitTLS {
		return
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("421 4.7.0 " + s.opts.Hostname + " too many connections, try again later\r\n"))
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		s := c.srv
		s.mu.Lock()
		delete(s.conns, c)
		if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
			delete(s.perIP, c.ip)
		}
		s.mu.Unlock()
		s.metrics.connClosed(s.name)
	})
	return c.Conn.Close()
}

// hostOf returns the IP of a TCP address ("" for others).
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return ""
	}
	return host
}

// trackedOf finds the tracked connection under go-smtp's view of it
// (which is a *tls.Conn after STARTTLS or on an implicit TLS port).
func trackedOf(c net.Conn) *trackedConn {
	for {
		switch v := c.(type) {
		case *trackedConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
}
