// Package imapd is the mailbox service's IMAP server: every user's
// mailboxes in the store, read and changed by IMAP clients.
//
// The protocol engine is go-imap v2's imapserver (parsing, response
// encoding, the connection states, STARTTLS, LOGIN, AUTHENTICATE PLAIN,
// IDLE framing, ENABLE); this package is its backend on top of the store
// contract (package store) and adds what the library leaves to servers:
// connection limits, graceful shutdown, auth, metrics and logs.
//
// It speaks IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) with NAMESPACE
// (RFC 2342), UIDPLUS (RFC 4315), ESEARCH (RFC 4731), SEARCHRES (RFC 5182),
// LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC
// 6154), MOVE (RFC 6851), STATUS=SIZE (RFC 8438), BINARY (RFC 3516),
// CHILDREN (RFC 3348), LITERAL+ (RFC 7888), APPENDLIMIT (RFC 7889), IDLE
// (RFC 2177), UNSELECT (RFC 3691), ENABLE (RFC 5161) and UTF8=ACCEPT (RFC
// 6855).
//
// Policies an operator coming from dovecot should know:
//
//   - Plaintext logins (LOGIN, AUTHENTICATE PLAIN) are refused before TLS
//     with NO [PRIVACYREQUIRED] and LOGINDISABLED is announced, unless
//     Options.AllowPlaintextAuth is set (dovecot's
//     disable_plaintext_auth = yes, without its loopback exception: behind
//     a proxy on the same host every client would look local).
//   - Bad credentials are NO [AUTHENTICATIONFAILED]. A lockout by auth
//     (too many failures) and an unreachable auth are both NO
//     [UNAVAILABLE] (RFC 5530: a temporary failure the user cannot fix by
//     retyping the password), the lockout's text giving the delay auth
//     asked for; [AUTHENTICATIONFAILED] would make clients prompt for a
//     new password. The session stays usable, so a client may retry once
//     auth is back, and failed logins do not close it: auth's lockout is
//     the defence against guessing.
//   - Mailbox names go to the store unchanged (after the library decodes
//     modified UTF-7); the store validates them (store.CanonicalName) so
//     that no name reaches outside the user's Maildir. Invalid names are
//     NO [CANNOT].
//   - \Recent is not kept (IMAP4rev2 dropped it; a store shared by
//     several processes cannot tell which session saw a message first):
//     RECENT is always 0 and SEARCH RECENT/NEW match nothing.
//   - CONDSTORE is not offered: go-imap v2.0.0-beta.8's server side parses
//     neither MODSEQ nor UNCHANGEDSINCE, although the store keeps MODSEQs.
//     QUOTA is not offered either: the library has no server support.
//   - An EXAMINEd (read-only) mailbox refuses STORE and MOVE, FETCH does
//     not set \Seen in it, and EXPUNGE (and CLOSE) do nothing.
//   - Messages are sent as stored (postcove's LMTP stores CRLF line ends);
//     RFC822.SIZE is the stored size.
//   - MaxSessions bounds connections; one more gets "* BYE [UNAVAILABLE]"
//     and is closed. The library's own timers apply: 30 seconds for a
//     command line or before login, 35 minutes in the authenticated state
//     (RFC 9051 section 5.4 asks for at least 30).
//   - Shutdown stops accepting, lets each command in progress finish and
//     send its answer, then closes the connection; a session in IDLE is
//     told BYE first. After its context ends it cuts the rest.
//   - A selected mailbox whose UIDVALIDITY changed (deleted and created
//     again, index rebuilt) or that was deleted ends the session with BYE
//     at the next command or IDLE wake-up: RFC 9051 offers no other way
//     to make the client resynchronise.
//   - Malformed input is answered BAD (or NO) by go-imap; a line it cannot
//     split into tag and command closes the connection.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Defaults of Options.
const (
	// DefaultMaxSessions bounds concurrent connections, as dovecot's
	// default_client_limit does.
	DefaultMaxSessions = 1000
	// DefaultMaxAppendSize is the largest APPEND accepted when
	// Options.MaxAppendSize is not set.
	DefaultMaxAppendSize = 50 << 20
)

