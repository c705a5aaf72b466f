package pop3d

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line    string
		name    string
		args    []string
		wantErr error
	}{
		{"STAT", "STAT", nil, nil},
		{"stat", "STAT", nil, nil},
		{"LIST 1", "LIST", []string{"1"}, nil},
		{"TOP  1   10", "TOP", []string{"1", "10"}, nil},
		{"RETR 1 ", "RETR", []string{"1"}, nil},
		{"USER alice@example.org", "USER", []string{"alice@example.org"}, nil},
		{"PASS correct horse battery", "PASS", []string{"correct horse battery"}, nil},
		{"PASS  leading space", "PASS", []string{" leading space"}, nil},
		{"PASS pässwörd", "PASS", []string{"pässwörd"}, nil},
		{"PASS", "PASS", nil, nil},
		{"AUTH PLAIN " + strings.Repeat("QUFB", 30), "AUTH", []string{"PLAIN", strings.Repeat("QUFB", 30)}, nil},
		{"", "", nil, errEmptyCommand},
		{"   ", "", nil, errEmptyCommand},
		{" STAT", "", nil, errBadKeyword},
		{"ST", "", nil, errBadKeyword},
		{"STATS", "", nil, errBadKeyword},
		{"ST1T", "", nil, errBadKeyword},
		{"STAT\x00", "", nil, errBadKeyword},
		{"STAT\t1", "", nil, errBadKeyword},
		{"\xffSTA", "", nil, errBadKeyword},
		{"LIST \x01", "", nil, errBadArgument},
		{"LIST é", "", nil, errBadArgument},
		{"LIST " + strings.Repeat("1", 41), "", nil, errBadArgument},
		{"PASS \xff\xfe", "", nil, errBadArgument},
		{"USER a\x00b", "", nil, errBadArgument},
	}
	for _, tt := range tests {
		got, err := parseCommand(tt.line)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("parseCommand(%q) error = %v, want %v", tt.line, err, tt.wantErr)
			continue
		}
		if got.name != tt.name || !slices.Equal(got.args, tt.args) {
			t.Errorf("parseCommand(%q) = %q %q, want %q %q", tt.line, got.name, got.args, tt.name, tt.args)
		}
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"0", 0, false},
		{"1", 1, false},
		{"007", 7, false},
		{"2147483647", 2147483647, false},
		{"2147483648", 0, true},
		{"99999999999", 0, true},
		{"", 0, true},
		{"-1", 0, true},
		{"+1", 0, true},
		{"1e3", 0, true},
		{"0x10", 0, true},
		{"１", 0, true},
	}
	for _, tt := range tests {
		got, err := parseNumber(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseNumber(%q) = %v, %v, want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDecodePlain(t *testing.T) {
	tests := []struct {
		in         string
		user, pass string
		wantErr    bool
	}{
		{b64("\x00alice@example.org\x00pw"), "alice@example.org", "pw", false},
		{b64("alice@example.org\x00alice@example.org\x00pw"), "alice@example.org", "pw", false},
		{b64("\x00alice\x00pass with spaces and \u00fc"), "alice", "pass with spaces and \u00fc", false},
		{b64("bob\x00alice\x00pw"), "", "", true},
		{b64("\x00\x00pw"), "", "", true},
		{b64("\x00alice\x00"), "", "", true},
		{b64("alice\x00pw"), "", "", true},
		{b64("\x00alice\x00p\x00w"), "", "", true},
		{b64("\x00alice\x00\xff"), "", "", true},
		{"not base64!", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		user, pass, err := decodePlain(tt.in)
		if (err != nil) != tt.wantErr || user != tt.user || pass != tt.pass {
			t.Errorf("decodePlain(%q) = %q, %q, %v, want %q, %q, error %v", tt.in, user, pass, err, tt.user, tt.pass, tt.wantErr)
		}
	}
}

// FuzzCommand: the parser never panics, and what it accepts is well formed:
// an upper-case keyword of 3 or 4 letters and arguments without controls
// (USER and PASS: without CR, LF or NUL, and UTF-8).
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"USER alice@example.org", "PASS secret word", "STAT", "LIST", "LIST 1", "UIDL 2",
		"RETR 1", "TOP 1 10", "DELE 3", "NOOP", "RSET", "QUIT", "CAPA", "STLS",
		"AUTH PLAIN AGFsaWNlAHB3", "AUTH PLAIN", "AUTH", "APOP a b", "", " ", "\x00", "LIST \xff",
		"TOP 99999999999 -1", "pass \xc3\x28",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err != nil {
			if cmd.name != "" || cmd.args != nil {
				t.Fatalf("parseCommand(%q) = %q %q with error %v, want zero", line, cmd.name, cmd.args, err)
			}
			return
		}
		if n := len(cmd.name); n < minKeywordLen || n > maxKeywordLen || strings.ToUpper(cmd.name) != cmd.name {
			t.Fatalf("parseCommand(%q) name = %q", line, cmd.name)
		}
		for _, c := range cmd.name {
			if c < 'A' || c > 'Z' {
				t.Fatalf("parseCommand(%q) name = %q", line, cmd.name)
			}
		}
		for _, a := range cmd.args {
			if a == "" {
				t.Fatalf("parseCommand(%q) has an empty argument", line)
			}
			if restOfLine[cmd.name] {
				if strings.ContainsAny(a, "\x00\r\n") || !utf8.ValidString(a) {
					t.Fatalf("parseCommand(%q) argument %q", line, a)
				}
				continue
			}
			for i := 0; i < len(a); i++ {
				if a[i] <= ' ' || a[i] >= 0x7f {
					t.Fatalf("parseCommand(%q) argument %q has byte %#x", line, a, a[i])
				}
			}
		}
		for _, a := range cmd.args {
			if n, err := parseNumber(a); err == nil && (n < 0 || n > maxMsgNum) {
				t.Fatalf("parseNumber(%q) = %d", a, n)
			}
		}
	})
}
