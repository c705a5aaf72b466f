package dovecot_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/internal/testlib"
)

func TestStartStop(t *testing.T) {
	bin := testlib.RequireTool(t, dovecot.DefaultBin)
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := dovecot.Start(context.Background(), dovecot.Options{
		Bin:     bin,
		Dir:     filepath.Join(dir, "dc"),
		Config:  "auth_mechanisms = plain\npassdb {\n  driver = static\n  args = password=x\n}\nuserdb {\n  driver = static\n  args = uid=1 gid=1 home=/nonexistent\n}\n",
		Sockets: []string{"auth-client", "auth-userdb"},
	})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(srv.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"base_dir = " + filepath.Join(dir, "dc", "run"), "protocols = none", "driver = static"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if _, err := os.Stat(srv.Socket("auth-client")); err != nil {
		t.Errorf("auth-client socket: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("Stop() = %v", err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(srv.Pid()))); err == nil {
		t.Errorf("dovecot master %d still there after Stop", srv.Pid())
	}
}

func TestStartBadConfig(t *testing.T) {
	bin := testlib.RequireTool(t, dovecot.DefaultBin)
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := dovecot.Start(context.Background(), dovecot.Options{Bin: bin, Dir: filepath.Join(dir, "dc"), Config: "no_such_setting = 1\n", Sockets: []string{"auth-client"}})
	if err == nil {
		t.Fatal("Start() with an unknown setting = nil error")
	}
	if !strings.Contains(err.Error(), "did not start") {
		t.Errorf("Start() = %v, want 'did not start'", err)
	}
}

func TestStartChecks(t *testing.T) {
	private := testlib.TempDir(t) // 0700: dovecot's auth process could not enter
	long := filepath.Join("/tmp", strings.Repeat("d", 100))
	tests := []struct {
		name string
		opts dovecot.Options
		want string
	}{
		{"no dir", dovecot.Options{}, "no directory"},
		{"missing binary", dovecot.Options{Bin: "/nonexistent/dovecot", Dir: private}, "apt-get install dovecot-core"},
		{"long socket path", dovecot.Options{Bin: "/bin/true", Dir: long, Sockets: []string{"auth-client"}}, "longer than"},
		{"unreachable dir", dovecot.Options{Bin: "/bin/true", Dir: filepath.Join(private, "dc")}, "not traversable"},
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
