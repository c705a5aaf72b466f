package dsn

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

const original = "From: alice@example.org\r\nTo: bob@remote.example\r\nSubject: lunch\r\n\r\nsee you\r\n"

// parse reads a DSN back with the standard library's MIME reader and
// returns its header and parts.
func parse(t *testing.T, b []byte) (mail.Header, []*multipart.Part, []string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("read DSN: %v\n%s", err, b)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %q (%v), want multipart/report; report-type=delivery-status", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts []*multipart.Part
	var bodies []string
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, p)
		bodies = append(bodies, string(b))
	}
	return m.Header, parts, bodies
}

func TestWrite(t *testing.T) {
	arrival := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	rep := Report{
		ReportingMTA: "mx.example.org", Sender: "alice@example.org", EnvID: "env42", QueueID: "q1", ArrivalDate: arrival,
		Recipients: []Recipient{
			{Final: "bob@remote.example", Orig: "bob@remote.example", Action: ActionFailed, Status: "5.1.1", RemoteMTA: "mx.remote.example", Diagnostic: "550 5.1.1 no such user"},
			{Final: "carol@remote.example", Action: ActionFailed, Status: "4.4.7"},
		},
	}
	for _, headersOnly := range []bool{false, true} {
		rep.HeadersOnly = headersOnly
		var buf bytes.Buffer
		if err := Write(&buf, rep, strings.NewReader(original), arrival.Add(time.Hour)); err != nil {
			t.Fatalf("Write = %v", err)
		}
		if strings.Contains(strings.ReplaceAll(buf.String(), "\r\n", ""), "\n") {
			t.Error("DSN has a bare LF")
		}
		h, parts, bodies := parse(t, buf.Bytes())
		if h.Get("To") != "<alice@example.org>" || h.Get("Auto-Submitted") != "auto-replied" || !strings.Contains(h.Get("From"), "MAILER-DAEMON@mx.example.org") {
			t.Errorf("DSN header = %v", h)
		}
		if len(parts) != 3 {
			t.Fatalf("DSN has %d parts, want 3", len(parts))
		}
		if ct := parts[1].Header.Get("Content-Type"); ct != "message/delivery-status" {
			t.Errorf("part 2 Content-Type = %q", ct)
		}
		// RFC 3464 §2.1: the status part is header-like groups: one
		// per message, then one per recipient.
		groups := strings.Split(strings.TrimSpace(bodies[1]), "\r\n\r\n")
		if len(groups) != 3 {
			t.Fatalf("delivery-status has %d groups, want 3:\n%s", len(groups), bodies[1])
		}
		fields := func(g string) textproto.MIMEHeader {
			r := textproto.NewReader(bufioReader(g + "\r\n\r\n"))
			h, err := r.ReadMIMEHeader()
			if err != nil {
				t.Fatalf("status group %q: %v", g, err)
			}
			return h
		}
		msgF, r1, r2 := fields(groups[0]), fields(groups[1]), fields(groups[2])
		for _, c := range []struct{ got, want string }{
			{msgF.Get("Reporting-MTA"), "dns; mx.example.org"},
			{msgF.Get("Original-Envelope-Id"), "env42"},
			{msgF.Get("Arrival-Date"), arrival.Format(time.RFC1123Z)},
			{r1.Get("Final-Recipient"), "rfc822; bob@remote.example"},
			{r1.Get("Original-Recipient"), "rfc822; bob@remote.example"},
			{r1.Get("Action"), "failed"},
			{r1.Get("Status"), "5.1.1"},
			{r1.Get("Remote-MTA"), "dns; mx.remote.example"},
			{r1.Get("Diagnostic-Code"), "smtp; 550 5.1.1 no such user"},
			{r2.Get("Final-Recipient"), "rfc822; carol@remote.example"},
			{r2.Get("Status"), "4.4.7"},
			{r2.Get("Original-Recipient"), ""},
		} {
			if c.got != c.want {
				t.Errorf("headersOnly %v: field = %q, want %q", headersOnly, c.got, c.want)
			}
		}
		wantCT, wantBody := "message/rfc822", original
		if headersOnly {
			wantCT, wantBody = "text/rfc822-headers", "From: alice@example.org\r\nTo: bob@remote.example\r\nSubject: lunch\r\n"
		}
		if ct := parts[2].Header.Get("Content-Type"); ct != wantCT {
			t.Errorf("part 3 Content-Type = %q, want %q", ct, wantCT)
		}
		if bodies[2] != wantBody {
			t.Errorf("part 3 = %q, want %q", bodies[2], wantBody)
		}
		if !strings.Contains(bodies[0], "<bob@remote.example>: 550 5.1.1 no such user") {
			t.Errorf("text part = %q, want the reason for bob", bodies[0])
		}
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
