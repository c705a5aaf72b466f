package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/address"
	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// maxPathLen is RFC 5321 section 4.5.3.1.3's limit on a path, without
// the angle brackets.
const maxPathLen = 254

// maxAuthFailures is how many failed logins one connection may make
// before it is closed (postfix's smtpd_hard_error_limit plays this part):
// auth's lockout counts per IP over time, this makes a password guesser
// reconnect for every few guesses.
const maxAuthFailures = 3

// maxExpanded bounds the final recipients of one message after alias
// expansion (the queue stores at most this many).
const maxExpanded = 10000

// session is one client connection's SMTP state, from EHLO on (go-smtp
// makes a new one after STARTTLS).
type session struct {
	srv      *Server
	conn     *smtp.Conn
	tracked  *trackedConn
	log      *slog.Logger
	remoteIP string
	tls      *tls.ConnectionState // nil before TLS
	user     string               // the authenticated address, "" before AUTH
	authFail int                  // failed logins on this connection

	// The mail transaction (MAIL to the end of DATA).
	inTx  bool
	env   queue.Envelope
	rcpts []string            // the RCPT TO addresses accepted
	utf8  bool                // MAIL ... SMTPUTF8
	final map[string]struct{} // final addresses, to deliver duplicates once
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &session{
		srv:      s,
		conn:     c,
		tracked:  trackedOf(c.Conn()),
		remoteIP: hostOf(c.Conn().RemoteAddr()),
	}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = &st
	}
	sess.log = s.log.With("listener", s.name, "remote", sess.remoteIP, "helo", c.Hostname())
	if s.closing.Load() {
		sess.closeConn()
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
	}
	return sess, nil
}

