package lmtpd

import (
	"net/textproto"
	"strings"
)

// Header fields that mark a message as spam.
const (
	// SpamHeader is postcove's own mark, which the MTA adds after its
	// DMARC quarantine decision (RFC 7489 section 6.3, p=quarantine: "the
	// message should be treated as suspicious", i.e. the spam folder).
	SpamHeader = "X-Postcove-Spam"
	// SpamFlagHeader is SpamAssassin's "X-Spam-Flag: YES", so that a
	// content filter in front of postcove is honoured as well.
	SpamFlagHeader = "X-Spam-Flag"
)

// IsSpam reports whether a message goes to the Junk mailbox instead of
// INBOX: when its header has "X-Postcove-Spam: yes" or "X-Spam-Flag: YES"
// (any case, surrounding white space ignored; any occurrence of the field
// counts).
//
// The marks are trusted wherever they came from: a sender who adds one
// only sends their own message to Junk, and no field can take a message
// out of Junk, since only a "yes" counts. The MTA should still remove
// X-Postcove-Spam from incoming mail before it decides, so that the field
// records its decision and nothing else.
func IsSpam(h textproto.MIMEHeader) bool {
	for _, key := range []string{SpamHeader, SpamFlagHeader} {
		for _, v := range h.Values(key) {
			if strings.EqualFold(strings.TrimSpace(v), "yes") {
				return true
			}
		}
	}
	return false
}
