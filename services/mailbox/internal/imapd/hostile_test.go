package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// nested returns a message with depth levels of multipart (or
// message/rfc822) nesting around a text part.
func nested(depth int, rfc822 bool) string {
	var b strings.Builder
	b.WriteString("Subject: deep\r\n")
	for i := range depth {
		if rfc822 {
			b.WriteString("Content-Type: message/rfc822\r\n\r\nSubject: level\r\n")
			continue
		}
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep needle\r\n")
	return b.String()
}

// hostileMessages are messages a parser may choke on.
var hostileMessages = []string{
	nested(3000, false),
	nested(3000, true),
	"\xff\xfe\x00garbage without header end \x80\x81\r\nmore\r\n",
	"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n--x",
	"Content-Type: multipart/mixed\r\n\r\nno boundary parameter\r\n",
	"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n",
	"Content-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=C3=A9\r\n",
	"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTogeA==\r\n",
	"Subject: =?x-bogus?q?=FF?= \r\n continued\r\n\tagain\r\nFrom: <<<@@@>>>\r\nDate: yesterday\r\nno colon line\r\n\r\nbody",
	"",
}

// TestHostileMessages: deep nesting and garbage are fetched, searched and
// described without crashing the server or blowing the stack; nesting
// beyond the limit becomes one opaque part.
func TestHostileMessages(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		ts.deliver(t, "INBOX", hostileMessages...)
		c := ts.selectInbox(t)
		all := imap.SeqSet{{Start: 1, Stop: 0}}
		msgs, err := c.Fetch(all, &imap.FetchOptions{
			Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{
				{Peek: true, Part: []int{1, 1, 1, 1}}, {Peek: true, Part: []int{1}, Specifier: imap.PartSpecifierMIME},
				{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
			},
			BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{1}}},
		}).Collect()
		if err != nil || len(msgs) != len(hostileMessages) {
			t.Fatalf("FETCH of hostile messages = %d messages, %v", len(msgs), err)
		}
		depth := 0
		for bs := msgs[0].BodyStructure; ; depth++ {
			mp, ok := bs.(*imap.BodyStructureMultiPart)
			if !ok {
				if sp, _ := bs.(*imap.BodyStructureSinglePart); sp == nil || sp.Type != "application" {
					t.Errorf("innermost part past the nesting limit = %#v, want application/octet-stream", bs)
				}
				break
			}
			bs = mp.Children[0]
		}
		if depth != maxMIMEDepth {
			t.Errorf("BODYSTRUCTURE nesting = %d, want the limit %d", depth, maxMIMEDepth)
		}
		if _, err := c.Search(&imap.SearchCriteria{Text: []string{"needle"}}, nil).Wait(); err != nil {
			t.Errorf("SEARCH TEXT over hostile messages = %v", err)
		}
		if _, err := c.Fetch(imap.SeqSetNum(4), &imap.FetchOptions{BinarySection: []*imap.FetchItemBinarySection{{Part: []int{1}, Peek: true}}}).Collect(); err != nil {
			t.Errorf("BINARY[1] of damaged base64 = %v", err)
		}
		ts.login(t) // still serving
	})
}

// TestMalformedCommands: garbage, overlong lines and absurd literals get
// BAD or NO or a closed connection, and the server keeps serving.
func TestMalformedCommands(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "memstore", nil)
	// A line go-imap cannot even split into tag and command closes the
	// connection without a word; everything else is answered.
	for _, tc := range []struct {
		input    string
		answered bool
	}{
		{"\xff\xfe\x80 garbage\r\n", false},
		{"a1 " + strings.Repeat("X", 100<<10) + "\r\n", false},
		{"a1 FETCH 1:* (BODY[1.2.3.4.5.6.7.8.9]<0.4294967295>)\r\n", true},
		{"a1 SELECT INBOX\r\na2 FETCH 99999999:1 (FLAGS BODY.PEEK[HEADER.FIELDS (\xff)])\r\n", true},
		{"a1 SEARCH OR OR OR OR NOT NOT NOT (((((ALL)))))\r\n", true},
		{"a1 APPEND INBOX {4294967296}\r\n", true},
		// go-imap answers these two with its own NO [SERVERBUG].
		{"a1 APPEND INBOX (\\Seen \\Bogus) \"99-Foo-9999 99:99:99 +9999\" {3}\r\nabc\r\n", true},
		{"a1 LIST \"\" {99999}\r\n", true},
		{"a1 STORE 1:* +FLAGS (" + strings.Repeat("k ", 10000) + ")\r\n", true},
		{"a1 IDLE\r\nNOT DONE\r\n", true},
	} {
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		io.WriteString(r.conn, tc.input)
		r.conn.(*net.TCPConn).CloseWrite()
		r.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		out, err := io.ReadAll(r.r)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%.40q: read = %v, want the server to answer and close", tc.input, err)
		}
		if got := strings.Contains(string(out), "a1 ") || strings.Contains(string(out), "* BYE"); got != tc.answered {
			t.Errorf("%.40q = %q, want answered %v", tc.input, out, tc.answered)
		}
	}
	ts.login(t)
}

// panicLog fails the test when a log message mentions a panic: imapserver
// recovers a panicking session and only logs it.
type panicLog struct {
	mu     sync.Mutex
	panics []string
}

func (p *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicLog) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicLog) WithGroup(string) slog.Handler            { return p }
func (p *panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.panics = append(p.panics, r.Message)
		p.mu.Unlock()
	}
	return nil
}

// FuzzIMAPSession feeds arbitrary bytes, after a login, to a server over a
// loopback connection (memstore with a multipart message) and checks that
// no session panics (imapserver would recover and log it), that the server
// answers and closes within a few seconds, and that it still serves.
func FuzzIMAPSession(f *testing.F) {
	for _, s := range []string{
		"a SELECT INBOX\r\nb FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[1.MIME] BINARY[2] BODY[]<0.10>)\r\n",
		"a SELECT INBOX\r\nb UID SEARCH RETURN (MIN MAX COUNT SAVE) OR TEXT x NOT BODY y\r\nc FETCH $ UID\r\n",
		"a SELECT INBOX\r\nb STORE 1 +FLAGS ($x \\Seen)\r\nc COPY 1 Trash\r\nd MOVE 1 Junk\r\ne EXPUNGE\r\n",
		"a LIST (SUBSCRIBED) \"\" * RETURN (STATUS (MESSAGES SIZE) SPECIAL-USE)\r\nb CREATE x/y\r\nc RENAME x z\r\n",
		"a APPEND INBOX (\\Seen) {5+}\r\nhello\r\nb STATUS INBOX (MESSAGES UIDNEXT)\r\n",
		"a EXAMINE INBOX\r\nb IDLE\r\nDONE\r\nc UID EXPUNGE 1:*\r\nd CLOSE\r\n",
		"a ENABLE IMAP4rev2\r\nb NAMESPACE\r\nc SELECT INBOX\r\nd SEARCH ALL\r\n",
		"\xff\r\n\x00\x00\r\n{99}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		logs := &panicLog{}
		ts := startServer(t, "memstore", func(o *Options) { o.Logger = slog.New(logs) })
		ts.deliver(t, "INBOX", multipartMsg, nested(150, false))
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		go func() {
			// The server may close first: write errors are expected.
			r.conn.Write(input)
			r.conn.(*net.TCPConn).CloseWrite()
		}()
		r.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.Copy(io.Discard, r.r); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read = %v: the server did not close", err)
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		if len(logs.panics) > 0 {
			t.Fatalf("session panicked: %v", logs.panics)
		}
	})
}
