package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func replyReader(s string) *bufio.Reader {
	return bufio.NewReaderSize(strings.NewReader(s), maxReplyLine)
}

func TestReadReply(t *testing.T) {
	long := "250 " + strings.Repeat("x", maxReplyLine-6) + "\r\n" // the longest line there may be
	for _, tc := range []struct {
		in    string
		code  int
		lines []string
		err   string // "" for none
	}{
		{in: "250 2.1.0 ok\r\n", code: 250, lines: []string{"2.1.0 ok"}},
		{in: "250 ok\n", code: 250, lines: []string{"ok"}},
		{in: "250\r\n", code: 250, lines: []string{""}},
		{in: "250-a\r\n250-b\r\n250 c\r\n", code: 250, lines: []string{"a", "b", "c"}},
		{in: "220-fake.test\r\n220 ready\r\n", code: 220, lines: []string{"fake.test", "ready"}},
		{in: "452-<a@x> over\r\n452 4.2.2 quota\r\n", code: 452, lines: []string{"<a@x> over", "4.2.2 quota"}},
		{in: long, code: 250, lines: []string{long[4 : len(long)-2]}},
		{in: "250 " + strings.Repeat("x", maxReplyLine-5) + "\r\n", err: "longer than"},
		{in: strings.Repeat("x", 10*maxReplyLine), err: "longer than"},
		{in: strings.Repeat("250-x\r\n", maxReplyLines-1) + "250 y\r\n", code: 250, lines: append(slices.Repeat([]string{"x"}, maxReplyLines-1), "y")},
		{in: strings.Repeat("250-x\r\n", maxReplyLines) + "250 y\r\n", err: "lines"},
		{in: "250-a\r\n251 b\r\n", err: "changes"},
		{in: "25 ok\r\n", err: "malformed"},
		{in: "2500 ok\r\n", err: "malformed"},
		{in: "650 ok\r\n", err: "malformed"},
		{in: "190 ok\r\n", err: "malformed"},
		{in: "2a0 ok\r\n", err: "malformed"},
		{in: "260 ok\r\n", err: "malformed"},
		{in: "250_ok\r\n", err: "malformed"},
		{in: "\r\n", err: "malformed"},
		{in: "", err: "EOF"},
		{in: "250 ok", err: "unexpected EOF"},
		{in: "250-a\r\n", err: "unexpected EOF"},
	} {
		rep, err := readReply(replyReader(tc.in))
		name := tc.in[:min(len(tc.in), 40)]
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("readReply(%q) = %v, %v; want an error with %q", name, rep, err, tc.err)
			}
			continue
		}
		if err != nil || rep.code != tc.code || !slices.Equal(rep.lines, tc.lines) {
			t.Errorf("readReply(%q) = %d %q, %v; want %d %q", name, rep.code, rep.lines, err, tc.code, tc.lines)
		}
	}
}

// TestReadReplies: replies follow each other on one stream.
func TestReadReplies(t *testing.T) {
	r := replyReader("250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n250 2.0.0 Continue\r\n")
	var got []int
	for {
		rep, err := readReply(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rep.code)
	}
	if !slices.Equal(got, []int{250, 550, 250}) {
		t.Errorf("codes %v, want 250 550 250", got)
	}
}

func TestReplySMTPError(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  smtp.SMTPError
	}{
		{[]string{"5.1.1 no such user"}, smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}},
		{[]string{"no such user"}, smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "no such user"}},
		{[]string{"5.1.1"}, smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: ""}},
		// RFC 2034: the code on every line; go-smtp: on the last only.
		{[]string{"5.1.1 no", "5.1.1 such user"}, smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no\nsuch user"}},
		{[]string{"no", "5.2.2 such user"}, smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "no\nsuch user"}},
		{[]string{"5.1 x", "1.2.3 y", "5.1.1000 z"}, smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "5.1 x\n1.2.3 y\n5.1.1000 z"}},
	} {
		got := reply{code: 550, lines: tc.lines}.smtpError()
		if *got != tc.want {
			t.Errorf("smtpError(%q) = %+v, want %+v", tc.lines, *got, tc.want)
		}
	}
	// A 2xx after the message is "250 2.0.0" with the text; no enhanced
	// code at all still works.
	r := reply{code: 250, lines: []string{"<a@x> saved"}}.recipientResult("mb:24")
	if r.Code != 250 || r.Enhanced != "2.0.0" || r.Text != "<a@x> saved" || r.RemoteMTA != "mb:24" {
		t.Errorf("recipientResult = %+v", r)
	}
	r = reply{code: 451, lines: []string{"try later"}}.recipientResult("mb:24")
	if r.Code != 451 || r.Enhanced != "" || r.Text != "try later" {
		t.Errorf("recipientResult = %+v, want 451 without enhanced code", r)
	}
}

// FuzzReply: the reply parser never panics, never accepts a line over
// the bound or a reply over maxReplyLines, and what it accepts reads
// back the same once written out again.
func FuzzReply(f *testing.F) {
	for _, s := range []string{
		"250 2.1.0 ok\r\n",
		"250-fake.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 1000\r\n",
		"220-a\r\n220 b\r\n",
		"452-<a@x> over\r\n452 4.2.2 quota\r\n250 2.0.0 <b@x> saved\r\n",
		"250\r\n",
		"250 ok\n",
		"250-\r\n250 \r\n",
		"250-a\r\n251 b\r\n",
		"hello there\r\n",
		"250 ok",
		"250-a",
		"\r\n\r\n",
		"999 x\r\n",
		"250 \x00\xff\r\r\n",
		"250 5.5.5.5 x\r\n",
		"250 " + strings.Repeat("x", maxReplyLine) + "\r\n",
		strings.Repeat("250-x\r\n", maxReplyLines+1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), maxReplyLine)
		for {
			rep, err := readReply(r)
			if err != nil {
				return
			}
			if rep.code < 200 || rep.code > 559 {
				t.Fatalf("code %d accepted", rep.code)
			}
			if len(rep.lines) == 0 || len(rep.lines) > maxReplyLines {
				t.Fatalf("%d lines accepted", len(rep.lines))
			}
			var out strings.Builder
			for i, l := range rep.lines {
				if n := len("250-") + len(l) + len("\n"); n > maxReplyLine {
					t.Fatalf("a line of at least %d bytes accepted", n)
				}
				if strings.ContainsAny(l, "\n") {
					t.Fatalf("line %q has a line feed", l)
				}
				sep := "-"
				if i == len(rep.lines)-1 {
					sep = " "
				}
				// No longer than the line read: a bare LF, unless the
				// text ends in a CR, which only a CRLF keeps.
				end := "\n"
				if strings.HasSuffix(l, "\r") {
					end = "\r\n"
				}
				fmt.Fprintf(&out, "%d%s%s%s", rep.code, sep, l, end)
			}
			again, err := readReply(replyReader(out.String()))
			if err != nil || again.code != rep.code || !slices.Equal(again.lines, rep.lines) {
				t.Fatalf("%q read back as %d %q, %v; want %d %q", out.String(), again.code, again.lines, err, rep.code, rep.lines)
			}
			// The conversions take anything.
			rep.smtpError()
			rep.recipientResult("x")
		}
	})
}
