package main

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestConcFlag(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1,8,32", []int{1, 8, 32}, false},
		{" 4 ", []int{4}, false},
		{"1,,2", nil, true},
		{"0", nil, true},
		{"x", nil, true},
	}
	for _, tt := range tests {
		var c concFlag
		err := c.Set(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !slices.Equal(c, tt.want)) {
			t.Errorf("Set(%q) = %v, %v, want %v, error %v", tt.in, c, err, tt.want, tt.wantErr)
		}
	}
	c := concFlag{1, 8}
	if got := c.String(); got != "1,8" {
		t.Errorf("String() = %q, want 1,8", got)
	}
}

func TestRunCommandLine(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		wantStderr string
	}{
		{nil, 2, "usage: bench"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"help"}, 0, ""},
		{[]string{"auth"}, 2, "--auth-bin is required"},
		{[]string{"auth", "--auth-bin", "x", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"auth", "--conc", "0"}, 2, "not a positive integer"},
		{[]string{"auth", "--auth-bin", "/nonexistent/auth"}, 1, "run make build"},
		{[]string{"imap"}, 2, "--auth-bin and --mailbox-bin are required"},
		{[]string{"imap", "--auth-bin", "a", "--mailbox-bin", "m", "x"}, 2, `unexpected argument "x"`},
		{[]string{"imap", "--auth-bin", "/nonexistent/auth", "--mailbox-bin", "m"}, 1, "run make build"},
		{[]string{"imap", "--messages", "x"}, 2, "invalid value"},
		{[]string{"smtp", "--auth-bin", "a", "--mailbox-bin", "m"}, 2, "--mta-bin is required"},
		{[]string{"smtp", "--duration", "1s"}, 2, "flag provided but not defined: -duration"},
		{[]string{"smtp", "--messages", "0"}, 2, "not a positive integer"},
		{[]string{"smtp", "--auth-bin", "/nonexistent/auth", "--mailbox-bin", "m", "--mta-bin", "/nonexistent/mta"}, 1, "postcove mta binary"},
		{[]string{"smtp", "--auth-bin", "/bin/true", "--mailbox-bin", "/bin/true", "--mta-bin", "/bin/true", "--sizes", "4096,8192", "--messages", "1,2,3"}, 1, "3 message counts for 2 sizes"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := run(context.Background(), tt.args, &stdout, &stderr)
		if code != tt.code || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.wantStderr)
		}
	}
}
