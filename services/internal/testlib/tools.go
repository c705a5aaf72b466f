// Package testlib holds helpers for the services' tests: free ports, temp
// dirs kept on failure, certificates, external tools and a private MariaDB.
package testlib

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (the CI environment variable
// is set to a true value). In CI a missing tool or server is a failure, never
// a skip: a green run must mean the tests ran.
func InCI() bool {
	switch os.Getenv("CI") {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// Unavailable skips the test with the reason, or fails it in CI.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (required in CI)", reason)
	}
	t.Skip(reason)
}

// RequireTool returns the path of an external program, skipping the test
// when it is not installed (failing it in CI).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, name+" is not installed")
	}
	return path
}
