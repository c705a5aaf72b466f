package testlib

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ConfigError is one case of a service's bad-configuration test: the
// config file, arguments and environment that must stop the service
// before it starts, with an error naming Want (the field, variable or
// file at fault).
type ConfigError struct {
	Name string
	File string   // config file contents, given with -config; "" for none
	Args []string // after the -config flag, if any
	Env  []string // KEY=VALUE
	Want string
}

// CheckConfigErrors runs every case through run, a command's
// run(args) entry point, and fails those whose error does not name Want.
func CheckConfigErrors(t *testing.T, run func(args []string) error, cases []ConfigError) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			args := tt.Args
			if tt.File != "" {
				path := filepath.Join(t.TempDir(), "config.toml")
				if err := os.WriteFile(path, []byte(tt.File), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"-config", path}, args...)
			}
			for _, kv := range tt.Env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			if err := run(args); err == nil || !strings.Contains(err.Error(), tt.Want) {
				t.Errorf("run(%q) with %q = %v, want an error naming %q", args, tt.Env, err, tt.Want)
			}
		})
	}
}
