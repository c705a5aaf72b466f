// Package pop3d is the mailbox service's POP3 server: the maildrop (INBOX)
// of each user, read and emptied by POP3 clients.
//
// It implements RFC 1939 (POP3: the AUTHORIZATION, TRANSACTION and UPDATE
// states; USER, PASS, STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET, QUIT)
// with these extensions: RFC 2449 (CAPA and extended response codes),
// RFC 2595 section 4 (STLS), RFC 5034 (AUTH, with the PLAIN mechanism of
// RFC 4616) and RFC 3206 (the [AUTH] and [SYS/TEMP] response codes). APOP
// is not offered: it needs the password in clear on the server, and the
// auth service keeps only hashes. LAST (removed by RFC 1725) is unknown.
//
// Policies an operator coming from dovecot should know:
//
//   - Plaintext logins (USER/PASS, AUTH PLAIN) are refused before TLS
//     with "-ERR [AUTH]", and USER and SASL PLAIN are left out of CAPA,
//     unless Options.AllowPlaintextAuth is set. There is no exception for
//     loopback clients (dovecot has one): behind a proxy on the same host
//     every client would look local.
//   - Several sessions may open one maildrop at the same time, as with
//     dovecot's default (pop3_lock_session = no). RFC 1939 section 4 asks
//     for an exclusive lock, but the store keeps concurrent sessions
//     consistent (a message deleted by one session is simply gone for the
//     other; deleting it twice is harmless), and a lock left by a dropped
//     connection would keep the user out, which is the usual complaint
//     about locking POP3 servers. So [IN-USE] is never sent.
//   - A lockout by auth (too many failed logins) is answered with
//     "-ERR [LOGIN-DELAY]" and the delay auth gave: RFC 2449 section 8.1
//     defines that code for "not allowed to log in again until a delay has
//     expired", and a client seeing it waits instead of prompting for a
//     new password, which [AUTH] (RFC 3206: the credentials are
//     at fault) would make it do.
//   - Auth unreachable is "-ERR [SYS/TEMP]" and the session stays in the
//     AUTHORIZATION state, so the client may try again.
//   - Sizes in STAT and LIST are the octets RETR sends, CRLF line ends
//     included, even for a message stored with bare LF (a Maildir from
//     dovecot): each message is measured once and the result kept by its
//     stable ID (see message.go).
//   - Messages RETR'd (not TOP'ped) get \Seen at QUIT, like dovecot's
//     pop3_no_flag_updates = no, so that IMAP clients of the same mailbox
//     see them as read. DELE'd messages are expunged at QUIT only; a
//     dropped connection changes nothing (RFC 1939 section 6).
package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Defaults of Options.
const (
	// DefaultIdleTimeout is RFC 1939 section 3's minimum autologout timer.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultMaxSessions bounds concurrent connections, as dovecot's
	// default_client_limit does.
	DefaultMaxSessions = 1000
	// DefaultMaxLineLength bounds a command line. RFC 2449 section 4 caps
	// commands at 255 octets, but an AUTH PLAIN line carries a base64 user
	// name and password and may be longer.
	DefaultMaxLineLength = 4096
)

const (
	// handshakeTimeout bounds a TLS handshake (implicit TLS or STLS),
	// unless IdleTimeout is shorter.
	handshakeTimeout = 30 * time.Second
	// storeTimeout bounds a login's or QUIT's work with auth and the store.
	storeTimeout = time.Minute
	// maxBadCommands is how many invalid commands (unknown, malformed,
	// too long, wrong state) a session may send before it is closed.
	maxBadCommands = 20
	// maxAuthFailures is how many failed logins a session may make before
	// it is closed (RFC 1939 section 7, PASS: the server may close the
	// connection after a number of failures). Auth's lockout is the real
	// brute-force defence; this just makes an attacker reconnect.
	maxAuthFailures = 3
	// minLineLength keeps MaxLineLength sensible: RFC 2449 section 4
	// allows 255-octet commands.
	minLineLength = 256
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pop3d: server closed")

// Options configure a Server. Store and Auth are required.
type Options struct {
	// Store holds the maildrops: each user's INBOX.
	Store store.Store
	// Auth checks logins; *authclient.Client in production.
	Auth Authenticator
	// TLS is the server's TLS configuration: STLS is offered when it is
	// set and ImplicitTLS is not. nil: no TLS at all.
	TLS *tls.Config
	// ImplicitTLS makes every connection start with a TLS handshake
	// (POP3S, port 995, RFC 8314). Requires TLS.
	ImplicitTLS bool
	// AllowPlaintextAuth allows USER/PASS and AUTH PLAIN on a connection
	// without TLS. Default false: they are refused with -ERR [AUTH]. Set it
	// for tests on plain TCP, or behind a TLS-terminating proxy.
	AllowPlaintextAuth bool
	// IdleTimeout closes a connection that sends nothing for that long,
	// and bounds each write. Default DefaultIdleTimeout (RFC 1939 section
	// 3 wants at least 10 minutes; shorter values are for tests).
	IdleTimeout time.Duration
	// MaxLineLength bounds a command line, CRLF included; a longer one is
	// answered -ERR and skipped. Default DefaultMaxLineLength; at least 256.
	MaxLineLength int
	// MaxSessions bounds the connections served at once; one more is told
	// "-ERR [SYS/TEMP]" and closed. Default DefaultMaxSessions.
	MaxSessions int
	// Logger receives session logs; default: discard.
	Logger *slog.Logger
	// Metrics records sessions, logins by result, octets retrieved and
	// messages deleted; from NewMetrics, shared by the servers of a
	// process. nil: none.
	Metrics *Metrics
	// Hostname is named in the greeting; default os.Hostname().
	Hostname string
}

// Server is a POP3 server. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	sizes   sizeCache

	// ctx is the parent of every session's context; cancel ends the
	// store and auth calls of sessions that Shutdown gives up waiting for.
	ctx    context.Context
	cancel context.CancelFunc
	nextID atomic.Uint64
	wg     sync.WaitGroup // running sessions

	mu        sync.Mutex // protects listeners, sessions and closing
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	closing   bool
}

