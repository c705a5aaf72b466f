package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// state is a POP3 session state (RFC 1939 section 3). UPDATE is not a
// state a session waits in: QUIT in TRANSACTION runs it and ends.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// Errors that end a session.
var (
	errLineTooLong = errors.New("line too long")
	// errClose ends a session after its last reply was written.
	errClose = errors.New("session closed")
)

// msg is one message of the maildrop as numbered at login.
type msg struct {
	uid        store.UID
	id         string
	storedSize int64
	wire       int64 // octets as sent; -1 until measured
	deleted    bool  // DELE'd: expunged at QUIT
	retrieved  bool  // RETR'd: \Seen at QUIT
}

// session is one client connection. Its fields are used by its own
// goroutine only, except those under mu.
type session struct {
	srv      *Server
	raw      net.Conn // the accepted connection
	remoteIP string
	log      *slog.Logger

	r     *bufio.Reader
	w     *bufio.Writer
	tls   bool
	state state

	user        string // from USER, waiting for PASS
	address     string // the logged-in user, canonical
	mbs         store.Mailboxes
	mb          store.Mailbox
	msgs        []*msg
	badCommands int
	authFails   int

	mu          sync.Mutex // protects conn and interrupted
	conn        net.Conn   // raw, or the TLS connection over it
	interrupted bool       // Shutdown asked the session to end
}

// setConn makes conn the connection the session reads and writes. Any
// input buffered from the previous connection is dropped: after STLS that
// is plaintext the client pipelined before the handshake, which must not be
// executed inside the TLS session (RFC 2595 section 4; CVE-2011-0411).
func (sess *session) setConn(conn net.Conn) {
	sess.mu.Lock()
	sess.conn = conn
	sess.mu.Unlock()
	sess.r = sess.srv.newReader(conn)
	sess.w = bufio.NewWriter(deadlineWriter{conn: conn, timeout: sess.srv.opts.IdleTimeout})
}

// interrupt asks the session to end (Shutdown): a read in progress or the
// next one fails at once.
func (sess *session) interrupt() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.interrupted = true
	sess.conn.SetReadDeadline(time.Now())
}

func (sess *session) isInterrupted() bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.interrupted
}

// forceClose closes the connection under a running command.
func (sess *session) forceClose() {
	sess.raw.Close()
}

// armDeadline sets the read deadline for the next read, unless the session
// has been interrupted (then the deadline stays in the past). Taking mu
// orders it with interrupt, so an interrupt is never overwritten.
func (sess *session) armDeadline(d time.Duration) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.interrupted {
		return false
	}
	sess.conn.SetReadDeadline(time.Now().Add(d))
	return true
}

// ctx returns a context for one command's work with auth or the store.
func (sess *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(sess.srv.ctx, storeTimeout)
}

