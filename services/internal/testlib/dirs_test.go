package testlib

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTB records what TempDir asks of the test, so that a failing test can
// be simulated without failing this one.
type fakeTB struct {
	testing.TB
	failed   bool
	cleanups []func()
	logs     []string
}

func (f *fakeTB) Helper()                      {}
func (f *fakeTB) Name() string                 { return "TestFake/sub case" }
func (f *fakeTB) Failed() bool                 { return f.failed }
func (f *fakeTB) Cleanup(fn func())            { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Logf(format string, _ ...any) { f.logs = append(f.logs, format) }

func (f *fakeTB) finish() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestTempDir(t *testing.T) {
	t.Setenv("POSTCOVE_KEEP_TMP", "")
	tests := []struct {
		name   string
		failed bool
		kept   bool
	}{
		{"removed when the test passes", false, false},
		{"kept when the test fails", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := &fakeTB{TB: t}
			dir := TempDir(ft)
			if !strings.Contains(filepath.Base(dir), "TestFake_sub_case") {
				t.Errorf("TempDir() = %q, want the test name in it", dir)
			}
			if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			ft.failed = tt.failed
			ft.finish()
			_, err := os.Stat(dir)
			if kept := err == nil; kept != tt.kept {
				t.Errorf("after the test, dir exists = %v, want %v", kept, tt.kept)
			}
			if tt.kept {
				if len(ft.logs) == 0 {
					t.Errorf("TempDir kept %s without logging it", dir)
				}
				os.RemoveAll(dir)
			}
		})
	}
}
