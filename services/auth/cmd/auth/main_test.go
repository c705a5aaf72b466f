package main

import (
	"testing"

	"github.com/postcove/postcove/services/internal/testlib"
)

// TestBadConfigNamesTheField: a bad file key, file value or environment
// value stops the service before it starts, with a message naming it.
func TestBadConfigNamesTheField(t *testing.T) {
	testlib.CheckConfigErrors(t, run, []testlib.ConfigError{
		{Name: "unknown key", File: "[database]\ndnss = \"x\"\n", Want: `database.dnss`},
		{Name: "bad driver", File: "[database]\ndriver = \"postgres\"\n", Want: "database.driver"},
		{Name: "bad duration", File: "[lockout]\nip_base = \"soon\"\n", Want: "lockout.ip_base"},
		{Name: "bad env", Env: []string{"POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD=many"}, Want: "POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD"},
		{Name: "bad listen", Env: []string{"POSTCOVE_AUTH_LISTEN_GRPC=localhost"}, Want: "listen.grpc"},
		{Name: "missing file", Args: []string{"-config", "/nonexistent/nope.toml"}, Want: "nope.toml"},
		{Name: "unknown command", Args: []string{"frobnicate"}, Want: `unknown command "frobnicate"`},
	})
}