const (
	// storeTimeout bounds one command's work with auth or the store.
	storeTimeout = 2 * time.Minute
	// refuseTimeout bounds the write of the BYE to a refused connection,
	// and of the last output to a connection being closed.
	refuseTimeout = 5 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("imapd: server closed")

// Options configure a Server; Store and Auth are required, the rest
// have defaults.
type Options struct {
	Store store.Store   // every user's mailboxes
	Auth  Authenticator // checks logins: *authclient.Client in production

	// TLS, when set, is offered by STARTTLS, or spoken from the first
	// byte when ImplicitTLS is set (IMAPS, RFC 8314).
	TLS         *tls.Config
	ImplicitTLS bool
	// AllowPlaintextAuth lets LOGIN and AUTHENTICATE PLAIN through on a
	// connection without TLS; otherwise they get NO [PRIVACYREQUIRED].
	AllowPlaintextAuth bool

	MaxSessions   int   // connections served at once; DefaultMaxSessions
	MaxAppendSize int64 // APPENDLIMIT, larger is NO [TOOBIG]; DefaultMaxAppendSize

	Logger  *slog.Logger // default: discard
	Metrics *Metrics     // shared by the servers of a process; default: unread
}

// Server is an IMAP server. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	imap    *imapserver.Server

	// ctx is the parent of every command's context; cancel ends the store
	// and auth calls of sessions that Shutdown gives up waiting for.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // protects listeners, conns, closing and nextID
	listeners map[net.Listener]struct{}
	conns     map[*trackedConn]struct{}
	closing   bool
	nextID    uint64
	// drained is closed once the server is closing and its last
	// connection is gone.
	drained     chan struct{}
	drainedOnce sync.Once
}

// New returns a Server; Serve starts it.
func New(opts Options) *Server {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxAppendSize <= 0 {
		opts.MaxAppendSize = DefaultMaxAppendSize
	}
	// APPENDLIMIT is a 32-bit number in go-imap.
	opts.MaxAppendSize = min(opts.MaxAppendSize, math.MaxUint32)
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ctx: ctx, cancel: cancel, drained: make(chan struct{}),
		conns:     make(map[*trackedConn]struct{}),
		listeners: make(map[net.Listener]struct{}),
		opts:      opts, log: opts.Logger, metrics: opts.Metrics,
	}
	var starttls *tls.Config
	if !opts.ImplicitTLS {
		starttls = opts.TLS
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities(),
		Logger:       libraryLogger{s.log},
		TLSConfig:    starttls,
		InsecureAuth: opts.AllowPlaintextAuth,
	})
	return s
}

// capabilities are the extensions the backend implements; imapserver adds
// the ones it handles alone (STARTTLS, AUTH=PLAIN, LOGINDISABLED, IDLE,
// ENABLE, UNSELECT, UTF8=ACCEPT, SASL-IR, LITERAL-, APPENDLIMIT=n).
func capabilities() imap.CapSet {
	return imap.CapSet{
		imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
		imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
		imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapMove: {}, imap.CapStatusSize: {},
		imap.CapBinary: {}, imap.CapChildren: {}, imap.CapSpecialUse: {}, imap.CapLiteralPlus: {},
	}
}

// libraryLogger passes imapserver's messages (mostly "failed to read
// command" when a client goes away) to the debug log.
type libraryLogger struct{ log *slog.Logger }

func (l libraryLogger) Printf(format string, args ...any) {
	l.log.Debug("imap: " + fmt.Sprintf(format, args...))
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown; then it returns ErrServerClosed. It closes l. A Server
// may serve several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	if err := s.addListener(l); err != nil {
		l.Close()
		return err
	}
	defer s.removeListener(l)
	s.log.Info("imap listening", "addr", l.Addr().String(), "implicit_tls", s.opts.ImplicitTLS,
		"starttls", s.opts.TLS != nil && !s.opts.ImplicitTLS)
	err := s.imap.Serve(&listener{Listener: l, srv: s})
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrServerClosed
	}
	if err == nil {
		err = net.ErrClosed
	}
	return fmt.Errorf("imapd: serve: %w", err)
}

