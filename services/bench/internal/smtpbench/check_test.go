package smtpbench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/internal/testlib"
)

func deliver(t *testing.T, root, user, name, id string) {
	t.Helper()
	dir := filepath.Join(root, domain, user, "Maildir", "new")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("Message-ID: "+id+"\r\n\r\nbody\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newSide(root string, accepted ...string) *side {
	s := &side{name: "test", mailRoot: root, accepted: map[string]struct{}{}, logTail: func() string { return "the log" }}
	for _, id := range accepted {
		s.accept(id)
	}
	return s
}

func TestCheck(t *testing.T) {
	root := testlib.TempDir(t)
	s := newSide(root, "<ok@x>", "<twice@x>", "<lost@x>")
	deliver(t, root, "a", "1", "<ok@x>")
	deliver(t, root, "a", "2", "<twice@x>")
	deliver(t, root, "b", "3", "<twice@x>")
	deliver(t, root, "b", "4", "<never-accepted@x>")
	c, err := check(s)
	if err != nil {
		t.Fatal(err)
	}
	if c.Accepted != 3 || c.Delivered != 1 || !slices.Equal(c.Lost, []string{"<lost@x>"}) || !slices.Equal(c.Duplicated, []string{"<twice@x>"}) || c.Stray != 1 {
		t.Errorf("check() = %+v, want 3 accepted, 1 delivered, <lost@x> lost, <twice@x> duplicated, 1 stray", c)
	}
	err = c.Err("side")
	if err == nil || !strings.Contains(err.Error(), "1 lost (e.g. [<lost@x>])") || !strings.Contains(err.Error(), "1 messages delivered without a 250") {
		t.Errorf("Err() = %v", err)
	}
	if err := (Check{Accepted: 2, Delivered: 2}).Err("side"); err != nil {
		t.Errorf("Err() of a clean check = %v, want nil", err)
	}
}

func TestDrain(t *testing.T) {
	root := testlib.TempDir(t)
	b := &bench{opts: Options{DrainTimeout: 100 * time.Millisecond}}
	s := newSide(root, "<1@x>", "<2@x>")
	deliver(t, root, "a", "1", "<1@x>")
	_, err := b.drain(t.Context(), s)
	if err == nil || !strings.Contains(err.Error(), "1 of the 2 messages answered 250 are not in the Maildirs") || !strings.Contains(err.Error(), "the log") {
		t.Errorf("drain() with a message missing = %v, want a timeout naming 1 of 2 and the log", err)
	}
	deliver(t, root, "b", "2", "<2@x>")
	before := time.Now()
	done, err := b.drain(t.Context(), s)
	if err != nil || done.Before(before) {
		t.Errorf("drain() with everything delivered = %v, %v; want a time after %v", done, err, before)
	}
}

func TestOptionsDefaults(t *testing.T) {
	servers := postcove.Servers{AuthBin: "a", MailboxBin: "m"}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
		check   func(Options) bool
	}{
		{"defaults", Options{Servers: servers, MTABin: "t"}, "", func(o Options) bool {
			return slices.Equal(o.Sizes, DefaultSizes) && slices.Equal(o.Messages, DefaultMessages) &&
				slices.Equal(o.Concurrency, DefaultConcurrency) && o.WarmupMessages == DefaultWarmupMessages &&
				o.Users == DefaultUsers && o.DrainTimeout == DefaultDrainTimeout
		}},
		{"own sizes, default count", Options{Servers: servers, MTABin: "t", Sizes: []int{1024, 2048}}, "", func(o Options) bool {
			return o.messages(0) == 500 && o.messages(1) == 500
		}},
		{"one count for all", Options{Servers: servers, MTABin: "t", Messages: []int{7}}, "", func(o Options) bool {
			return o.messages(0) == 7 && o.messages(1) == 7
		}},
		{"no warmup", Options{Servers: servers, MTABin: "t", NoWarmup: true, WarmupMessages: 9}, "", func(o Options) bool {
			return o.WarmupMessages == 0
		}},
		{"no mta", Options{Servers: servers}, "--mta-bin", nil},
		{"no mailbox", Options{Servers: postcove.Servers{AuthBin: "a"}, MTABin: "t"}, "--mailbox-bin", nil},
		{"counts", Options{Servers: servers, MTABin: "t", Sizes: []int{1024}, Messages: []int{1, 2}}, "2 message counts for 1 sizes", nil},
		{"zero count", Options{Servers: servers, MTABin: "t", Messages: []int{0}}, "message count 0", nil},
		{"size", Options{Servers: servers, MTABin: "t", Sizes: []int{100}}, "message size 100", nil},
		{"concurrency", Options{Servers: servers, MTABin: "t", Concurrency: []int{101}}, "concurrency 101 outside 1..100", nil},
	}
	for _, tt := range tests {
		err := tt.opts.defaults()
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: defaults() = %v, want an error with %q", tt.name, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: defaults() = %v", tt.name, err)
		case tt.wantErr == "" && !tt.check(tt.opts):
			t.Errorf("%s: defaults() gave %+v", tt.name, tt.opts)
		}
	}
}
