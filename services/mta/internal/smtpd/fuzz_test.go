package smtpd

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/testlib"
)

// fakeAuth answers like auth for example.org with one user, without a
// process: a fuzz input must cost milliseconds.
type fakeAuth struct{}

func (fakeAuth) Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (authclient.User, error) {
	if username == "alice@example.org" && password == "alice-pw" {
		return authclient.User{Address: username}, nil
	}
	return authclient.User{}, authclient.ErrBadCredentials
}

func (fakeAuth) ResolveRecipient(ctx context.Context, address string) (authclient.Recipient, error) {
	switch {
	case address == "alice@example.org":
		return authclient.Recipient{Kind: authclient.Deliver, Address: address, Mailboxes: []authclient.Mailbox{{Address: address}}}, nil
	case strings.HasSuffix(address, "@example.org"):
		return authclient.Recipient{Kind: authclient.UnknownUser, Address: address}, nil
	}
	return authclient.Recipient{Kind: authclient.NotLocalDomain, Address: address}, nil
}

func (fakeAuth) CanSendAs(ctx context.Context, user, address string) (bool, error) {
	return strings.EqualFold(user, address), nil
}

// FuzzSMTPSession sends arbitrary bytes as a client session to inbound
// and submission servers over real sockets: the server must neither
// panic nor hang (it closes the session once the client has sent
// everything and shut its side), and must never queue a message without
// a recipient.
func FuzzSMTPSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO a\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<s@remote.example> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<alice@example.org> NOTIFY=FAILURE\r\nBDAT 14 LAST\r\nSubject: x\r\n\r\n",
		"EHLO a\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\n.\r\nMAIL FROM:<x@y.example>\r\n.\r\n",
		"EHLO a\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<c@remote.example>\r\nDATA\r\nFrom: alice@example.org\r\n\r\n.\r\n",
		"EHLO a\r\nAUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS5vcmc=\r\nYWxpY2UtcHc=\r\n",
		"EHLO a\r\nSTARTTLS\r\nRSET\r\n",
		"HELO a\r\nMAIL FROM:<\"a@b\"@example.org>\r\nRCPT TO:<@a,@b:c%d@example.org>\r\nVRFY x\r\nNOOP\r\nRSET\r\n",
		"EHLO a\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n" + strings.Repeat("Received: x\r\n", 52) + "\r\n.\r\n",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	certs := testlib.NewCerts(f)
	servers := map[bool]*env{}
	for _, sub := range []bool{false, true} {
		mode := Inbound
		if sub {
			mode = Submission
		}
		servers[sub] = startFuzzServer(f, certs, mode)
	}
	f.Fuzz(func(t *testing.T, input []byte, submission bool) {
		e := servers[submission]
		conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		// Write while reading: a server answering a long input must
		// not block on a client that does not read.
		go func() {
			conn.Write(input)
			conn.(*net.TCPConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Fatalf("session did not end: %v", err)
		}
		for _, m := range e.spool.all() {
			if len(m.env.Recipients) == 0 {
				t.Fatalf("queued without recipients: %+v", m)
			}
		}
	})
}

func startFuzzServer(f *testing.F, certs testlib.Certs, mode Mode) *env {
	e := &env{spool: &memSpool{}}
	tlsCfg := mustTLS(f, certs)
	srv, err := New(Options{
		Mode: mode, Hostname: testHost, TLS: tlsCfg, Auth: fakeAuth{}, Spool: e.spool,
		ReadTimeout: 5 * time.Second, DataTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxConnectionsPerIP: 1000, MaxConnections: 1000, MaxMessageBytes: 64 << 10,
	})
	if err != nil {
		f.Fatal(err)
	}
	e.srv = srv
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	e.addr = lis.Addr().String()
	go srv.Serve(lis)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return e
}
