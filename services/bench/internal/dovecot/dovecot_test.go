package dovecot_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/internal/testlib"
)

// scriptsDir is the repository's scripts/, seen from this package.
var scriptsDir = filepath.Join("..", "..", "..", "..", "scripts")

// startOptions are the options of a minimal instance in a new directory.
func startOptions(t *testing.T, bin string) dovecot.Options {
	t.Helper()
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := dovecot.MailOwner()
	passwd := filepath.Join(dir, "users.passwd")
	if err := dovecot.WritePasswd(passwd, []dovecot.PasswdEntry{{User: "a@example.org", Password: "{PLAIN}secret", UID: strconv.Itoa(uid), GID: strconv.Itoa(gid)}}); err != nil {
		t.Fatal(err)
	}
	return dovecot.Options{Bin: bin, ScriptsDir: scriptsDir, Dir: filepath.Join(dir, "dc"), Passwd: passwd, Sockets: []string{"auth-client"}}
}

func TestStartStop(t *testing.T) {
	opts := startOptions(t, testlib.RequireTool(t, dovecot.DefaultBin))
	opts.Config = "auth_cache_size = 0\n"
	opts.Sockets = []string{"auth-client", "auth-userdb"}
	srv, err := dovecot.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(srv.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"base_dir = " + filepath.Join(opts.Dir, "run"), "protocols = none", "args = " + opts.Passwd, "mail_fsync = always", "auth_cache_size = 0"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if _, err := os.Stat(srv.Socket("auth-client")); err != nil {
		t.Errorf("auth-client socket: %v", err)
	}
	if got, want := srv.MailRoot(), filepath.Join(opts.Dir, "mail"); got != want {
		t.Errorf("MailRoot() = %q, want %q", got, want)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("Stop() = %v", err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(srv.Pid()))); err == nil {
		t.Errorf("dovecot master %d still there after Stop", srv.Pid())
	}
}

// TestStartListeners starts the script's IMAP and LMTP listeners and
// logs in over IMAP with the passwd-file's user.
func TestStartListeners(t *testing.T) {
	opts := startOptions(t, testlib.RequireTool(t, dovecot.DefaultBin))
	testlib.RequireTool(t, "/usr/lib/dovecot/imap")
	testlib.RequireTool(t, "/usr/lib/dovecot/lmtp")
	_, port, _ := net.SplitHostPort(testlib.FreeAddr(t))
	n, _ := strconv.Atoi(port)
	opts.Listeners = []dovecot.Listener{{Protocol: "imap", Port: n}, {Protocol: "lmtp"}} // a given port, a free one
	srv, err := dovecot.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	if got, want := srv.Addr("imap"), net.JoinHostPort("127.0.0.1", port); got != want {
		t.Errorf("Addr(imap) = %q, want %q", got, want)
	}
	if srv.Addr("lmtp") == "" || srv.Addr("pop3") != "" {
		t.Errorf("Addr(lmtp), Addr(pop3) = %q, %q, want a port, none", srv.Addr("lmtp"), srv.Addr("pop3"))
	}
	// One exchange per protocol: what is sent, and the start of the
	// last line wanted back.
	for _, tt := range []struct{ proto, send, want string }{
		{"imap", "a LOGIN a@example.org secret\r\nb SELECT INBOX\r\n", "b OK"},
		{"lmtp", "LHLO bench.localhost\r\n", "250 "},
	} {
		c, err := net.DialTimeout("tcp", srv.Addr(tt.proto), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck // a net.Conn
		if _, err := io.WriteString(c, tt.send); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(c)
		var got []string
		for sc.Scan() && !strings.HasPrefix(sc.Text(), tt.want) {
			got = append(got, sc.Text())
		}
		if !strings.HasPrefix(sc.Text(), tt.want) {
			t.Errorf("%s: no %q in the answer: %q, %v\n%s", tt.proto, tt.want, got, sc.Err(), srv.LogTail())
		}
		c.Close()
	}
}

func TestStartBadConfig(t *testing.T) {
	opts := startOptions(t, testlib.RequireTool(t, dovecot.DefaultBin))
	opts.Config = "no_such_setting = 1\n"
	_, err := dovecot.Start(context.Background(), opts)
	if err == nil {
		t.Fatal("Start() with an unknown setting = nil error")
	}
	if !strings.Contains(err.Error(), "did not start") {
		t.Errorf("Start() = %v, want 'did not start'", err)
	}
}

func TestStartChecks(t *testing.T) {
	private := testlib.TempDir(t) // 0700: dovecot's auth process could not enter
	open := testlib.TempDir(t)
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join("/tmp", strings.Repeat("d", 100))
	tests := []struct {
		name string
		opts dovecot.Options
		want string
	}{
		{"no dir", dovecot.Options{}, "no directory"},
		{"no passwd-file", dovecot.Options{Bin: "/bin/true", Dir: private}, "no passwd-file"},
		{"no script", dovecot.Options{Bin: "/bin/true", Dir: filepath.Join(open, "x"), Passwd: "/dev/null", ScriptsDir: open}, "--scripts-dir"},
		{"bad listener", dovecot.Options{Bin: "/bin/true", Dir: filepath.Join(open, "y"), Passwd: "/dev/null", ScriptsDir: scriptsDir, Listeners: []dovecot.Listener{{Protocol: "pop3", Port: 1}}}, "unknown listener pop3=1"},
		{"missing binary", dovecot.Options{Bin: "/nonexistent/dovecot", Dir: private, Passwd: "/dev/null"}, "apt-get install dovecot-core"},
		{"long socket path", dovecot.Options{Bin: "/bin/true", Dir: long, Passwd: "/dev/null", Sockets: []string{"auth-client"}}, "longer than"},
		{"unreachable dir", dovecot.Options{Bin: "/bin/true", Dir: filepath.Join(private, "dc"), Passwd: "/dev/null"}, "not traversable"},
	}
	for _, tt := range tests {
		_, err := dovecot.Start(context.Background(), tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Start() = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

func TestHashArgon2IDFormat(t *testing.T) {
	h, err := dovecot.HashArgon2ID("secret", dovecot.PostcoveArgon2(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\{ARGON2ID\}\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Errorf("HashArgon2ID() = %q, want %s", h, re)
	}
	h2, _ := dovecot.HashArgon2ID("secret", dovecot.PostcoveArgon2(), rand.Reader)
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestPasswdEntryLine(t *testing.T) {
	e := dovecot.PasswdEntry{User: "a@example.org", Password: "{PLAIN}x", UID: "5000", GID: "5000", Home: "/srv/a", Extra: []string{"userdb_quota_rule=*:storage=0"}}
	got, err := e.Line()
	if err != nil {
		t.Fatal(err)
	}
	if want := "a@example.org:{PLAIN}x:5000:5000::/srv/a::userdb_quota_rule=*:storage=0"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	for _, bad := range []dovecot.PasswdEntry{
		{User: "a:b", Password: "{PLAIN}x"},
		{User: "a", Password: "{PLAIN}x\n"},
		{User: "a", Password: "{PLAIN}x", Extra: []string{"no value"}},
	} {
		if _, err := bad.Line(); err == nil {
			t.Errorf("Line(%+v) = nil error", bad)
		}
	}
}
