package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		level string
		want  []string // messages that get through, in order
	}{
		{"debug", []string{"d", "i", "w", "e"}},
		{"info", []string{"i", "w", "e"}},
		{"INFO", []string{"i", "w", "e"}},
		{"warn", []string{"w", "e"}},
		{"warning", []string{"w", "e"}},
		{"error", []string{"e"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		log, err := New(&buf, tt.level)
		if err != nil {
			t.Fatalf("New(%q) = %v", tt.level, err)
		}
		log.Debug("d")
		log.Info("i", "user", "a@example.org")
		log.Warn("w")
		log.Error("e")
		var got []string
		for line := range strings.Lines(buf.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("New(%q) wrote a line that is not JSON: %q: %v", tt.level, line, err)
			}
			got = append(got, rec["msg"].(string))
			if rec["msg"] == "i" && rec["user"] != "a@example.org" {
				t.Errorf("New(%q) record %v lacks the attribute user", tt.level, rec)
			}
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("New(%q) logged %v, want %v", tt.level, got, tt.want)
		}
	}
}

func TestNewBadLevel(t *testing.T) {
	for _, level := range []string{"", "verbose", "trace", "3"} {
		log, err := New(&bytes.Buffer{}, level)
		if err == nil || log != nil {
			t.Errorf("New(%q) = %v, %v, want an error", level, log, err)
			continue
		}
		if !strings.Contains(err.Error(), `"`+level+`"`) {
			t.Errorf("New(%q) error %q does not name the value", level, err)
		}
	}
}

func TestParseLevel(t *testing.T) {
	if got, err := ParseLevel("Warn"); err != nil || got != slog.LevelWarn {
		t.Errorf("ParseLevel(Warn) = %v, %v, want %v", got, err, slog.LevelWarn)
	}
}

func TestDiscard(t *testing.T) {
	Discard().Error("nothing happens")
}

func TestPrinter(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	p := Printer{Log: log, Prefix: "lmtp: "}
	p.Printf("accept error: %v\n", "boom")
	p.Println("panic", 42)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		got = append(got, rec.Level+" "+rec.Msg)
	}
	want := []string{"WARN lmtp: accept error: boom", "WARN lmtp: panic 42"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("logged %q, want %q", got, want)
	}
}
