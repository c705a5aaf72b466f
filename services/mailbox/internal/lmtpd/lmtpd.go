// Package lmtpd is the mailbox service's LMTP server (RFC 2033): the MTA
// hands it messages and it stores them in users' mailboxes, answering once
// per recipient.
//
// It runs github.com/emersion/go-smtp in LMTP mode; this package is the
// backend (an smtp.LMTPSession) plus the limits, connection tracking and
// shutdown the library leaves to its user.
//
// What a transaction does:
//
//   - RCPT TO: the address is resolved with the auth service. An unknown
//     user or a domain that is not ours is a definite 550; auth being
//     unreachable, or an alias loop the operator must fix, is a 451: a
//     dependency being down never bounces mail (DESIGN.md invariant 2).
//     LMTP recipients are final: the MTA has expanded aliases already. If
//     one still names an alias, its local mailboxes get the message and its
//     forward addresses are logged and ignored (forwarding is the MTA's).
//   - DATA (or BDAT, RFC 3030): the message is spooled once, in memory or
//     in an unlinked temporary file, then appended to each recipient's
//     mailbox in RCPT order, with Return-Path and Delivered-To prepended
//     (RFC 5321 section 4.4: the final delivery records the reverse path).
//     It goes to Junk instead of INBOX when IsSpam says the MTA marked it.
//     The message is stored as received, with its CRLF line ends, so that
//     the sizes IMAP and POP3 report are those of what they send.
//   - One reply per recipient, in RCPT order (RFC 2033 section 4.2), each
//     sent as soon as that recipient's append returned: 250 only after the
//     store says the message is durable (file and directory fsynced).
//
// Reply codes are RFC 5321's with RFC 3463 enhanced status codes; replies.go
// lists them with the reason for each choice.
//
// Shutdown stops accepting, ends idle connections (a 421, RFC 5321 section
// 3.8) and lets open transactions finish, up to the caller's deadline.
package lmtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Resolver answers where mail for a recipient goes; *authclient.Client is
// one. Errors are authclient's: ErrInvalid and ErrUnavailable.
type Resolver interface {
	ResolveRecipient(ctx context.Context, address string) (authclient.Recipient, error)
}

// Defaults for the zero values of Options. go-smtp's own defaults are
// "unlimited" for most of these, which no server on a network should run
// with.
const (
	// DefaultMaxMessageBytes matches what large providers accept (Gmail,
	// Outlook: 25-50 MB including encoding overhead).
	DefaultMaxMessageBytes = 50 << 20
	// DefaultMaxRecipients is far above what an MTA batches per LMTP
	// transaction (postfix: 50) and bounds the per-transaction state.
	DefaultMaxRecipients = 1000
	// DefaultMaxLineLength bounds a command line and each line of a
	// message. RFC 5322 section 2.1.1 allows 998 octets per line, but real
	// mail breaks that and the MTA accepted it; an LDA should not be
	// stricter. The limit is there to bound memory.
	DefaultMaxLineLength = 64 << 10
	// DefaultReadTimeout is RFC 5321 section 4.5.3.2's 5 minutes for a
	// command. go-smtp sets the deadline once for a DATA command, so this
	// also bounds the transfer of a whole message.
	DefaultReadTimeout  = 5 * time.Minute
	DefaultWriteTimeout = time.Minute
	// DefaultSpoolMemory: messages up to this size are spooled in memory,
	// larger ones in a temporary file. Most mail is far smaller.
	DefaultSpoolMemory = 1 << 20
	// DefaultMaxConnections is far above what MTAs open to one LMTP
	// server (postfix: 20 per destination) and bounds the memory a
	// connection flood can take.
	DefaultMaxConnections = 200
)

// HeaderOverhead bounds what delivery adds in front of a message (the
// Return-Path and Delivered-To lines: two addresses of at most a command
// line each). A store's own size limit should leave this much room above
// MaxMessageBytes, or a message the LMTP limit accepted could fail there.
func HeaderOverhead(maxLineLength int) int64 {
	return 2*int64(maxLineLength) + 64
}

// Options configure a Server. Store, Resolver and Logger are required.
type Options struct {
	Store    store.Store
	Resolver Resolver
	Logger   *slog.Logger
	// Registry receives the metrics; nil records none.
	Registry prometheus.Registerer

	// Hostname is announced in the greeting; default os.Hostname().
	Hostname string

	MaxMessageBytes int64 // default DefaultMaxMessageBytes
	MaxRecipients   int   // default DefaultMaxRecipients
	MaxLineLength   int   // default DefaultMaxLineLength
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	// MaxConnections bounds the connections served at once; one more is
	// answered 421 and closed. Default DefaultMaxConnections.
	MaxConnections int

	// SpoolDir holds the temporary files of large messages; default
	// os.TempDir(). The files are unlinked as soon as they are created,
	// so a crash leaves nothing behind.
	SpoolDir string
	// SpoolMemory is the largest message kept in memory while it is
	// delivered; default DefaultSpoolMemory.
	SpoolMemory int64
}

// Server is an LMTP server. Create it with New, run it with Serve, stop it
// with Shutdown.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	smtp    *smtp.Server
	spooler *spooler

	// ctx is the context of deliveries and auth calls; it is cancelled
	// only when Shutdown gives up waiting for them.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // protects listeners, conns, draining and stopped
	listeners []*trackingListener
	conns     map[*trackedConn]struct{}
	draining  bool // Shutdown was called: idle connections are closed
	stopped   bool // no new delivery may start
	// deliveries counts LMTPData calls in progress; Add is called with mu
	// held and stopped false, so none starts once Shutdown waits on it.
	deliveries sync.WaitGroup
}