// New returns a Server; Serve starts it.
func New(opts Options) *Server {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = DefaultMaxLineLength
	}
	opts.MaxLineLength = max(opts.MaxLineLength, minLineLength)
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
		if opts.Hostname == "" {
			opts.Hostname = "localhost"
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:      opts,
		log:       opts.Logger,
		metrics:   opts.Metrics,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
	}
}

// check reports configuration errors.
func (s *Server) check() error {
	switch {
	case s.opts.Store == nil:
		return errors.New("pop3d: no store")
	case s.opts.Auth == nil:
		return errors.New("pop3d: no authenticator")
	case s.opts.ImplicitTLS && s.opts.TLS == nil:
		return errors.New("pop3d: implicit TLS without a TLS configuration")
	}
	return nil
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown; then it returns ErrServerClosed. It closes l. A Server may
// serve several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	if err := s.check(); err != nil {
		l.Close()
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	s.log.Info("pop3 listening", "addr", l.Addr().String(), "implicit_tls", s.opts.ImplicitTLS, "stls", s.opts.TLS != nil && !s.opts.ImplicitTLS)
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("pop3d: accept: %w", err)
			}
			// Out of file descriptors, a connection aborted before
			// accept: wait a little and carry on, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("pop3 accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		sess := s.newSession(conn)
		switch err := s.track(sess); {
		case errors.Is(err, ErrServerClosed):
			conn.Close()
			return err
		case err != nil:
			sess.log.Warn("pop3 connection refused", "err", err)
			go s.refuse(conn)
			continue
		}
		go sess.run()
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// errTooManySessions refuses a connection over MaxSessions.
var errTooManySessions = errors.New("too many connections")

// track registers a new session, unless the server is shutting down
// (ErrServerClosed) or full (errTooManySessions).
func (s *Server) track(sess *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return ErrServerClosed
	case len(s.sessions) >= s.opts.MaxSessions:
		return errTooManySessions
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	return nil
}

// refuse tells a connection over MaxSessions to come back later, when it
// can be told in plaintext, and closes it.
func (s *Server) refuse(conn net.Conn) {
	defer conn.Close()
	if s.opts.ImplicitTLS {
		return // a handshake just to say no is not worth its CPU
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "-ERR [SYS/TEMP] too many connections, try again later\r\n")
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting connections and asks every session to end: a
// session waiting for a command ends now, one running a command ends when
// the command is done (a RETR finishes sending its message). Sessions end
// with "-ERR [SYS/TEMP]" and without the UPDATE state, so nothing is
// deleted that the client did not see a QUIT answer for. When ctx ends
// first, the remaining connections are closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.interrupt()
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for sess := range s.sessions {
		sess.forceClose()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// newSession prepares a session on a new connection.
func (s *Server) newSession(conn net.Conn) *session {
	id := s.nextID.Add(1)
	remoteIP := ""
	if host, _, err := net.SplitHostPort(conn.RemoteAddr().String()); err == nil {
		remoteIP = host
	}
	sess := &session{
		srv:      s,
		raw:      conn,
		remoteIP: remoteIP,
		log:      s.log.With("session", id, "remote", conn.RemoteAddr().String()),
	}
	sess.setConn(conn)
	return sess
}

// deadlineWriter refreshes the connection's write deadline before each
// write, so a client that stops reading is dropped after IdleTimeout
// while a slow but steady one can fetch a large message.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, err
	}
	return w.conn.Write(p)
}

// newReader returns the buffered reader of a connection: its size is the
// longest line readLine accepts.
func (s *Server) newReader(conn net.Conn) *bufio.Reader {
	return bufio.NewReaderSize(conn, s.opts.MaxLineLength)
}
