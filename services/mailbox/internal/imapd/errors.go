package imapd

import (
	"errors"

	"github.com/emersion/go-imap/v2"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// responseCodeExpungeIssued is RFC 9051's EXPUNGEISSUED, which go-imap
// does not name.
const responseCodeExpungeIssued imap.ResponseCode = "EXPUNGEISSUED"

func no(code imap.ResponseCode, text string) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

func bad(text string) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: text}
}

// errNotSelected answers a selected-state method called without a
// mailbox (the library checks the state first, so it is a safeguard).
var errNotSelected = bad("no mailbox selected")

// errReadOnly answers a change to a mailbox opened with EXAMINE.
var errReadOnly = no(imap.ResponseCodeCannot, "mailbox is read-only (EXAMINE)")

// storeError maps a store error to the client's answer (RFC 5530 response
// codes) and logs the ones that are the server's problem. dest says the
// name is the target of COPY, MOVE or APPEND, where a missing mailbox is
// [TRYCREATE] (RFC 9051 section 6.3.12).
func (sess *session) storeError(what string, err error, dest bool) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie
	}
	m := sess.srv.metrics.errors
	switch {
	case errors.Is(err, store.ErrNoSuchMailbox):
		if dest {
			return no(imap.ResponseCodeTryCreate, "no such mailbox")
		}
		return no(imap.ResponseCodeNonExistent, "no such mailbox")
	case errors.Is(err, store.ErrMailboxExists):
		return no(imap.ResponseCodeAlreadyExists, "mailbox already exists")
	case errors.Is(err, store.ErrInvalidName):
		return no(imap.ResponseCodeCannot, "invalid mailbox name")
	case errors.Is(err, store.ErrNotAllowed):
		return no(imap.ResponseCodeCannot, "not allowed on this mailbox")
	case errors.Is(err, store.ErrInvalidFlag):
		return bad("invalid flag")
	case errors.Is(err, store.ErrQuotaExceeded):
		m.WithLabelValues("quota").Inc()
		return no(imap.ResponseCodeOverQuota, "quota exceeded")
	case errors.Is(err, store.ErrTooBig):
		return no(imap.ResponseCodeTooBig, "message too big")
	case errors.Is(err, store.ErrNoSuchMessage):
		return no(responseCodeExpungeIssued, "message was expunged")
	case errors.Is(err, store.ErrUIDValidityChanged):
		return sess.bye("mailbox was recreated, please reconnect")
	}
	m.WithLabelValues("io").Inc()
	sess.log.Error("imap store failure", "op", what, "err", err)
	return no(imap.ResponseCodeUnavailable, "temporary failure, try again later")
}

// bye ends the session: RFC 9051 section 2.3.1.1 leaves no other way to
// tell a client that UIDVALIDITY changed under its selected mailbox, and a
// deleted selected mailbox cannot be used either. The library answers the
// command on a closed connection, which fails and ends its loop.
func (sess *session) bye(text string) error {
	sess.log.Info("imap session ended by server", "reason", text)
	if err := sess.conn.Bye(text); err != nil {
		sess.log.Debug("imap bye", "err", err)
	}
	return &imap.Error{Type: imap.StatusResponseTypeBye, Text: text}
}