// New returns a Server with opts, zero limits replaced by the defaults.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Resolver == nil || opts.Logger == nil {
		return nil, errors.New("lmtpd: Store, Resolver and Logger are required")
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
		if opts.Hostname == "" {
			opts.Hostname = "localhost"
		}
	}
	config.SetDefault(&opts.MaxMessageBytes, DefaultMaxMessageBytes)
	config.SetDefault(&opts.MaxRecipients, DefaultMaxRecipients)
	config.SetDefault(&opts.MaxLineLength, DefaultMaxLineLength)
	config.SetDefault(&opts.ReadTimeout, DefaultReadTimeout)
	config.SetDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	config.SetDefault(&opts.SpoolMemory, DefaultSpoolMemory)
	config.SetDefault(&opts.MaxConnections, DefaultMaxConnections)
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.TempDir()
	}

	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry() // recorded, never exposed
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: newMetrics(reg),
		spooler: &spooler{dir: opts.SpoolDir, memLimit: opts.SpoolMemory},
		conns:   make(map[*trackedConn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.LMTP = true
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = opts.MaxLineLength
	srv.ReadTimeout = opts.ReadTimeout
	srv.WriteTimeout = opts.WriteTimeout
	// Addresses are passed to auth as they are, and auth decides which
	// exist (it knows IDN domains); the store keeps 8-bit headers as
	// they come.
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = logging.Printer{Log: s.log, Prefix: "lmtp: "}
	s.smtp = srv
	return s, nil
}

// Serve accepts LMTP connections on lis until Shutdown, and closes it. It
// returns nil after Shutdown (also when Shutdown came first) and the error
// when accepting fails before.
func (s *Server) Serve(lis net.Listener) error {
	tl := &trackingListener{Listener: lis, s: s}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		tl.Close()
		return nil
	}
	s.listeners = append(s.listeners, tl)
	s.mu.Unlock()

	err := s.smtp.Serve(tl)
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	// go-smtp tells a closed listener from a failure only once its own
	// Shutdown has begun; ours closes the listeners a moment before.
	if err == nil || draining && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("lmtp serve on %s: %w", lis.Addr(), err)
}

// Shutdown stops accepting connections, closes idle ones and waits for open
// transactions to end (each client gets its replies, then a 421) until ctx
// is done; then it cuts the remaining connections. In both cases it
// returns only when no delivery is running, so the store may be closed
// after it. It returns ctx's error when it had to cut.
func (s *Server) Shutdown(ctx context.Context) error {
	// Listeners are closed here too, not only by go-smtp: a Serve that had
	// not yet handed its listener to go-smtp would otherwise serve on.
	// (Lock order: s.mu, then a connection's mu; never the reverse.)
	s.mu.Lock()
	s.draining = true
	for _, l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()

	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil // Shutdown called twice
	}
	if err != nil {
		// Give up on what is left: auth calls and appends see their
		// context cancelled, clients a closed connection (and retry).
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.Conn.Close()
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.deliveries.Wait()
	s.cancel()
	return err
}

// startDelivery registers a delivery; false when the server is stopping.
func (s *Server) startDelivery() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.deliveries.Add(1)
	return true
}

// trackingListener wraps accepted connections in trackedConn. Its Close
// may be called twice (by Shutdown and by go-smtp) and reports an error
// once at most.
type trackingListener struct {
	net.Listener
	s         *Server
	closeOnce sync.Once
}

func (l *trackingListener) Close() error {
	var err error
	l.closeOnce.Do(func() { err = l.Listener.Close() })
	return err
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, s: l.s}
		l.s.mu.Lock()
		full := len(l.s.conns) >= l.s.opts.MaxConnections
		if !full {
			l.s.conns[tc] = struct{}{}
			tc.draining = l.s.draining
		}
		l.s.mu.Unlock()
		if !full {
			return tc, nil
		}
		l.s.metrics.refused.Inc()
		go l.s.refuse(c)
	}
}

// refuse tells a client over MaxConnections to come back later (RFC 5321
// section 3.8: a 421 greeting) and hangs up.
func (s *Server) refuse(c net.Conn) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "421 4.3.2 %s too many connections, try again later\r\n", s.opts.Hostname)
}

// trackedConn lets Shutdown tell idle connections from busy ones and end
// the idle ones. go-smtp sets a read deadline before reading each command;
// while draining, an idle connection's deadline is "now", so the read
// fails at once and go-smtp answers 421 and closes. A connection with an
// open transaction (MAIL to the end of DATA, or RSET) keeps its deadline
// until the transaction ends.
type trackedConn struct {
	net.Conn
	s *Server

	mu       sync.Mutex // protects busy and draining
	busy     bool
	draining bool
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.draining && !c.busy {
		t = time.Now()
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// setBusy marks the start (MAIL) or the end (after the replies to DATA,
// RSET) of a transaction.
func (c *trackedConn) setBusy(busy bool) {
	c.mu.Lock()
	c.busy = busy
	idle := c.draining && !busy
	c.mu.Unlock()
	if idle {
		c.Conn.SetReadDeadline(time.Now())
	}
}

// drain ends the connection as soon as it is idle.
func (c *trackedConn) drain() {
	c.mu.Lock()
	c.draining = true
	busy := c.busy
	c.mu.Unlock()
	if !busy {
		c.Conn.SetReadDeadline(time.Now())
	}
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}
