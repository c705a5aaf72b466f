package lmtpd

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

var _ smtp.LMTPSession = (*session)(nil)

// session is one LMTP connection after LHLO. go-smtp calls its methods
// from the connection's goroutine, except LMTPData, which runs in a
// goroutine of its own; with BDAT (RFC 3030) the connection may meanwhile
// take an RSET, which calls Reset.
type session struct {
	s    *Server
	conn *trackedConn // nil when the listener was not ours (never in Serve)
	id   string       // names the session in logs and in 250 replies
	log  *slog.Logger

	mu    sync.Mutex // protects inTx, from and rcpts
	inTx  bool       // MAIL accepted, transaction not ended
	from  string     // reverse path of the transaction
	rcpts []recipient
}

// recipient is an accepted RCPT TO.
type recipient struct {
	to string // as given: the key of its status (StatusCollector)
	r  authclient.Recipient
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		return nil, replyShuttingDown
	}
	tc, _ := c.Conn().(*trackedConn)
	id := newSessionID()
	sess := &session{
		s:    s,
		conn: tc,
		id:   id,
		log:  s.log.With("session", id),
	}
	s.metrics.sessions.Inc()
	sess.log.Debug("lmtp session started", "remote", c.Conn().RemoteAddr().String(), "lhlo", c.Hostname())
	return sess, nil
}

// newSessionID returns 12 random hex digits: unique enough to find one
// session in a day of logs.
func newSessionID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (sess *session) setBusy(busy bool) {
	if sess.conn != nil {
		sess.conn.setBusy(busy)
	}
}

// Reset ends a transaction (RSET, LHLO, after the replies to DATA).
func (sess *session) Reset() {
	sess.mu.Lock()
	sess.inTx, sess.from, sess.rcpts = false, "", nil
	sess.mu.Unlock()
	sess.setBusy(false)
}

func (sess *session) Logout() error {
	sess.s.metrics.sessions.Dec()
	return nil
}

func (sess *session) Mail(from string, _ *smtp.MailOptions) error {
	// go-smtp lets a second MAIL through without ending the transaction:
	// its recipients would then no longer match ours (RFC 5321 section
	// 4.1.4: MAIL inside a transaction is a 503).
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.inTx {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "nested MAIL command"}
	}
	if hasControl(from) {
		return replyBadSender
	}
	sess.inTx, sess.from, sess.rcpts = true, from, nil
	sess.setBusy(true)
	return nil
}

func (sess *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	var r authclient.Recipient
	var err error
	if hasControl(to) {
		err = authclient.ErrInvalid
	} else {
		r, err = sess.s.opts.Resolver.ResolveRecipient(sess.s.ctx, to)
	}
	reply, result := rcptReply(r, err)
	sess.s.metrics.recipients.WithLabelValues(result).Inc()
	if reply != nil {
		level := slog.LevelInfo
		if reply.Code/100 == 4 {
			level = slog.LevelWarn
		}
		sess.log.Log(sess.s.ctx, level, "recipient refused", "rcpt", to, "result", result, "code", reply.Code, "err", err)
		return reply
	}
	if len(r.Forwards) > 0 {
		sess.log.Warn("recipient is an alias with forward addresses: they are ignored, forwarding is the MTA's job",
			"rcpt", to, "forwards", strings.Join(r.Forwards, ","))
	}
	sess.mu.Lock()
	sess.rcpts = append(sess.rcpts, recipient{to: to, r: r})
	sess.mu.Unlock()
	return nil
}

// rcptReply is the answer to RCPT TO for what auth said; nil accepts.
// result names it for metrics and logs.
func rcptReply(r authclient.Recipient, err error) (*smtp.SMTPError, string) {
	switch {
	case errors.Is(err, authclient.ErrInvalid):
		return replyBadRcpt, "invalid"
	case err != nil:
		return replyAuthDown, "auth_unavailable"
	}
	switch r.Kind {
	case authclient.Deliver:
		if len(r.Mailboxes) == 0 {
			return replyNoMailbox, "no_mailbox"
		}
		return nil, "accepted"
	case authclient.UnknownUser:
		return replyUnknownUser, "unknown_user"
	case authclient.NotLocalDomain:
		return replyNotLocal, "not_local_domain"
	case authclient.AliasLoop:
		return replyAliasLoop, "alias_loop"
	}
	return replyAuthDown, "auth_unavailable"
}

// Data is never called in LMTP mode (go-smtp calls LMTPData); it exists
// because smtp.Session requires it.
func (sess *session) Data(r io.Reader) error {
	return replyStoreFailed
}

// delivery is one received message on its way to the recipients.
type delivery struct {
	from    string
	queueID string
	spam    bool
	msg     *spooled
	// done holds the reply of each mailbox already delivered to in this
	// transaction, so that two recipients ending in one mailbox (an
	// address and its +tag, an alias and its member) store one copy.
	done map[string]*smtp.SMTPError
}

// body is the message as stored for one recipient.
func (d *delivery) body(rcpt string) io.Reader {
	return io.MultiReader(strings.NewReader(traceHeader(d.from, rcpt)), d.msg.reader())
}