// addListener registers l for Shutdown to close, unless the options are
// incomplete or the server is closing.
func (s *Server) addListener(l net.Listener) error {
	var problems []string
	if s.opts.Store == nil {
		problems = append(problems, "no store")
	}
	if s.opts.Auth == nil {
		problems = append(problems, "no authenticator")
	}
	if s.opts.ImplicitTLS && s.opts.TLS == nil {
		problems = append(problems, "implicit TLS without a TLS configuration")
	}
	if len(problems) > 0 {
		return fmt.Errorf("imapd: %s", strings.Join(problems, ", "))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	return nil
}

func (s *Server) removeListener(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
	l.Close()
}

// admit registers a new connection and reports true, or reports false
// when the server is full; a closing server admits nothing.
func (s *Server) admit(c *trackedConn) (admitted, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || len(s.conns) >= s.opts.MaxSessions {
		return false, s.closing
	}
	s.nextID++
	c.id = s.nextID
	s.conns[c] = struct{}{}
	s.metrics.sessions.Inc()
	s.metrics.active.Inc()
	return true, false
}

// untrack is called once, when the library closes the connection (after
// it closed the session and so its store handles).
func (s *Server) untrack(c *trackedConn) {
	s.metrics.active.Dec()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.checkDrained()
}

// checkDrained closes drained when nothing is left to wait for; s.mu is
// held.
func (s *Server) checkDrained() {
	if s.closing && len(s.conns) == 0 {
		s.drainedOnce.Do(func() { close(s.drained) })
	}
}

// Shutdown stops accepting connections and ends every session: a command
// in progress finishes and its answer is sent, then the connection is
// closed (a session in IDLE is told BYE). When ctx ends first, the
// remaining connections are cut and their store calls cancelled; Shutdown
// returns ctx's error once they are gone.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.interrupt()
	}
	s.checkDrained()
	s.mu.Unlock()

	var err error
	select {
	case <-s.drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.conns {
			c.Conn.Close() // the socket only: the library still closes the session
		}
		s.mu.Unlock()
	}
	s.cancel()
	<-s.drained
	return err
}

// listener hands imapserver the accepted connections: counted, limited,
// wrapped in TLS for implicit TLS, and interruptible by Shutdown.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: conn, srv: l.srv}
		admitted, closing := l.srv.admit(tc)
		if closing {
			conn.Close()
			return nil, net.ErrClosed
		}
		if !admitted {
			l.srv.metrics.refused.Inc()
			l.srv.log.Warn("imap connection refused: max_sessions reached", "remote", conn.RemoteAddr().String())
			go l.srv.refuse(conn)
			continue
		}
		if l.srv.opts.ImplicitTLS {
			// imapserver recognises a TLS connection by its type
			// (*tls.Conn), so this must be the outermost wrapper.
			return tls.Server(tc, l.srv.opts.TLS), nil
		}
		return tc, nil
	}
}

// refuse tells a connection over MaxSessions to come back later, when it
// can be told in plaintext, and closes it.
func (s *Server) refuse(conn net.Conn) {
	defer conn.Close()
	if s.opts.ImplicitTLS {
		return // a handshake just to say no is not worth its CPU
	}
	conn.SetWriteDeadline(time.Now().Add(refuseTimeout))
	conn.Write([]byte("* BYE [UNAVAILABLE] too many connections, try again later\r\n"))
}

// trackedConn is the accepted socket.
//
// Its read deadline can be forced into the past (interrupt): the library's
// own deadlines then cannot undo it, so a session ends at its next read,
// which comes after the answer to the command in progress.
//
// It also gathers writes: imapserver flushes every response line, which
// for FETCH 1:* FLAGS on 10,000 messages is 10,000 system calls. Output
// waits in wbuf until the server reads again (it has answered then) or
// wbuf is full; while a read is blocked, writes (IDLE's updates) go out at
// once.
//
// For the same reason the write deadline is applied lazily: imapserver
// sets one at the start and clears it at the end of every response (two
// updates of the runtime's timer per FETCH line, which were a third of
// the server's time in FETCH 1:* FLAGS), but only a write to the socket
// can block. SetWriteDeadline records the deadline; it is given to the
// socket before the next write that reaches it.
type trackedConn struct {
	net.Conn
	srv *Server
	id  uint64

	mu          sync.Mutex // protects interrupted, closed and idleWake
	interrupted bool
	closed      bool
	// idleWake is closed by interrupt while the session is in IDLE, whose
	// backend then says BYE instead of the read being cut.
	idleWake chan struct{}

	// wdeadline is the write deadline last asked for, in Unix
	// nanoseconds, 0 for none.
	wdeadline atomic.Int64

	wmu     sync.Mutex // protects wbuf, reading and applied; held while writing to Conn
	wbuf    []byte
	reading bool  // a Read is blocked: write through
	applied int64 // the write deadline set on Conn, as wdeadline
}

