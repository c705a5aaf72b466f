package smtpd

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// scriptedVerifier judges by the Subject, and records what it was shown.
type scriptedVerifier struct {
	sawBody, sawAR string
}

func (v *scriptedVerifier) Verify(ctx context.Context, m *Message) (Verdict, error) {
	b, err := io.ReadAll(m.Body)
	if err != nil {
		return Verdict{}, err
	}
	v.sawBody = string(b)
	v.sawAR = strings.Join(m.Header.Values("Authentication-Results"), "|")
	ar := testHost + "; dmarc=pass header.from=" + m.Sender
	switch m.Header.Values("Subject")[0] {
	case "reject":
		return Verdict{Reject: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "DMARC policy says reject"}}, nil
	case "quarantine":
		return Verdict{AuthResults: ar, Junk: true}, nil
	case "dnsfail":
		return Verdict{}, errors.New("DNS SERVFAIL")
	}
	return Verdict{AuthResults: ar}, nil
}

// TestVerifierSeam: the inbound Verifier (SPF/DKIM/DMARC, next step) sees
// the message after forged Authentication-Results are gone; its verdict
// adds our field, refuses, marks Junk, or tempfails.
func TestVerifierSeam(t *testing.T) {
	a := startAuth(t)
	v := &scriptedVerifier{}
	e := startServer(t, a, Inbound, func(o *Options) { o.Verifier = v })
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	send := func(subject string) string {
		return c.transaction("s@remote.example", "alice@example.org",
			"Authentication-Results: "+testHost+"; dmarc=pass\r\nSubject: "+subject+"\r\n\r\nthe body\r\n")
	}
	if r := send("reject"); !strings.HasPrefix(r, "550 5.7.1 DMARC policy says reject") {
		t.Errorf("reject: %q", r)
	}
	if r := send("dnsfail"); !strings.HasPrefix(r, "451 4.7.0 ") {
		t.Errorf("verifier error: %q", r)
	}
	if v.sawAR != "" || v.sawBody != "the body\r\n" {
		t.Errorf("verifier saw Authentication-Results %q and body %q", v.sawAR, v.sawBody)
	}
	if r := send("pass"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("pass: %q", r)
	}
	if r := send("quarantine"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("quarantine: %q", r)
	}
	msgs := e.spool.all()
	if len(msgs) != 2 || msgs[0].env.Junk || !msgs[1].env.Junk {
		t.Fatalf("queued %+v, want pass then quarantine (Junk)", msgs)
	}
	want := "\r\nAuthentication-Results: " + testHost + "; dmarc=pass header.from=s@remote.example\r\nSubject: pass\r\n"
	if !strings.Contains(msgs[0].body, want) || strings.Count(msgs[0].body, "Authentication-Results:") != 1 {
		t.Errorf("queued message, want only our Authentication-Results under Received:\n%s", msgs[0].body)
	}
}
