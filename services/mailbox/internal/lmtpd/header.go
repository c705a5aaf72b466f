package lmtpd

import (
	"bufio"
	"io"
	"net/textproto"
	"strings"
)

// maxHeaderBytes bounds how much of a message is read to find its header:
// the fields delivery looks at (the spam marks, the MTA's Received) are
// near the top, and a message without a blank line would otherwise be read
// whole.
const maxHeaderBytes = 256 << 10

// readHeader parses the message's header (RFC 5322 section 2.2). A
// malformed header yields the fields before the first bad line: delivery
// must never fail because of what is inside a message.
func readHeader(r io.Reader) textproto.MIMEHeader {
	h, _ := textproto.NewReader(bufio.NewReader(io.LimitReader(r, maxHeaderBytes))).ReadMIMEHeader()
	if h == nil {
		h = textproto.MIMEHeader{}
	}
	return h
}

// maxQueueIDLen bounds the queue ID copied into logs.
const maxQueueIDLen = 64

// queueID returns the MTA's queue ID for the logs: the "id" clause of the
// topmost Received field, which the MTA that hands the message over wrote
// last (RFC 5321 section 4.4: `[ CFWS "id" FWS ( Atom / msg-id ) ]`; postfix
// writes "with ESMTPS id 4AbC123"). "" when there is none. Only characters
// of an atom or msg-id are kept, so it cannot forge a log line.
func queueID(h textproto.MIMEHeader) string {
	received := h.Get("Received")
	// The date comes after the last ";"; the clauses before it.
	if i := strings.LastIndexByte(received, ';'); i >= 0 {
		received = received[:i]
	}
	fields := strings.Fields(received)
	for i := 0; i+1 < len(fields); i++ {
		if strings.EqualFold(fields[i], "id") {
			return cleanID(fields[i+1])
		}
	}
	return ""
}

func cleanID(s string) string {
	s = strings.Trim(s, "<>")
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxQueueIDLen {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_@=+$", r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// traceHeader is what final delivery adds in front of the message:
// Return-Path with the reverse path (RFC 5321 section 4.4; "<>" for a
// bounce) and Delivered-To with the recipient, the field postfix's local
// and dovecot's LDA add and loop detection and filters rely on. Its line
// ends are CRLF, as the message's are on the wire.
func traceHeader(from, rcpt string) string {
	return "Return-Path: <" + from + ">\r\nDelivered-To: " + rcpt + "\r\n"
}

// hasControl reports whether s has a character that cannot appear in a
// header field (RFC 5322 section 2.2: printable characters and white
// space only; UTF-8 is allowed by RFC 6532).
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}
