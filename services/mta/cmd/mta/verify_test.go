package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestInboundVerification runs auth, mailbox and mta as processes and
// sends from "outside" (swaks on port 25, from 127.0.0.1) with the
// senders' SPF, DKIM and DMARC records on the loopback DNS server: DMARC
// p=reject failing is refused, p=quarantine lands in Junk, one of our
// domains claimed without SPF or DKIM is refused, a SERVFAIL defers, and
// a properly signed message is delivered with our Authentication-Results.
func TestInboundVerification(t *testing.T) {
	testlib.RequireTool(t, "swaks")
	st := startStack(t)
	key, err := dkimkey.Generate(dkimkey.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dkimkey.Record(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	st.dns.SetZone(t, remoteZone+fmt.Sprintf(`
example.org.               IN TXT "v=spf1 ip4:192.0.2.1 -all"
reject.example.            IN TXT "v=spf1 -all"
_dmarc.reject.example.     IN TXT "v=DMARC1; p=reject"
quarantine.example.        IN TXT "v=spf1 -all"
_dmarc.quarantine.example. IN TXT "v=DMARC1; p=quarantine"
unsure.example.            IN TXT "v=spf1 -all"
signed.example.            IN TXT "v=spf1 -all"
_dmarc.signed.example.     IN TXT "v=DMARC1; p=reject"
sel._domainkey.signed.example. IN TXT "%s"
`, rec))
	st.dns.ServFail("_dmarc.unsure.example")

	refused := func(t *testing.T, from, subject, want string) {
		t.Helper()
		out, err := runSwaks(t, "--server", st.smtpAddr, "--from", from, "--to", "alice@example.org", "--header", "Subject: "+subject)
		if err == nil || !strings.Contains(out, "<** "+want) {
			t.Errorf("swaks from %s: %v, want the message refused with %q:\n%s", from, err, want, out)
		}
	}
	t.Run("p=reject fails", func(t *testing.T) {
		refused(t, "someone@reject.example", "e2e dmarc reject", "550 5.7.1 ")
	})
	t.Run("our domain from outside", func(t *testing.T) {
		refused(t, "bob@example.org", "e2e spoofed", "550 5.7.1 ")
	})
	t.Run("SERVFAIL defers", func(t *testing.T) {
		refused(t, "someone@unsure.example", "e2e dns down", "451 4.7.0 ")
	})

	t.Run("p=quarantine lands in Junk", func(t *testing.T) {
		swaks(t, "--server", st.smtpAddr, "--from", "someone@quarantine.example", "--to", "alice@example.org", "--header", "Subject: e2e quarantined")
		waitFor(t, "the message in alice's Junk", func() bool { return st.countIn("alice", ".Junk", "Subject: e2e quarantined") == 1 })
		if n := st.countIn("alice", ".Junk", "dmarc=fail header.from=quarantine.example"); n != 1 {
			t.Errorf("%d messages in Junk with dmarc=fail, want 1", n)
		}
		if n := st.count("alice", "Subject: e2e quarantined"); n != 0 {
			t.Errorf("%d copies in INBOX, want 0", n)
		}
	})

	t.Run("signed message delivered", func(t *testing.T) {
		raw := "From: Someone <someone@signed.example>\r\nTo: alice@example.org\r\nSubject: e2e signed\r\n" +
			"Date: Fri, 27 Nov 2026 16:00:00 +0000\r\nMessage-ID: <e2e-signed@signed.example>\r\n\r\nSigned, so it passes DMARC.\r\n"
		var signed bytes.Buffer
		err := dkim.Sign(&signed, strings.NewReader(raw), &dkim.SignOptions{Domain: "signed.example", Selector: "sel", Signer: key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
		if err != nil {
			t.Fatal(err)
		}
		data := filepath.Join(testlib.TempDir(t), "signed.eml")
		if err := os.WriteFile(data, signed.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		swaks(t, "--server", st.smtpAddr, "--from", "someone@signed.example", "--to", "alice@example.org", "--data", data)
		waitFor(t, "the signed message in alice's INBOX", func() bool { return st.count("alice", "Subject: e2e signed") == 1 })
		// SPF fails (the domain allows no server), DKIM carries DMARC.
		for _, want := range []string{
			"Authentication-Results: mx.example.org;",
			"spf=fail smtp.mailfrom=someone@signed.example;",
			"dkim=pass header.d=signed.example header.s=sel;",
			"dmarc=pass header.from=signed.example",
		} {
			if n := st.count("alice", want); n != 1 {
				t.Errorf("%d messages with %q, want the signed one", n, want)
			}
		}
	})
}