// refuse counts and logs a refusal and returns the reply for it. cause,
// when not nil, is logged (the client sees only the reply text).
func (s *session) refuse(reason string, code int, enh smtp.EnhancedCode, msg string, cause error) error {
	s.srv.metrics.reject(s.srv.name, reason)
	attrs := []any{"reason", reason, "code", code}
	if cause != nil {
		attrs = append(attrs, "err", cause)
	}
	level := slog.LevelInfo
	if code/100 == 4 {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "refused", attrs...)
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// closeConn closes the client connection under go-smtp, which then ends
// the session.
func (s *session) closeConn() {
	if s.tracked != nil {
		s.tracked.Close()
	} else {
		s.conn.Conn().Close()
	}
}

// setBusy marks the connection as in a mail transaction or not; Shutdown
// waits for busy ones. It returns false when the server is shutting down
// and no new transaction may start.
func (s *session) setBusy(busy bool) bool {
	s.inTx = busy
	if s.tracked != nil {
		s.tracked.busy.Store(busy)
	}
	// Checked after the store, so that either Shutdown sees the
	// connection busy or this sees Shutdown begun.
	return !s.srv.closing.Load()
}

// Reset ends the transaction (RSET, EHLO, the end of DATA).
func (s *session) Reset() {
	s.env = queue.Envelope{}
	s.rcpts = nil
	s.utf8 = false
	s.final = nil
	if !s.setBusy(false) {
		// Shutting down and this transaction is over: the session is.
		s.closeConn()
	}
}

func (s *session) Logout() error {
	s.setBusy(false)
	return nil
}

// AuthMechanisms offers PLAIN and LOGIN on submission over TLS only (RFC
// 4954 section 4: no plaintext passwords on an unencrypted connection).
func (s *session) AuthMechanisms() []string {
	if s.srv.opts.Mode != Submission || s.tls == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	switch {
	case s.srv.opts.Mode != Submission:
		return nil, s.refuse("auth_unsupported", 503, smtp.EnhancedCode{5, 5, 1}, "AUTH is for submission, on port 587 or 465", nil)
	case s.tls == nil:
		// RFC 4954 section 6: 538 5.7.11 Encryption required.
		return nil, s.refuse("tls_required", 538, smtp.EnhancedCode{5, 7, 11}, "Encryption required: STARTTLS first", nil)
	case s.authFail >= maxAuthFailures:
		s.closeConn()
		return nil, s.refuse("auth_failed", 421, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins, closing", nil)
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			// RFC 4616: an authorization identity other than the
			// user would be acting on someone else's behalf.
			if identity != "" && identity != username {
				return s.refuse("auth_failed", 535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid", errors.New("authorization identity differs"))
			}
			return s.login(username, password)
		}), nil
	case sasl.Login:
		return newLoginServer(s.login), nil
	}
	return nil, s.refuse("auth_unsupported", 504, smtp.EnhancedCode{5, 5, 4}, "Unrecognized authentication mechanism", nil)
}

// login checks credentials with auth. Only a definite "wrong password" is
// a 535; lockout and auth being down are temporary (454 4.7.0, RFC 4954
// section 6), so that clients retry instead of asking the user again.
func (s *session) login(username, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), authclient.DefaultTimeout)
	defer cancel()
	u, err := s.srv.opts.Auth.Authenticate(ctx, username, password, "smtp", s.remoteIP, s.tls != nil)
	switch {
	case err == nil:
		s.user = u.Address
		s.log = s.log.With("user", u.Address)
		s.log.Info("authenticated")
		return nil
	case errors.Is(err, authclient.ErrBadCredentials), errors.Is(err, authclient.ErrInvalid):
		s.authFail++
		return s.refuse("auth_failed", 535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid", err)
	case errors.Is(err, authclient.ErrLocked):
		return s.refuse("auth_locked", 454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins, try again later", err)
	}
	return s.refuse("auth_unavailable", 454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, try again later", err)
}

// Mail starts a transaction. Submission requires AUTH first and a sender
// the user owns.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if !s.setBusy(true) {
		s.closeConn()
		return s.refuse("shutting_down", 421, smtp.EnhancedCode{4, 3, 2}, "Shutting down, try again later", nil)
	}
	if s.srv.opts.Mode == Submission && s.user == "" {
		// RFC 4954 section 6.
		return s.refuse("auth_required", 530, smtp.EnhancedCode{5, 7, 0}, "Authentication required", nil)
	}
	if reason := pathProblem(from, opts.UTF8); reason != "" {
		return s.refuse("bad_sender", 553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax: "+reason, nil)
	}
	if s.srv.opts.Mode == Submission {
		if from == "" {
			return s.refuse("sender_not_owned", 553, smtp.EnhancedCode{5, 7, 1}, "The null sender is not for users", nil)
		}
		if err := s.checkSendAs(from); err != nil {
			return err
		}
	}
	s.utf8 = opts.UTF8
	s.final = make(map[string]struct{})
	s.env = queue.Envelope{
		Sender:   from,
		AuthUser: s.user,
		Ret:      string(opts.Return),
		EnvID:    opts.EnvelopeID,
	}
	return nil
}

// checkSendAs refuses an address the authenticated user may not use as
// sender (DESIGN.md invariant 4).
func (s *session) checkSendAs(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), authclient.DefaultTimeout)
	defer cancel()
	ok, err := s.srv.opts.Auth.CanSendAs(ctx, s.user, addr)
	switch {
	case errors.Is(err, authclient.ErrInvalid):
		return s.refuse("sender_not_owned", 553, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf("Sender address <%s> refused", addr), err)
	case err != nil:
		return s.refuse("auth_unavailable", 451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure checking the sender, try again later", err)
	case !ok:
		return s.refuse("sender_not_owned", 553, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf("You may not send as <%s>", addr), nil)
	}
	return nil
}

// pathProblem says what is wrong with an envelope address go-smtp has
// parsed, or "": control characters or spaces (a quoted local part can
// carry them, and they would end up in headers and queue files), more
// than 254 octets, or non-ASCII without SMTPUTF8 (RFC 6531 section 3.4).
func pathProblem(addr string, utf8Allowed bool) string {
	if len(addr) > maxPathLen {
		return fmt.Sprintf("longer than %d octets", maxPathLen)
	}
	for _, r := range addr {
		switch {
		case r < 0x21 || r == 0x7f:
			return "control character or space"
		case r >= utf8.RuneSelf && !utf8Allowed:
			return "non-ASCII address without SMTPUTF8"
		case r == utf8.RuneError:
			return "not UTF-8"
		}
	}
	return ""
}

