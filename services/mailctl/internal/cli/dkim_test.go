package cli

import (
	"bytes"
	"cmp"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postcove/postcove/services/internal/dkimkey"
)

// keygen runs "mailctl dkim keygen" with --keys dir.
func keygen(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return mailctl(t, "", "", append([]string{"dkim", "keygen", "--keys", dir}, args...)...)
}

func TestDKIMKeygen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args     []string
		selector string // "" for the default
		strings  int    // character-strings in the record
	}{
		{[]string{"Example.ORG"}, "", 2},
		{[]string{"example.org", "--type", "ed25519", "--selector", "Mail.2026"}, "mail.2026", 1},
		{[]string{"--type=rsa2048", "bücher.example", "--selector=s1"}, "s1", 2},
	}
	for _, tt := range tests {
		defaultBefore := dkimkey.DefaultSelector(time.Now())
		r := keygen(t, dir, tt.args...)
		want(t, r, 0, "rotation: publish the new selector's record beside the old one", "")
		m := regexp.MustCompile(`wrote (\S+) \((\S+), selector (\S+)\)`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Errorf("keygen %q printed %q, want where it wrote the key", tt.args, r.stdout)
			continue
		}
		path, sel := m[1], m[3]
		if wantSel := cmp.Or(tt.selector, defaultBefore); sel != wantSel && sel != dkimkey.DefaultSelector(time.Now()) {
			t.Errorf("keygen %q: selector %q, want %q", tt.args, sel, wantSel)
		}
		domain := filepath.Base(filepath.Dir(path))
		if path != filepath.Join(dir, domain, sel+".key") {
			t.Errorf("keygen %q wrote %s, want %s/DOMAIN/%s.key", tt.args, path, dir, sel)
		}
		checkKeyModes(t, path)
		key, err := dkimkey.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		wantValue, _ := dkimkey.Record(key.Public())
		txt := recordLine(t, r.stdout, sel+"._domainkey."+domain+".")
		if got := strings.Join(txt.Txt, ""); got != wantValue || len(txt.Txt) != tt.strings {
			t.Errorf("keygen %q record = %q in %d strings, want %q in %d", tt.args, got, len(txt.Txt), wantValue, tt.strings)
		}
		for _, s := range txt.Txt {
			if len(s) > 255 {
				t.Errorf("keygen %q record has a string of %d bytes", tt.args, len(s))
			}
		}
	}
}

// recordLine finds the zone line for name in out and parses it.
func recordLine(t *testing.T, out, name string) *dns.TXT {
	t.Helper()
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, name+" ") {
			rr, err := dns.NewRR(line)
			if err != nil {
				t.Fatalf("dns.NewRR(%q) = %v", line, err)
			}
			return rr.(*dns.TXT)
		}
	}
	t.Fatalf("no record for %s in %q", name, out)
	return nil
}

// checkKeyModes checks that the key file at path and its directory are
// for their owner only.
func checkKeyModes(t *testing.T, path string) {
	t.Helper()
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestDKIMKeygenOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "example.org", "s1.key")
	want(t, keygen(t, dir, "example.org", "--type", "ed25519", "--selector", "s1"), 0, path, "")
	before, _ := os.ReadFile(path)
	want(t, keygen(t, dir, "example.org", "--type", "ed25519", "--selector", "s1"), 1, "", "already exists: to rotate keys, give the new one its own selector")
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("a refused keygen changed %s", path)
	}
	want(t, keygen(t, dir, "example.org", "--type", "ed25519", "--selector", "s1", "--force"), 0, path, "")
	if after, _ := os.ReadFile(path); bytes.Equal(before, after) {
		t.Errorf("keygen --force left %s as it was", path)
	}
	checkKeyModes(t, path)
}

func TestDKIMKeygenUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args   []string
		stderr string
	}{
		{nil, "usage: mailctl dkim keygen DOMAIN"},
		{[]string{"a.example", "b.example"}, "usage: mailctl dkim keygen DOMAIN"},
		{[]string{"example.org", "--type", "rsa"}, `--type: unknown key type "rsa"`},
		{[]string{"example.org", "--selector", "../x"}, "--selector: invalid DKIM selector"},
		{[]string{"example.org", "--selector", "a/b"}, "--selector: invalid DKIM selector"},
		{[]string{"example.org", "--selector", ".."}, "--selector: invalid DKIM selector"},
		{[]string{"example.org", "--selector", "a_b"}, "--selector: invalid DKIM selector"},
		{[]string{"../etc"}, "DOMAIN: "},
		{[]string{"localhost"}, "DOMAIN: "},
		{[]string{"example.org", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"example.org", "--force=maybe"}, `invalid boolean value "maybe" for -force`},
	}
	for _, tt := range tests {
		want(t, keygen(t, dir, tt.args...), 2, "", tt.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused commands left %v in the keys directory", entries)
	}
	want(t, mailctl(t, "", "", "dkim", "frobnicate"), 2, "", `unknown command "dkim frobnicate"`)
	want(t, mailctl(t, "", "", "help"), 0, "mailctl dkim keygen DOMAIN", "")
}

// TestKeysDirFlag: --keys defaults to MAILCTL_KEYS_DIR, then "keys".
func TestKeysDirFlag(t *testing.T) {
	tests := []struct {
		env, args []string
		want      string
	}{
		{nil, nil, "keys"},
		{[]string{"MAILCTL_KEYS_DIR", "/etc/postcove/keys"}, nil, "/etc/postcove/keys"},
		{[]string{"MAILCTL_KEYS_DIR", "/etc/postcove/keys"}, []string{"--keys", "k2"}, "k2"},
	}
	for _, tt := range tests {
		a := &app{env: Env{Getenv: func(k string) string {
			if len(tt.env) == 2 && k == tt.env[0] {
				return tt.env[1]
			}
			return ""
		}}}
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		got := a.keysDirFlag(fs)
		if err := fs.Parse(tt.args); err != nil || *got != tt.want {
			t.Errorf("keysDirFlag with env %q, args %q = %q, %v; want %q", tt.env, tt.args, *got, err, tt.want)
		}
	}
}