// Output gathering: flush at this size, and bound a flush that the
// server does (before a read, or closing) rather than the library.
const (
	writeBufferSize = 32 << 10
	flushTimeout    = 30 * time.Second
)

func (c *trackedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.reading {
		c.applyWriteDeadline(c.wdeadline.Load())
		return c.Conn.Write(p)
	}
	c.wbuf = append(c.wbuf, p...)
	if len(c.wbuf) >= writeBufferSize {
		if err := c.flushLocked(c.wdeadline.Load()); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// SetWriteDeadline records t for the next write to the socket.
func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	c.wdeadline.Store(deadlineNanos(t))
	return nil
}

// deadlineNanos is t as wdeadline keeps it.
func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}

// applyWriteDeadline gives the socket the write deadline d (as
// wdeadline) unless it has it already; c.wmu is held.
func (c *trackedConn) applyWriteDeadline(d int64) {
	if d == c.applied {
		return
	}
	var t time.Time
	if d != 0 {
		t = time.Unix(0, d)
	}
	c.Conn.SetWriteDeadline(t)
	c.applied = d
}

// flushLocked sends wbuf under the write deadline d (as wdeadline);
// c.wmu is held. Output that cannot be sent is dropped with the error:
// the connection is lost.
func (c *trackedConn) flushLocked(d int64) error {
	if len(c.wbuf) == 0 {
		return nil
	}
	c.applyWriteDeadline(d)
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return err
}

// flushWithin sends what waits, within timeout; c.wmu is held.
func (c *trackedConn) flushWithin(timeout time.Duration) error {
	if len(c.wbuf) == 0 {
		return nil
	}
	return c.flushLocked(deadlineNanos(time.Now().Add(timeout)))
}

// past is a read deadline that has passed.
var past = time.Unix(1, 0)

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		t = past
	}
	return c.Conn.SetReadDeadline(t)
}

// Read reports the end of input once the connection is interrupted: to
// imapserver a client that hung up, which ends the session without an
// error response, rather than a failed read.
//
// Before reading, it sends the output gathered so far.
func (c *trackedConn) Read(b []byte) (int, error) {
	c.wmu.Lock()
	if err := c.flushWithin(flushTimeout); err != nil {
		c.wmu.Unlock()
		return 0, err
	}
	c.reading = true
	c.wmu.Unlock()
	n, err := c.Conn.Read(b)
	c.wmu.Lock()
	c.reading = false
	c.wmu.Unlock()
	if ne, ok := err.(net.Error); ok && ne.Timeout() && c.isInterrupted() {
		err = io.EOF
	}
	return n, err
}

func (c *trackedConn) isInterrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// interrupt makes the current or next read fail at once, or wakes the
// session's IDLE.
func (c *trackedConn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	if c.idleWake != nil {
		close(c.idleWake)
		c.idleWake = nil
		return
	}
	c.Conn.SetReadDeadline(past)
}

// startIdle returns the channel interrupt closes during IDLE (already
// closed when the connection was interrupted before).
func (c *trackedConn) startIdle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	wake := make(chan struct{})
	if c.interrupted {
		close(wake)
	} else {
		c.idleWake = wake
	}
	return wake
}

// endIdle ends IDLE: an interrupt cuts reads again.
func (c *trackedConn) endIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idleWake = nil
	if c.interrupted {
		c.Conn.SetReadDeadline(past)
	}
}

// Close sends what output waits (a BYE, TLS's close_notify), closes the
// socket and, the first time, untracks the connection.
func (c *trackedConn) Close() error {
	c.wmu.Lock()
	c.flushWithin(refuseTimeout)
	c.wmu.Unlock()
	err := c.Conn.Close()
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	c.mu.Unlock()
	if first {
		c.srv.untrack(c)
	}
	return err
}

// tracked returns the trackedConn under a connection imapserver serves.
func tracked(conn net.Conn) (*trackedConn, bool) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	c, ok := conn.(*trackedConn)
	return c, ok
}
