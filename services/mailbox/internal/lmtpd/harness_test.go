package lmtpd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/lmtpd/lmtptest"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
)

// env is an LMTP server on 127.0.0.1:0 in front of a Maildir store, asking
// a real auth service (or a fake resolver) about recipients.
type env struct {
	addr  string
	srv   *Server
	store store.Store
	root  string
	auth  *testlib.Auth // nil with a fake resolver
	reg   *prometheus.Registry
	logs  string // the server's log file
}

// log returns the server's log so far.
func (e *env) log() string {
	data, _ := os.ReadFile(e.logs)
	return string(data)
}

// startAuth runs auth with the users most tests use: alice (unlimited),
// bob (quota 1 KiB: the next message is over it), and an alias.
func startAuth(t *testing.T) *testlib.Auth {
	t.Helper()
	a := testlib.StartAuth(t)
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "pw", 0)
	a.User(t, "bob@example.org", "pw", 1024)
	a.User(t, "carol@example.org", "pw", 0)
	a.Alias(t, "team@example.org", "alice@example.org", "carol@example.org", "dave@remote.example")
	a.Alias(t, "ext@example.org", "erin@remote.example")
	return a
}

// startEnv starts an LMTP server using a (nil: a fake resolver that
// knows alice@example.org only), with opts adjusted by tune.
func startEnv(t *testing.T, a *testlib.Auth, tune func(*Options)) *env {
	t.Helper()
	e := &env{auth: a, root: testlib.TempDir(t), reg: prometheus.NewRegistry()}
	e.logs = filepath.Join(e.root, "lmtpd.log")
	logFile, err := os.Create(e.logs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := maildir.Open(maildir.Options{Root: e.root, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	var resolver Resolver = fakeResolver{"alice@example.org": {Kind: authclient.Deliver, Address: "alice@example.org",
		Mailboxes: []authclient.Mailbox{{Address: "alice@example.org", Domain: "example.org", LocalPart: "alice"}}}}
	if a != nil {
		// A connection of its own, not the helper's: after a restart of
		// auth it must recover by itself, as the service's does.
		conn, err := grpcx.Dial(a.Addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		resolver = authclient.New(conn)
	}
	opts := Options{
		Store:    st,
		Resolver: resolver,
		Logger:   slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: e.reg,
		Hostname: "mx.test",
		SpoolDir: e.root,
	}
	if tune != nil {
		tune(&opts)
	}
	e.store = opts.Store
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v, want nil", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve() = %v after Shutdown, want nil", err)
		}
		st.Close()
		logFile.Close()
		if t.Failed() {
			t.Logf("lmtpd log:\n%s", e.log())
		}
	})
	return e
}

// fakeResolver answers from a map; other addresses are unknown users of
// example.org.
type fakeResolver map[string]authclient.Recipient

func (f fakeResolver) ResolveRecipient(_ context.Context, addr string) (authclient.Recipient, error) {
	if r, ok := f[addr]; ok {
		return r, nil
	}
	if !strings.HasSuffix(addr, "@example.org") {
		return authclient.Recipient{Kind: authclient.NotLocalDomain, Address: addr}, nil
	}
	return authclient.Recipient{Kind: authclient.UnknownUser, Address: addr}, nil
}

// dial connects a raw LMTP client.
func dial(t *testing.T, addr string) *lmtptest.Client {
	t.Helper()
	return lmtptest.Dial(t, addr)
}

// stored returns the messages in a user's mailbox, in UID order.
func stored(t *testing.T, st store.Store, addr, mailbox string) []string {
	t.Helper()
	ctx := context.Background()
	user, err := st.User(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	mb, err := user.Select(ctx, mailbox)
	if err != nil {
		t.Fatalf("select %s of %s: %v", mailbox, addr, err)
	}
	defer mb.Close()
	var out []string
	for _, uid := range mb.UIDs() {
		body, err := mb.Open(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}