// LMTPData receives the message and delivers it to each recipient in RCPT
// order, giving each its status as soon as it is known (RFC 2033 section
// 4.2). Its own return value is the status of any recipient not given one:
// there are none, but if there were, a temporary failure is the safe
// answer, never a 250 for a message not stored.
func (sess *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	if !sess.s.startDelivery() {
		return replyShuttingDown
	}
	defer sess.s.deliveries.Done()
	start := time.Now()
	sess.mu.Lock()
	from, rcpts := sess.from, sess.rcpts
	sess.mu.Unlock()

	msg, err := sess.s.spooler.spool(r)
	if err != nil {
		reply, result := spoolReply(err)
		sess.s.metrics.deliveries.WithLabelValues(result).Add(float64(len(rcpts)))
		sess.log.Warn("message not received", "from", from, "recipients", len(rcpts), "result", result, "code", reply.Code, "err", err)
		return reply
	}
	defer msg.Close()
	sess.s.metrics.received.Add(float64(msg.size))

	h := readHeader(msg.reader())
	d := &delivery{
		from:    from,
		queueID: queueID(h),
		spam:    IsSpam(h),
		msg:     msg,
		done:    make(map[string]*smtp.SMTPError),
	}
	for _, rc := range rcpts {
		status.SetStatus(rc.to, sess.deliver(d, rc))
	}
	sess.s.metrics.duration.Observe(time.Since(start).Seconds())
	return replyStoreFailed
}

// deliver stores the message in every mailbox of one recipient (one,
// unless RCPT named an alias) and returns the recipient's reply. When an
// alias has several mailboxes, any temporary failure makes the reply
// temporary: the MTA retries, and the mailboxes that did get the message
// may get it twice, which DESIGN.md allows (never zero times). Otherwise
// one success is a success, and the permanent failures are only logged.
func (sess *session) deliver(d *delivery, rc recipient) *smtp.SMTPError {
	var ok, temporary, permanent *smtp.SMTPError
	for _, mb := range rc.r.Mailboxes {
		reply, seen := d.done[mb.Address]
		if !seen {
			reply = sess.deliverTo(d, rc.to, mb)
			d.done[mb.Address] = reply
		}
		switch reply.Code / 100 {
		case 2:
			ok = reply
		case 4:
			if temporary == nil {
				temporary = reply
			}
		default:
			if permanent == nil {
				permanent = reply
			}
		}
	}
	switch {
	case temporary != nil:
		return temporary
	case ok != nil:
		return ok
	case permanent != nil:
		return permanent
	}
	return replyStoreFailed // no mailboxes: Rcpt does not accept that
}

// deliverTo stores the message in one mailbox and returns the reply: 250
// only once Append has returned, that is once the message is durable.
func (sess *session) deliverTo(d *delivery, rcpt string, mb authclient.Mailbox) *smtp.SMTPError {
	start := time.Now()
	log := sess.log.With("queue_id", d.queueID, "from", d.from, "rcpt", rcpt, "mailbox", mb.Address)
	folder, res, err := sess.appendTo(d, rcpt, mb, log)
	if err != nil {
		reply, result := storeReply(err)
		sess.s.metrics.deliveries.WithLabelValues(result).Inc()
		level := slog.LevelInfo // a full mailbox or a big message: the user's business
		if reply.Code/100 == 4 {
			level = slog.LevelError // the operator's
		}
		log.Log(sess.s.ctx, level, "delivery failed", "result", result, "code", reply.Code, "err", err)
		return reply
	}
	sess.s.metrics.deliveries.WithLabelValues(strings.ToLower(folder)).Inc()
	sess.s.metrics.stored.Add(float64(res.Size))
	log.Info("delivered", "folder", folder, "uid", res.UID, "size", res.Size, "duration", time.Since(start).String())
	return delivered(sess.id)
}

// appendTo appends the message to the recipient's INBOX, or Junk for spam,
// after recording the user's quota from auth so the store enforces it.
func (sess *session) appendTo(d *delivery, rcpt string, mb authclient.Mailbox, log *slog.Logger) (string, store.AppendResult, error) {
	ctx := sess.s.ctx
	user, err := sess.s.opts.Store.User(ctx, mb.Address)
	if err != nil {
		return "", store.AppendResult{}, err
	}
	defer user.Close()
	if err := user.SetQuotaLimit(ctx, mb.QuotaBytes); err != nil {
		return "", store.AppendResult{}, err
	}
	folder := store.Inbox
	if d.spam {
		folder = store.Junk
	}
	res, err := user.Append(ctx, folder, d.body(rcpt), store.AppendOptions{})
	if folder == store.Junk && errors.Is(err, store.ErrNoSuchMailbox) {
		// The user deleted Junk. Keep the message in INBOX, as a Sieve
		// "fileinto" that fails falls back to keeping it: a spam mark
		// must never cost a message.
		log.Warn("no Junk mailbox: spam delivered to INBOX")
		folder = store.Inbox
		res, err = user.Append(ctx, folder, d.body(rcpt), store.AppendOptions{})
	}
	return folder, res, err
}