// run serves the connection until it ends; it never panics.
func (sess *session) run() {
	m := sess.srv.metrics
	m.sessionStarted()
	defer func() {
		if v := recover(); v != nil {
			m.panicked()
			sess.log.Error("pop3 session panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			// The session's state is unknown: no UPDATE, just a word.
			sess.w.WriteString("-ERR [SYS/TEMP] internal server error\r\n")
			sess.w.Flush()
		}
		sess.closeMailbox()
		// Closing the TLS connection, when there is one, sends its
		// close_notify first (within a bounded time, see crypto/tls).
		sess.mu.Lock()
		conn := sess.conn
		sess.mu.Unlock()
		conn.Close()
		sess.raw.Close()
		m.sessionEnded()
		sess.srv.untrack(sess)
	}()
	sess.log.Debug("pop3 connection")
	if err := sess.serve(); err != nil && !errors.Is(err, errClose) {
		sess.log.Info("pop3 session ended", "err", err)
		return
	}
	sess.log.Debug("pop3 session ended")
}

// serve runs the command loop; errClose or nil is a normal end.
func (sess *session) serve() error {
	if sess.srv.opts.ImplicitTLS {
		if err := sess.handshake(); err != nil {
			return err
		}
	}
	sess.reply("+OK " + sess.srv.opts.Hostname + " POP3 server ready")
	for {
		// Pipelining (RFC 2449 section 6.6): answers to commands already
		// received go out together, once the input is drained.
		if sess.r.Buffered() == 0 {
			if err := sess.w.Flush(); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		line, err := sess.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			if err := sess.bad("-ERR line too long"); err != nil {
				return err
			}
			continue
		case err != nil:
			return sess.readFailed(err)
		}
		if err := sess.dispatch(line); err != nil {
			sess.w.Flush()
			return err
		}
		if sess.isInterrupted() {
			return sess.readFailed(errClose)
		}
	}
}

// readFailed ends the session after a failed read: a shutdown gets a
// word, a timeout or a dropped client gets none (RFC 1939 section 3:
// the autologout timer closes the connection without a response).
func (sess *session) readFailed(err error) error {
	if sess.isInterrupted() {
		sess.reply("-ERR [SYS/TEMP] server shutting down, try again later")
		sess.w.Flush()
		return errClose
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		sess.log.Info("pop3 idle timeout", "user", sess.address)
		return errClose
	}
	return fmt.Errorf("read: %w", err)
}

// readLine reads one line, without its CRLF (a bare LF is accepted too).
// A line longer than MaxLineLength is read to its end and discarded, and
// errLineTooLong returned.
func (sess *session) readLine() (string, error) {
	if !sess.armDeadline(sess.srv.opts.IdleTimeout) {
		return "", errClose
	}
	line, err := sess.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = sess.r.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// reply writes one response line.
func (sess *session) reply(line string) {
	sess.w.WriteString(line)
	sess.w.WriteString("\r\n")
}

// bad answers an invalid command and closes the session when there have
// been too many.
func (sess *session) bad(line string) error {
	sess.badCommands++
	if sess.badCommands >= maxBadCommands {
		sess.reply("-ERR too many invalid commands, closing")
		sess.log.Info("pop3 too many invalid commands")
		return errClose
	}
	sess.reply(line)
	return nil
}

// dispatch runs one command line. A non-nil error ends the session.
func (sess *session) dispatch(line string) error {
	cmd, err := parseCommand(line)
	switch {
	case errors.Is(err, errEmptyCommand):
		return sess.bad("-ERR empty command")
	case errors.Is(err, errBadKeyword):
		return sess.bad("-ERR unknown command")
	case err != nil:
		return sess.bad("-ERR invalid arguments")
	}
	switch cmd.name {
	case "CAPA":
		return sess.capa(cmd)
	case "QUIT":
		return sess.quit(cmd)
	}
	if sess.state == stateAuthorization {
		switch cmd.name {
		case "USER":
			return sess.userCmd(cmd)
		case "PASS":
			return sess.pass(cmd)
		case "AUTH":
			return sess.auth(cmd)
		case "STLS":
			return sess.stls(cmd)
		case "APOP":
			sess.reply("-ERR APOP is not supported; use USER/PASS or AUTH PLAIN")
			return nil
		case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET":
			return sess.bad("-ERR not logged in")
		}
		return sess.bad("-ERR unknown command")
	}
	switch cmd.name {
	case "STAT":
		return sess.stat(cmd)
	case "LIST":
		return sess.list(cmd, false)
	case "UIDL":
		return sess.list(cmd, true)
	case "RETR":
		return sess.retr(cmd)
	case "TOP":
		return sess.top(cmd)
	case "DELE":
		return sess.dele(cmd)
	case "NOOP":
		if len(cmd.args) != 0 {
			return sess.bad("-ERR NOOP takes no arguments")
		}
		sess.reply("+OK")
		return nil
	case "RSET":
		return sess.rset(cmd)
	case "USER", "PASS", "AUTH", "STLS", "APOP":
		return sess.bad("-ERR already logged in")
	}
	return sess.bad("-ERR unknown command")
}

// plaintextAllowed says whether USER/PASS and AUTH PLAIN may be used now.
func (sess *session) plaintextAllowed() bool {
	return sess.tls || sess.srv.opts.AllowPlaintextAuth
}

// capa answers CAPA (RFC 2449 section 5). The list depends on the
// connection only, not on the state, except STLS which is valid in the
// AUTHORIZATION state only (RFC 2595 section 4).
func (sess *session) capa(cmd command) error {
	if len(cmd.args) != 0 {
		return sess.bad("-ERR CAPA takes no arguments")
	}
	sess.reply("+OK capability list follows")
	sess.reply("TOP")
	sess.reply("UIDL")
	sess.reply("RESP-CODES")
	sess.reply("AUTH-RESP-CODE")
	sess.reply("PIPELINING")
	sess.reply("EXPIRE NEVER")
	sess.reply("LOGIN-DELAY 0")
	if sess.plaintextAllowed() {
		sess.reply("USER")
		sess.reply("SASL PLAIN")
	}
	if sess.state == stateAuthorization && sess.stlsAvailable() {
		sess.reply("STLS")
	}
	sess.reply("IMPLEMENTATION postcove")
	sess.reply(".")
	return nil
}

func (sess *session) stlsAvailable() bool {
	return sess.srv.opts.TLS != nil && !sess.tls
}

// stls answers STLS and runs the handshake (RFC 2595 section 4).
func (sess *session) stls(cmd command) error {
	if len(cmd.args) != 0 {
		return sess.bad("-ERR STLS takes no arguments")
	}
	if sess.tls {
		sess.reply("-ERR command not permitted when TLS active")
		return nil
	}
	if sess.srv.opts.TLS == nil {
		sess.reply("-ERR STLS not available")
		return nil
	}
	sess.reply("+OK begin TLS negotiation")
	if err := sess.w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n := sess.r.Buffered(); n > 0 {
		sess.log.Warn("pop3 input pipelined after STLS discarded", "bytes", n)
	}
	return sess.handshake()
}

// handshake runs a TLS server handshake on the connection and switches to
// it; the reader is replaced, so nothing read before survives (setConn).
func (sess *session) handshake() error {
	tc := tls.Server(sess.raw, sess.srv.opts.TLS)
	timeout := min(handshakeTimeout, sess.srv.opts.IdleTimeout)
	if !sess.armDeadline(timeout) {
		return errClose
	}
	sess.raw.SetWriteDeadline(time.Now().Add(timeout))
	ctx, cancel := context.WithTimeout(sess.srv.ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	sess.raw.SetWriteDeadline(time.Time{})
	st := tc.ConnectionState()
	sess.log.Debug("pop3 tls", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	sess.tls = true
	sess.setConn(tc)
	return nil
}

// refusePlaintext answers USER, PASS or AUTH PLAIN on a connection without
// TLS when that is not allowed, with the code dovecot uses for it. A USER
// is not a login attempt and is not counted as one.
func (sess *session) refusePlaintext(attempt bool) {
	if attempt {
		sess.srv.metrics.login(loginRefused)
	}
	if sess.stlsAvailable() {
		sess.reply("-ERR [AUTH] plaintext authentication disallowed without TLS; use STLS first")
		return
	}
	sess.reply("-ERR [AUTH] plaintext authentication disallowed without TLS")
}

func (sess *session) userCmd(cmd command) error {
	if !sess.plaintextAllowed() {
		sess.refusePlaintext(false)
		return nil
	}
	if len(cmd.args) != 1 || strings.TrimSpace(cmd.args[0]) == "" {
		return sess.bad("-ERR USER needs a user name")
	}
	sess.user = cmd.args[0]
	sess.reply("+OK send PASS")
	return nil
}

func (sess *session) pass(cmd command) error {
	if !sess.plaintextAllowed() {
		sess.refusePlaintext(true)
		return nil
	}
	user := sess.user
	sess.user = ""
	if user == "" {
		return sess.bad("-ERR send USER first")
	}
	if len(cmd.args) != 1 {
		// An empty password never succeeds; auth need not be asked.
		return sess.loginFailed(user, loginFailed, 0, errors.New("empty password"))
	}
	return sess.login(user, cmd.args[0])
}

// auth answers AUTH (RFC 5034). Without arguments it lists the mechanisms,
// as clients from before RFC 5034 expect.
func (sess *session) auth(cmd command) error {
	if len(cmd.args) == 0 {
		sess.reply("+OK SASL mechanisms follow")
		if sess.plaintextAllowed() {
			sess.reply("PLAIN")
		}
		sess.reply(".")
		return nil
	}
	if len(cmd.args) > 2 {
		return sess.bad("-ERR invalid arguments")
	}
	if !strings.EqualFold(cmd.args[0], "PLAIN") {
		sess.reply("-ERR unsupported authentication mechanism")
		return nil
	}
	if !sess.plaintextAllowed() {
		sess.refusePlaintext(true)
		return nil
	}
	var resp string
	if len(cmd.args) == 2 {
		// RFC 5034 section 4: "=" is an empty initial response.
		resp = cmd.args[1]
		if resp == "=" {
			resp = ""
		}
	} else {
		// An empty challenge: "+ " and the client's response on a line.
		sess.reply("+ ")
		if err := sess.w.Flush(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		line, err := sess.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			return sess.bad("-ERR line too long")
		case err != nil:
			return sess.readFailed(err)
		}
		if line == "*" {
			sess.reply("-ERR authentication cancelled")
			return nil
		}
		resp = line
	}
	user, pass, err := decodePlain(resp)
	if err != nil {
		return sess.loginFailed(user, loginFailed, 0, err)
	}
	return sess.login(user, pass)
}

// login checks user and pass with auth, opens the maildrop and enters the
// TRANSACTION state.
func (sess *session) login(user, pass string) error {
	ctx, cancel := sess.ctx()
	defer cancel()
	u, err := sess.srv.opts.Auth.Authenticate(ctx, user, pass, authService, sess.remoteIP, sess.tls)
	if err != nil {
		result, retry := classifyAuthError(err)
		return sess.loginFailed(user, result, retry, err)
	}
	if err := sess.openMaildrop(ctx, u.Address); err != nil {
		sess.srv.metrics.login(loginUnavailable)
		sess.log.Error("pop3 maildrop unavailable", "user", u.Address, "err", err)
		sess.reply("-ERR [SYS/TEMP] mailbox unavailable, try again later")
		return nil
	}
	sess.srv.metrics.login(loginOK)
	sess.address = u.Address
	sess.state = stateTransaction
	sess.log = sess.log.With("user", u.Address)
	sess.log.Info("pop3 login", "tls", sess.tls, "messages", len(sess.msgs))
	sess.reply("+OK maildrop ready, " + strconv.Itoa(len(sess.msgs)) + " messages")
	return nil
}

// loginFailed answers a login that did not succeed.
func (sess *session) loginFailed(user string, result loginResult, retry time.Duration, err error) error {
	sess.srv.metrics.login(result)
	sess.log.Info("pop3 login failed", "username", user, "result", string(result), "err", err)
	switch result {
	case loginUnavailable:
		// Not the client's fault: it may try again on this connection.
		sess.reply("-ERR [SYS/TEMP] authentication service unavailable, try again later")
		return nil
	case loginLocked:
		if retry > 0 {
			secs := int64((retry + time.Second - 1) / time.Second)
			sess.reply("-ERR [LOGIN-DELAY] too many failed logins, try again in " + strconv.FormatInt(secs, 10) + " seconds")
		} else {
			sess.reply("-ERR [LOGIN-DELAY] too many failed logins, try again later")
		}
	default:
		sess.reply("-ERR [AUTH] authentication failed")
	}
	sess.authFails++
	if sess.authFails >= maxAuthFailures {
		sess.log.Info("pop3 too many failed logins, closing")
		return errClose
	}
	return nil
}

// openMaildrop selects the user's INBOX and numbers its messages: the
// numbers hold for the whole session (RFC 1939 section 5), whatever
// other sessions or deliveries do meanwhile.
func (sess *session) openMaildrop(ctx context.Context, address string) error {
	mbs, err := sess.srv.opts.Store.User(ctx, address)
	if err != nil {
		return fmt.Errorf("open user: %w", err)
	}
	mb, err := mbs.Select(ctx, "INBOX")
	if err != nil {
		mbs.Close()
		return fmt.Errorf("select INBOX: %w", err)
	}
	list, err := mb.Messages(ctx, mb.UIDs())
	if err != nil {
		mb.Close()
		mbs.Close()
		return fmt.Errorf("list messages: %w", err)
	}
	sess.mbs, sess.mb = mbs, mb
	sess.msgs = make([]*msg, len(list))
	for i, m := range list {
		sess.msgs[i] = &msg{uid: m.UID, id: m.ID, storedSize: m.Size, wire: -1}
	}
	return nil
}

// closeMailbox releases the store handles.
func (sess *session) closeMailbox() {
	if sess.mb != nil {
		if err := sess.mb.Close(); err != nil {
			sess.log.Warn("pop3 close mailbox", "err", err)
		}
		sess.mb = nil
	}
	if sess.mbs != nil {
		if err := sess.mbs.Close(); err != nil {
			sess.log.Warn("pop3 close user", "err", err)
		}
		sess.mbs = nil
	}
}
