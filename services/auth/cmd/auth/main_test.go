package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadConfigNamesTheField: a bad file key, file value or environment
// value stops the service before it starts, with a message naming it.
func TestBadConfigNamesTheField(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown key", []string{"-config", write("a.toml", "[database]\ndnss = \"x\"\n")}, nil, `database.dnss`},
		{"bad driver", []string{"-config", write("b.toml", "[database]\ndriver = \"postgres\"\n")}, nil, "database.driver"},
		{"bad duration", []string{"-config", write("c.toml", "[lockout]\nip_base = \"soon\"\n")}, nil, "lockout.ip_base"},
		{"bad env", nil, map[string]string{"POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD": "many"}, "POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD"},
		{"bad listen", nil, map[string]string{"POSTCOVE_AUTH_LISTEN_GRPC": "localhost"}, "listen.grpc"},
		{"missing file", []string{"-config", filepath.Join(dir, "nope.toml")}, nil, "nope.toml"},
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			err := run(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error naming %q", tt.args, err, tt.want)
			}
		})
	}
}
