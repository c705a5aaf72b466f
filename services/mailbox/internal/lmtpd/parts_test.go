package lmtpd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/authclient"
)

func TestIsSpam(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"X-Postcove-Spam: yes", true},
		{"X-Postcove-Spam: YES", true},
		{"x-postcove-spam:   Yes  ", true},
		{"X-Spam-Flag: YES", true},
		{"X-Spam-Flag: yes", true},
		{"X-Spam-Flag: NO\r\nX-Postcove-Spam: yes", true},
		{"X-Postcove-Spam: no\r\nX-Postcove-Spam: yes", true},
		{"X-Postcove-Spam: no", false},
		{"X-Spam-Flag: NO", false},
		{"X-Spam-Flag: YESS", false},
		{"X-Spam-Status: Yes, score=9.1", false},
		{"Subject: X-Spam-Flag: YES", false},
		{"", false},
	}
	for _, tt := range tests {
		h := readHeader(strings.NewReader(tt.header + "\r\n\r\nbody\r\n"))
		if got := IsSpam(h); got != tt.want {
			t.Errorf("IsSpam(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestQueueID(t *testing.T) {
	tests := []struct {
		header string
		want   string
	}{
		{"Received: from mx.remote.example by mail.example.org (postcove) with ESMTPS id 4AbC123\r\n\tfor <alice@example.org>; Thu, 1 Jan 2026 00:00:00 +0000", "4AbC123"},
		{"Received: by mail.example.org with LMTP id <Q12.x@mail.example.org>; Thu, 1 Jan 2026 00:00:00 +0000", "Q12.x@mail.example.org"},
		// The topmost Received is the MTA's: later ones are older hops.
		{"Received: by a id FIRST; date\r\nReceived: by b id SECOND; date", "FIRST"},
		{"Received: from x by y; Thu, 1 Jan 2026 id NOTME", ""},
		{"Received: by y id (evil)\"x=1\"\\n", "evilx=1n"},
		{"Received: by y id \x1b[31mred", ""}, // refused by the header parser
		{"Received: by y id " + strings.Repeat("a", 200) + "; date", strings.Repeat("a", maxQueueIDLen)},
		{"Subject: no trace", ""},
	}
	for _, tt := range tests {
		h := readHeader(strings.NewReader(tt.header + "\r\n\r\n"))
		if got := queueID(h); got != tt.want {
			t.Errorf("queueID(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

// TestReadHeader: malformed and endless headers give what could be read,
// never an error or a nil map.
func TestReadHeader(t *testing.T) {
	tests := []struct {
		msg     string
		wantKey string
	}{
		{"Subject: ok\r\n\r\nbody", "Subject"},
		{"Subject: ok\nX-Spam-Flag: YES\n\nLF only", "X-Spam-Flag"},
		{"Subject: ok\r\nthis is not a header line\r\n\r\n", "Subject"},
		{"From someone Thu Jan 1\r\nSubject: mbox\r\n\r\n", ""},
		{"", ""},
		{strings.Repeat("X-Long: "+strings.Repeat("x", 1000)+"\r\n", 1000), "X-Long"},
	}
	for _, tt := range tests {
		h := readHeader(strings.NewReader(tt.msg))
		if h == nil {
			t.Fatalf("readHeader(%.40q) = nil", tt.msg)
		}
		if tt.wantKey != "" && h.Get(tt.wantKey) == "" {
			t.Errorf("readHeader(%.40q) = %v, want %s in it", tt.msg, h, tt.wantKey)
		}
	}
}

func TestTraceHeader(t *testing.T) {
	tests := []struct {
		from, rcpt, want string
	}{
		{"s@remote.example", "alice@example.org", "Return-Path: <s@remote.example>\r\nDelivered-To: alice@example.org\r\n"},
		{"", "bob@example.org", "Return-Path: <>\r\nDelivered-To: bob@example.org\r\n"},
	}
	for _, tt := range tests {
		if got := traceHeader(tt.from, tt.rcpt); got != tt.want {
			t.Errorf("traceHeader(%q, %q) = %q, want %q", tt.from, tt.rcpt, got, tt.want)
		}
		h := readHeader(strings.NewReader(traceHeader(tt.from, tt.rcpt) + "\r\n"))
		if h.Get("Delivered-To") != tt.rcpt || h.Get("Return-Path") != "<"+tt.from+">" {
			t.Errorf("traceHeader(%q, %q) parses as %v", tt.from, tt.rcpt, h)
		}
	}
}

// TestSpool: below the memory limit a message stays in memory, above it
// goes to an unlinked file; either can be read again and again, also when
// the spooler reuses the buffer of an earlier message.
func TestSpool(t *testing.T) {
	dir := t.TempDir()
	spooler := &spooler{dir: dir, memLimit: 100}
	for i, size := range []int{0, 1, 99, 100, 101, 100000, 50, 3} {
		msg := strings.Repeat(string(rune('a'+i)), size)
		sp, err := spooler.spool(iotest.HalfReader(strings.NewReader(msg)))
		if err != nil {
			t.Fatalf("spool(%d bytes) = %v", size, err)
		}
		if inFile := sp.file != nil; inFile != (size > 100) || sp.size != int64(size) {
			t.Errorf("spool(%d bytes): in file %v, size %d; want in file %v", size, inFile, sp.size, size > 100)
		}
		for range 2 {
			got, err := io.ReadAll(sp.reader())
			if err != nil || string(got) != msg {
				t.Errorf("spool(%d bytes).reader() = %d bytes, %v; want the message", size, len(got), err)
			}
		}
		sp.Close()
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("spool left %v in its directory", left)
	}
}

// TestSpoolErrors: read errors come back as they are (they decide the
// reply); write errors are errSpoolWrite.
func TestSpoolErrors(t *testing.T) {
	if _, err := (&spooler{dir: t.TempDir(), memLimit: 10}).spool(iotest.ErrReader(smtp.ErrDataTooLarge)); !errors.Is(err, smtp.ErrDataTooLarge) {
		t.Errorf("spool(too large) = %v, want smtp.ErrDataTooLarge", err)
	}
	big := io.MultiReader(strings.NewReader(strings.Repeat("x", 50)), iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := (&spooler{dir: t.TempDir(), memLimit: 10}).spool(big); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("spool(broken after 50 bytes) = %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := (&spooler{dir: "/nonexistent/dir", memLimit: 10}).spool(strings.NewReader(strings.Repeat("x", 50))); !errors.Is(err, errSpoolWrite) {
		t.Errorf("spool(unwritable dir) = %v, want errSpoolWrite", err)
	}
}

func TestSpoolReply(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{smtp.ErrDataTooLarge, 552},
		{smtp.ErrTooLongLine, 554},
		{io.ErrUnexpectedEOF, 451},
		{smtp.ErrDataReset, 451},
		{errSpoolWrite, 451},
	}
	for _, tt := range tests {
		if got, _ := spoolReply(tt.err); got.Code != tt.code {
			t.Errorf("spoolReply(%v) = %d, want %d", tt.err, got.Code, tt.code)
		}
	}
}

func TestRcptReply(t *testing.T) {
	mb := []authclient.Mailbox{{Address: "a@example.org"}}
	tests := []struct {
		r    authclient.Recipient
		err  error
		want string // "" accepts
	}{
		{authclient.Recipient{Kind: authclient.Deliver, Mailboxes: mb}, nil, ""},
		{authclient.Recipient{Kind: authclient.Deliver, Mailboxes: mb, Forwards: []string{"x@remote.example"}}, nil, ""},
		{authclient.Recipient{Kind: authclient.Deliver, Forwards: []string{"x@remote.example"}}, nil, "550 5.1.1"},
		{authclient.Recipient{Kind: authclient.UnknownUser}, nil, "550 5.1.1"},
		{authclient.Recipient{Kind: authclient.NotLocalDomain}, nil, "550 5.1.2"},
		{authclient.Recipient{Kind: authclient.AliasLoop}, nil, "451 4.4.6"},
		{authclient.Recipient{Kind: 42}, nil, "451 4.4.3"},
		{authclient.Recipient{}, authclient.ErrUnavailable, "451 4.4.3"},
		{authclient.Recipient{}, errors.New("anything"), "451 4.4.3"},
		{authclient.Recipient{}, authclient.ErrInvalid, "553 5.1.3"},
	}
	for _, tt := range tests {
		got, _ := rcptReply(tt.r, tt.err)
		gotText := ""
		if got != nil {
			gotText = fmt.Sprintf("%d %d.%d.%d", got.Code, got.EnhancedCode[0], got.EnhancedCode[1], got.EnhancedCode[2])
		}
		if gotText != tt.want {
			t.Errorf("rcptReply(%+v, %v) = %q, want %q", tt.r, tt.err, gotText, tt.want)
		}
	}
}
