package dovecotauth_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/dovecotauth"
	"github.com/postcove/postcove/services/internal/testlib"
)

// startDovecot runs a private dovecot with a passwd-file passdb and userdb
// holding alice (argon2id, written by dovecot.HashArgon2ID: this also
// proves dovecot reads the hashes the benchmark writes) and bob ({PLAIN}).
func startDovecot(t *testing.T) *dovecot.Server {
	t.Helper()
	bin := testlib.RequireTool(t, dovecot.DefaultBin)
	dir := testlib.TempDir(t)
	// dovecot's auth process runs as the dovecot user and must reach the
	// passwd-file (and dovecot.Start checks the whole path).
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// Cheap parameters: the test checks the format, not the cost.
	hash, err := dovecot.HashArgon2ID("alice secret", dovecot.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := dovecot.WritePasswd(users, []dovecot.PasswdEntry{
		{User: "alice@example.org", Password: hash, UID: "5000", GID: "5000", Home: "/srv/mail/example.org/alice", Extra: []string{"userdb_quota_rule=*:storage=1G"}},
		{User: "bob@example.org", Password: "{PLAIN}bob secret", UID: "5000", GID: "5000", Home: "/srv/mail/example.org/bob"},
	}); err != nil {
		t.Fatal(err)
	}
	// The passwd-file passdb and userdb come from scripts/dovecot-bench.sh.
	srv, err := dovecot.Start(context.Background(), dovecot.Options{
		Bin:        bin,
		ScriptsDir: filepath.Join("..", "..", "..", "..", "scripts"),
		Dir:        filepath.Join(dir, "dc"),
		Passwd:     users,
		Config:     "auth_failure_delay = 0\n",
		Sockets:    []string{"auth-client", "auth-userdb"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop dovecot: %v", err)
		}
		if t.Failed() {
			t.Logf("dovecot log:\n%s", srv.LogTail())
		}
	})
	return srv
}

func TestClientAgainstDovecot(t *testing.T) {
	srv := startDovecot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cl, err := dovecotauth.DialClient(ctx, srv.Socket("auth-client"), uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.Mechanisms(); !slices.Contains(got, "PLAIN") {
		t.Errorf("Mechanisms() = %q, want PLAIN among them", got)
	}
	if cl.ServerPID() == "" {
		t.Error("ServerPID() is empty")
	}

	tests := []struct {
		name     string
		user     string
		password string
		ok       bool
	}{
		{"argon2id", "alice@example.org", "alice secret", true},
		{"plain scheme", "bob@example.org", "bob secret", true},
		{"upper case user", "Alice@Example.org", "alice secret", true}, // auth_username_format = %Lu
		{"wrong password", "alice@example.org", "alice secret!", false},
		{"unknown user", "carol@example.org", "alice secret", false},
		{"password with tab and colon", "bob@example.org", "bob\tsecret:", false},
	}
	// One connection serves every request in turn, as a login process's
	// connection does.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := cl.AuthPlain(ctx, dovecotauth.PlainRequest{Service: "imap", User: tt.user, Password: tt.password, RemoteIP: "127.0.0.1", Secured: true, NoPenalty: true})
			if err != nil {
				t.Fatalf("AuthPlain(%s) = %v", tt.user, err)
			}
			if res.OK != tt.ok {
				t.Errorf("AuthPlain(%s, %q).OK = %v (params %q), want %v", tt.user, tt.password, res.OK, res.Params, tt.ok)
			}
			if tt.ok {
				if got, _ := dovecotauth.Param(res.Params, "user"); got != strings.ToLower(tt.user) {
					t.Errorf("AuthPlain(%s) user= %q, want %q", tt.user, got, strings.ToLower(tt.user))
				}
			}
		})
	}
}

func TestUserdbAgainstDovecot(t *testing.T) {
	srv := startDovecot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	u, err := dovecotauth.DialUserdb(ctx, srv.Socket("auth-userdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()

	tests := []struct {
		user   string
		found  bool
		fields []string // that must be among the reply's
	}{
		{"alice@example.org", true, []string{"home=/srv/mail/example.org/alice", "uid=5000", "quota_rule=*:storage=1G"}},
		{"bob@example.org", true, []string{"home=/srv/mail/example.org/bob"}},
		{"nobody@example.org", false, nil},
		{"tab\there@example.org", false, nil}, // escaped on the wire, not a protocol error
	}
	for _, tt := range tests {
		res, err := u.User(ctx, tt.user, "lmtp")
		if err != nil {
			t.Fatalf("User(%q) = %v", tt.user, err)
		}
		if res.Found != tt.found {
			t.Errorf("User(%q).Found = %v, want %v", tt.user, res.Found, tt.found)
			continue
		}
		if tt.found && res.User != tt.user {
			t.Errorf("User(%q).User = %q, want %q", tt.user, res.User, tt.user)
		}
		for _, f := range tt.fields {
			if !slices.Contains(res.Fields, f) {
				t.Errorf("User(%q).Fields = %q, want %q among them", tt.user, res.Fields, f)
			}
		}
	}
}

func TestUserdbDeadline(t *testing.T) {
	srv := startDovecot(t)
	u, err := dovecotauth.DialUserdb(context.Background(), srv.Socket("auth-userdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := u.User(ctx, "alice@example.org", "lmtp"); !errors.Is(err, context.Canceled) {
		t.Errorf("User with a cancelled context = %v, want context.Canceled", err)
	}
	// Refused before anything was sent: the connection is still good.
	if res, err := u.User(context.Background(), "alice@example.org", "lmtp"); err != nil || !res.Found {
		t.Errorf("User after a refused call = %+v, %v, want found", res, err)
	}
}
