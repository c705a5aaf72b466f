package smtpd

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mta/internal/dkimsign"
)

// TestSubmissionDKIM: submitted mail is queued DKIM-signed for the
// author's domain, with the fields the server added (Message-ID, Date)
// covered, and the signature verifies.
func TestSubmissionDKIM(t *testing.T) {
	keys := testlib.TempDir(t)
	k, err := dkimkey.Generate(dkimkey.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dkimkey.Write(keys, "example.org", "s2026", k, false); err != nil {
		t.Fatal(err)
	}
	record, err := dkimkey.Record(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	a := startAuth(t)
	e := startServer(t, a, Submission, func(o *Options) { o.DKIM = dkimsign.New(keys, 0) })
	c := dial(t, e)
	c.login(e, "alice@example.org", "alice-pw")
	if r := c.transaction("alice@example.org", "carol@remote.example", "From: alice@example.org\r\nSubject: sign me\r\n\r\nbody\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	m := e.spool.one(t)
	vs, err := dkim.VerifyWithOptions(strings.NewReader(m.body), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name == "s2026._domainkey.example.org" {
			return []string{record}, nil
		}
		return nil, errors.New("no record for " + name)
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.org" {
		t.Fatalf("verify = %+v, %v\n%s", vs, err, m.body)
	}
	for _, f := range []string{"message-id", "date", "from"} {
		if countKey(vs[0].HeaderKeys, f) == 0 {
			t.Errorf("h= lacks %s: %q", f, vs[0].HeaderKeys)
		}
	}
	if !strings.HasPrefix(m.body, "Received: ") || !strings.Contains(m.body, "\r\nDKIM-Signature: ") {
		t.Errorf("want Received on top, then the signature:\n%s", m.body)
	}
}

func countKey(keys []string, k string) int {
	n := 0
	for _, x := range keys {
		if strings.EqualFold(x, k) {
			n++
		}
	}
	return n
}

type failingSigner struct{}

func (failingSigner) Sign(string, []byte, io.Reader) ([]string, error) {
	return nil, errors.New("read DKIM key: permission denied")
}

// TestSubmissionDKIMFailure: a signing failure is temporary, and nothing
// is queued unsigned.
func TestSubmissionDKIMFailure(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Submission, func(o *Options) { o.DKIM = failingSigner{} })
	c := dial(t, e)
	c.login(e, "alice@example.org", "alice-pw")
	if r := c.transaction("alice@example.org", "bob@example.org", message("alice@example.org", "x")); !strings.HasPrefix(r, "451 4.3.0 ") {
		t.Errorf("DATA with a failing signer: %q, want 451 4.3.0", r)
	}
	if n := len(e.spool.all()); n != 0 {
		t.Errorf("queued %d messages, want 0", n)
	}
}
