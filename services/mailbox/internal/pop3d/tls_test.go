package pop3d

import (
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// starttls sends STLS on c (its answer must be +OK) and returns a client
// on the TLS connection.
func (c *client) starttls(cfg *tls.Config) *client {
	c.t.Helper()
	c.ok("STLS")
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	return newClient(c.t, tc)
}

// TestSTLS: with plaintext logins refused, a client upgrades with STLS,
// after which CAPA offers USER and SASL PLAIN but no STLS, logins work and
// the login reaches auth marked as TLS.
func TestSTLS(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		serverTLS, clientTLS, _ := tlsConfigs(t)
		deliver(t, st, testUser, msgLF)
		ts := startServer(t, st, func(o *Options) {
			o.TLS = serverTLS
			o.AllowPlaintextAuth = false
		})
		c := dial(t, ts.addr)
		if got, want := c.cmd("USER "+testUser), "-ERR [AUTH] plaintext authentication disallowed without TLS; use STLS first"; got != want {
			t.Errorf("USER before STLS = %q, want %q", got, want)
		}
		c = c.starttls(clientTLS)
		c.ok("CAPA")
		caps := c.multi()
		if slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") || !slices.Contains(caps, "SASL PLAIN") {
			t.Errorf("CAPA after STLS = %q, want USER and SASL PLAIN, no STLS", caps)
		}
		if got, want := c.cmd("STLS"), "-ERR command not permitted when TLS active"; got != want {
			t.Errorf("second STLS = %q, want %q", got, want)
		}
		c.ok("AUTH PLAIN " + b64("\x00"+testUser+"\x00"+testPass))
		c.ok("RETR 1")
		if got := c.raw(); got != stuffed(wireLF) {
			t.Errorf("RETR over TLS = %q, want %q", got, stuffed(wireLF))
		}
		c.ok("QUIT")
	})
}

// TestSTLSInjection: commands pipelined after STLS in the same plaintext
// write (CVE-2011-0411 class) are discarded, never run inside the TLS
// session. The injected commands would log in and delete a message.
func TestSTLSInjection(t *testing.T) {
	serverTLS, clientTLS, _ := tlsConfigs(t)
	tests := []struct {
		name     string
		injected string
	}{
		{"capa", "CAPA\r\n"},
		{"login and delete", "USER " + testUser + "\r\nPASS " + testPass + "\r\nDELE 1\r\nQUIT\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := storeKinds()[0].open(t)
			deliver(t, st, testUser, msgCRLF)
			ts := startServer(t, st, func(o *Options) { o.TLS = serverTLS })
			c := dial(t, ts.addr)
			c.send("STLS\r\n" + tt.injected)
			if got := c.line(); !strings.HasPrefix(got, "+OK") {
				t.Fatalf("STLS = %q, want +OK", got)
			}
			tc := tls.Client(c.conn, clientTLS)
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			c = newClient(t, tc)
			// The first answer inside TLS must be to the first command
			// sent inside TLS.
			if got, want := c.cmd("NOOP"), "-ERR not logged in"; got != want {
				t.Fatalf("first answer after STLS = %q, want %q (the NOOP's): injected input was run", got, want)
			}
			c.ok("QUIT")
			waitSessions(t, ts.srv)
			if got := len(inbox(t, st, testUser)); got != 1 {
				t.Errorf("INBOX has %d messages, want 1", got)
			}
		})
	}
}

// TestImplicitTLS: POP3S, where the handshake comes before the greeting.
// A plaintext client gets nothing it can read and is dropped.
func TestImplicitTLS(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		serverTLS, clientTLS, _ := tlsConfigs(t)
		deliver(t, st, testUser, msgCRLF, msgOdd)
		ts := startServer(t, st, func(o *Options) {
			o.TLS = serverTLS
			o.ImplicitTLS = true
			o.AllowPlaintextAuth = false
		})
		conn, err := tls.Dial("tcp", ts.addr, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, conn)
		if got := c.line(); !strings.HasPrefix(got, "+OK pop.example.org") {
			t.Fatalf("greeting = %q", got)
		}
		c.ok("CAPA")
		if caps := c.multi(); slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") {
			t.Errorf("CAPA on POP3S = %q, want USER and no STLS", caps)
		}
		c.login(testUser, testPass)
		c.ok("RETR 2")
		if got := c.raw(); got != stuffed(wireOdd) {
			t.Errorf("RETR 2 = %q, want %q", got, stuffed(wireOdd))
		}
		c.ok("DELE 1")
		c.ok("QUIT")
		waitSessions(t, ts.srv)
		if got := len(inbox(t, st, testUser)); got != 1 {
			t.Errorf("INBOX has %d messages, want 1", got)
		}

		plain, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		pc := newClient(t, plain)
		pc.send("USER " + testUser + "\r\n")
		if !pc.closed() {
			t.Error("plaintext client on the POP3S port not dropped")
		}
	})
}