// Rcpt resolves the recipient with auth now, so that an unknown user is
// refused during the session and never bounced later (backscatter).
//
// Relay hacks are refused by syntax before anyone is asked: address.Parse
// refuses the "%" hack (user%other@ourdomain), "!" paths, and the quoted
// local parts go-smtp unquotes ("a@b"@ourdomain arrives as a@b@ourdomain).
// A source route (<@a,@b:user@c>) is dropped by go-smtp as RFC 5321
// section 4.1.1.3 asks, so user@c is judged on its own.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if reason := pathProblem(to, s.utf8); reason != "" {
		return s.refuse("bad_recipient", 553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: "+reason, nil)
	}
	addr, err := address.Parse(to)
	if err != nil {
		var ae *address.Error
		reason := err.Error()
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		return s.refuse("bad_recipient", 553, smtp.EnhancedCode{5, 1, 3}, "Recipient address refused: "+reason, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), authclient.DefaultTimeout)
	defer cancel()
	r, err := s.srv.opts.Auth.ResolveRecipient(ctx, addr.String())
	if err != nil {
		if errors.Is(err, authclient.ErrInvalid) {
			return s.refuse("bad_recipient", 553, smtp.EnhancedCode{5, 1, 3}, "Recipient address refused", err)
		}
		return s.refuse("auth_unavailable", 451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure looking up the recipient, try again later", err)
	}
	orig := to
	if opts.OriginalRecipient != "" && opts.OriginalRecipientType == smtp.DSNAddressTypeRFC822 {
		orig = opts.OriginalRecipient
	}
	notify := make([]string, len(opts.Notify))
	for i, n := range opts.Notify {
		notify[i] = string(n)
	}
	switch r.Kind {
	case authclient.NotLocalDomain:
		if s.user == "" {
			// No open relay (DESIGN.md invariant 3).
			return s.refuse("relay_denied", 554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied", nil)
		}
	case authclient.UnknownUser:
		return s.refuse("unknown_user", 550, smtp.EnhancedCode{5, 1, 1}, "No such user here", nil)
	case authclient.AliasLoop:
		// The operator's mistake, not the sender's: temporary.
		return s.refuse("auth_unavailable", 451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure looking up the recipient, try again later", fmt.Errorf("resolve %s: %v", addr, r.Kind))
	}
	add := Routes(r, to)
	if len(add) == 0 {
		return s.refuse("unknown_user", 550, smtp.EnhancedCode{5, 1, 1}, "No such user here", errors.New("alias without destinations"))
	}
	added := 0
	for _, rc := range add {
		key := strings.ToLower(rc.Address)
		if _, dup := s.final[key]; dup {
			continue
		}
		if len(s.env.Recipients)+1 > maxExpanded {
			return s.refuse("too_many_recipients", 452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients", nil)
		}
		s.final[key] = struct{}{}
		rc.Orig, rc.Notify = orig, strings.Join(notify, ",")
		s.env.Recipients = append(s.env.Recipients, rc)
		added++
	}
	s.rcpts = append(s.rcpts, to)
	s.log.Debug("recipient accepted", "rcpt", to, "final", added)
	return nil
}

// deadline moves the connection's read deadline (go-smtp sets it per
// command line; DATA gets longer).
func (s *session) deadline(d time.Duration) {
	s.conn.Conn().SetReadDeadline(time.Now().Add(d))
}

// remoteAddr is the client's IP for the Received field and the Verifier.
func (s *session) remoteAddr() net.IP {
	return net.ParseIP(s.remoteIP)
}

// Routes turns auth's answer for an address into queue recipients: one
// local per mailbox and one remote per forward, or the address itself,
// remote, for a domain not ours. typed is the address as the client
// wrote it: a remote system may tell case apart in local parts (RFC 5321
// section 2.4), so it is kept. Unknown users and loops route nowhere.
func Routes(r authclient.Recipient, typed string) []queue.Recipient {
	var out []queue.Recipient
	switch r.Kind {
	case authclient.Deliver:
		for _, m := range r.Mailboxes {
			out = append(out, queue.Recipient{Address: m.Address, Route: queue.RouteLocal})
		}
		for _, f := range r.Forwards {
			out = append(out, queue.Recipient{Address: f, Route: queue.RouteRemote})
		}
	case authclient.NotLocalDomain:
		out = append(out, queue.Recipient{Address: typed, Route: queue.RouteRemote})
	}
	return out
}
