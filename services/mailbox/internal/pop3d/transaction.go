package pop3d

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// The TRANSACTION and UPDATE states (RFC 1939 sections 5 and 6).

// message returns the message numbered by arg, or nil after answering
// with the reason there is none.
func (sess *session) message(arg string) (int, *msg) {
	n, err := parseNumber(arg)
	switch {
	case err != nil:
		sess.reply("-ERR invalid message number")
	case n < 1 || n > len(sess.msgs):
		sess.reply("-ERR no such message, only " + strconv.Itoa(len(sess.msgs)) + " messages in maildrop")
	case sess.msgs[n-1].deleted:
		sess.reply("-ERR message " + strconv.Itoa(n) + " already deleted")
	default:
		return n, sess.msgs[n-1]
	}
	return 0, nil
}

// size returns the octets m has on the wire, measuring it on first use.
func (sess *session) size(m *msg) (int64, error) {
	if m.wire >= 0 {
		return m.wire, nil
	}
	key := sizeKey{user: sess.address, id: m.id, storedSize: m.storedSize}
	if n, ok := sess.srv.sizes.get(key); ok {
		m.wire = n
		return n, nil
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	body, err := sess.mb.Open(ctx, m.uid)
	if errors.Is(err, store.ErrNoSuchMessage) {
		// Expunged by another session since login: RETR will say so;
		// until then the stored size is the best answer.
		return m.storedSize, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open message %d: %w", m.uid, err)
	}
	defer body.Close()
	n, err := wireSize(body)
	if err != nil {
		return 0, fmt.Errorf("read message %d: %w", m.uid, err)
	}
	m.wire = n
	sess.srv.sizes.put(key, n)
	return n, nil
}

// storeFailed answers a command the store could not serve.
func (sess *session) storeFailed(what string, err error) error {
	sess.log.Error("pop3 store failure", "op", what, "err", err)
	sess.reply("-ERR [SYS/TEMP] cannot read the maildrop, try again later")
	return nil
}

// stat answers STAT: the messages not deleted and their total size.
func (sess *session) stat(cmd command) error {
	if len(cmd.args) != 0 {
		return sess.bad("-ERR STAT takes no arguments")
	}
	count, total := 0, int64(0)
	for _, m := range sess.msgs {
		if m.deleted {
			continue
		}
		n, err := sess.size(m)
		if err != nil {
			return sess.storeFailed("stat", err)
		}
		count++
		total += n
	}
	sess.reply("+OK " + strconv.Itoa(count) + " " + strconv.FormatInt(total, 10))
	return nil
}

// list answers LIST and UIDL, for one message or for all that are not
// deleted.
func (sess *session) list(cmd command, uidl bool) error {
	value := func(m *msg) (string, error) {
		if uidl {
			return m.id, nil
		}
		n, err := sess.size(m)
		return strconv.FormatInt(n, 10), err
	}
	switch len(cmd.args) {
	case 0:
	case 1:
		n, m := sess.message(cmd.args[0])
		if m == nil {
			return nil
		}
		v, err := value(m)
		if err != nil {
			return sess.storeFailed("list", err)
		}
		sess.reply("+OK " + strconv.Itoa(n) + " " + v)
		return nil
	default:
		return sess.bad("-ERR too many arguments")
	}
	// Measure everything before the +OK: a failure can still be an -ERR.
	lines := make([]string, 0, len(sess.msgs))
	for i, m := range sess.msgs {
		if m.deleted {
			continue
		}
		v, err := value(m)
		if err != nil {
			return sess.storeFailed("list", err)
		}
		lines = append(lines, strconv.Itoa(i+1)+" "+v)
	}
	if uidl {
		sess.reply("+OK unique-id listing follows")
	} else {
		sess.reply("+OK scan listing follows")
	}
	for _, l := range lines {
		sess.reply(l)
	}
	sess.reply(".")
	return nil
}

// retr answers RETR: the whole message.
func (sess *session) retr(cmd command) error {
	if len(cmd.args) != 1 {
		return sess.bad("-ERR RETR needs one message number")
	}
	_, m := sess.message(cmd.args[0])
	if m == nil {
		return nil
	}
	if err := sess.send(m, -1); err != nil {
		return err
	}
	m.retrieved = true
	return nil
}

// top answers TOP: the header and the first lines of the body.
func (sess *session) top(cmd command) error {
	if len(cmd.args) != 2 {
		return sess.bad("-ERR TOP needs a message number and a line count")
	}
	_, m := sess.message(cmd.args[0])
	if m == nil {
		return nil
	}
	lines, err := parseNumber(cmd.args[1])
	if err != nil {
		sess.reply("-ERR invalid line count")
		return nil
	}
	return sess.send(m, lines)
}

// send writes message m as a multi-line response, all of it or (TOP) its
// header and bodyLines lines of body. Once the +OK is out, a failure
// cannot be reported in the protocol any more: the session then ends, and
// without UPDATE, so nothing is lost.
func (sess *session) send(m *msg, bodyLines int) error {
	var size int64
	if bodyLines < 0 {
		n, err := sess.size(m)
		if err != nil {
			return sess.storeFailed("retr", err)
		}
		size = n
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	body, err := sess.mb.Open(ctx, m.uid)
	if errors.Is(err, store.ErrNoSuchMessage) {
		sess.reply("-ERR message was removed by another session")
		return nil
	}
	if err != nil {
		return sess.storeFailed("retr", err)
	}
	defer body.Close()
	if bodyLines < 0 {
		sess.reply("+OK " + strconv.FormatInt(size, 10) + " octets")
	} else {
		sess.reply("+OK top of message follows")
	}
	ww := newWireWriter(sess.w, true, bodyLines)
	err = copyWire(ww, body)
	sess.srv.metrics.retrievedBytes(ww.n)
	if err != nil {
		return fmt.Errorf("send message %d: %w", m.uid, err)
	}
	sess.reply(".")
	return nil
}

// dele answers DELE: the message is marked, and removed only at QUIT.
func (sess *session) dele(cmd command) error {
	if len(cmd.args) != 1 {
		return sess.bad("-ERR DELE needs one message number")
	}
	n, m := sess.message(cmd.args[0])
	if m == nil {
		return nil
	}
	m.deleted = true
	sess.reply("+OK message " + strconv.Itoa(n) + " deleted")
	return nil
}

// rset answers RSET: deletions are undone, and so are the \Seen flags
// RETR would have set at QUIT.
func (sess *session) rset(cmd command) error {
	if len(cmd.args) != 0 {
		return sess.bad("-ERR RSET takes no arguments")
	}
	for _, m := range sess.msgs {
		m.deleted, m.retrieved = false, false
	}
	sess.reply("+OK maildrop has " + strconv.Itoa(len(sess.msgs)) + " messages")
	return nil
}

// quit answers QUIT. In the TRANSACTION state it first runs the UPDATE
// state: RETR'd messages get \Seen, DELE'd ones are flagged \Deleted and
// expunged, only those (an IMAP session's \Deleted flags are its own
// business).
func (sess *session) quit(cmd command) error {
	if len(cmd.args) != 0 {
		return sess.bad("-ERR QUIT takes no arguments")
	}
	if sess.state != stateTransaction {
		sess.reply("+OK " + sess.srv.opts.Hostname + " POP3 server signing off")
		return errClose
	}
	var seen, gone []store.UID
	for _, m := range sess.msgs {
		switch {
		case m.deleted:
			gone = append(gone, m.uid)
		case m.retrieved:
			seen = append(seen, m.uid)
		}
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	if len(seen) > 0 {
		// Only cosmetic for POP3: a failure is logged, not reported.
		if _, err := sess.mb.SetFlags(ctx, seen, store.FlagsAdd, []string{store.FlagSeen}, 0); err != nil {
			sess.log.Warn("pop3 set \\Seen at QUIT", "err", err)
		}
	}
	if len(gone) > 0 {
		expunged, err := sess.expunge(ctx, gone)
		sess.srv.metrics.deletedMessages(expunged)
		if err != nil {
			sess.log.Error("pop3 UPDATE failed", "deleted", len(gone), "expunged", expunged, "err", err)
			sess.reply("-ERR [SYS/TEMP] some deleted messages not removed")
			return errClose
		}
		sess.log.Info("pop3 UPDATE", "deleted", len(gone), "expunged", expunged)
	}
	left := len(sess.msgs) - len(gone)
	sess.reply("+OK " + sess.srv.opts.Hostname + " POP3 server signing off (" + strconv.Itoa(left) + " messages left)")
	return errClose
}

// expunge removes uids and returns how many went. Messages another session
// expunged first are not an error.
func (sess *session) expunge(ctx context.Context, uids []store.UID) (int, error) {
	if _, err := sess.mb.SetFlags(ctx, uids, store.FlagsAdd, []string{store.FlagDeleted}, 0); err != nil {
		return 0, fmt.Errorf("flag \\Deleted: %w", err)
	}
	gone, err := sess.mb.Expunge(ctx, uids)
	if err != nil {
		return 0, fmt.Errorf("expunge: %w", err)
	}
	return len(gone), nil
}
