package lmtpd

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// The replies this server gives beyond go-smtp's own, each with its RFC
// 5321 code (section 4.2) and RFC 3463 enhanced code. The client sees a
// fixed text; the cause goes to the log.
//
// 4xx means "try again later" and the MTA keeps the message queued; 5xx
// bounces it. A 5xx is given only for a definite answer about the address
// or the message (DESIGN.md invariant 2).
var (
	// No such user: auth knows the domain and not the address (X.1.1
	// "bad destination mailbox address").
	replyUnknownUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	// Not one of our domains (X.1.2 "bad destination system address": this
	// system is not the destination).
	replyNotLocal = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "not a local domain"}
	// A forward-only alias: nothing local to store, and forwarding is the
	// MTA's job, not the delivery agent's (X.1.1: no mailbox here).
	replyNoMailbox = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "address has no local mailbox (forwarding is done by the MTA)"}
	// An address auth cannot parse (553: "mailbox name not allowed";
	// X.1.3 "bad destination mailbox address syntax").
	replyBadRcpt = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad recipient address syntax"}
	// A reverse path with control characters, which could not go into a
	// Return-Path header (X.1.7 "bad sender mailbox address syntax").
	replyBadSender = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "bad sender address syntax"}
	// Auth cannot be asked (X.4.3 "directory server failure": auth is the
	// directory). Temporary: the MTA retries.
	replyAuthDown = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 3}, Message: "user directory unavailable, try again later"}
	// The alias expands through a loop. RFC 3463 X.4.6 "routing loop
	// detected" covers "a user forwarding loop" and says it is "useful only
	// as a persistent transient error": temporary, so the message waits in
	// the queue while the operator fixes the aliases.
	replyAliasLoop = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 6}, Message: "alias loop detected, try again later"}
	// Over quota (552 "exceeded storage allocation"; X.2.2 "mailbox
	// full"). Permanent, as dovecot answers by default: a full mailbox
	// rarely empties before the MTA's retries run out.
	replyOverQuota = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full"}
	// Larger than the store accepts (X.3.4 "message too big for system").
	replyTooBig = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "message too big"}
	// The disk is full (452 "insufficient system storage"; X.3.1 "mail
	// system full"). Temporary: space can be freed.
	replyDiskFull = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "mail system full, try again later"}
	// Any other failure of the store: I/O, permissions, a lost volume
	// (X.3.0 "other or undefined mail system status").
	replyStoreFailed = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "local error in processing, try again later"}
	// A message line longer than the limit: the message can never be
	// received whole (X.6.0 "other or undefined media error").
	replyLineTooLong = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "message has a line longer than the server accepts"}
	// The message did not arrive whole: the connection broke or timed out
	// (X.4.2 "bad connection").
	replyBadConnection = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "message not received whole, try again"}
	// The server is shutting down (RFC 5321 section 3.8: 421; X.3.2
	// "system not accepting network messages").
	replyShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down, try again later"}
)

// delivered is the reply for a recipient whose message is durable: RFC
// 2033's 250 per recipient, naming the session so an MTA log line leads to
// ours.
func delivered(session string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("%s saved", session)}
}

// storeReply maps an append error to its reply and a short result name for
// metrics and logs.
func storeReply(err error) (*smtp.SMTPError, string) {
	switch {
	case errors.Is(err, store.ErrQuotaExceeded):
		return replyOverQuota, "over_quota"
	case errors.Is(err, store.ErrTooBig):
		return replyTooBig, "too_big"
	case isDiskFull(err):
		return replyDiskFull, "disk_full"
	case errors.Is(err, errShuttingDown):
		return replyShuttingDown, "shutting_down"
	}
	return replyStoreFailed, "store_error"
}

// isDiskFull reports a full file system or a file-system quota (EDQUOT,
// the operator's quota on the mail volume, not the user's mail quota).
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// errShuttingDown stops a delivery that would start after Shutdown gave up.
var errShuttingDown = errors.New("server shutting down")

// spoolReply maps a failure to receive the message to the reply every
// recipient gets, and a result name.
func spoolReply(err error) (*smtp.SMTPError, string) {
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		return smtp.ErrDataTooLarge, "too_big"
	case errors.Is(err, smtp.ErrTooLongLine):
		return replyLineTooLong, "line_too_long"
	case isDiskFull(err):
		return replyDiskFull, "disk_full"
	case errors.Is(err, errSpoolWrite):
		return replyStoreFailed, "store_error"
	}
	// A read error: io.ErrUnexpectedEOF, a timeout, smtp.ErrDataReset
	// (RSET or a closed connection during BDAT).
	return replyBadConnection, "aborted"
}
