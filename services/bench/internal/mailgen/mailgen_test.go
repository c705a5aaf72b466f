package mailgen_test

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/bench/internal/mailgen"
)

func TestMessage(t *testing.T) {
	sizes := []int{2048, 4096, 102400}
	g := mailgen.New("bench test", sizes)
	seen := make(map[string]bool)
	for _, size := range sizes {
		id, msg := g.Message("user@example.org", size)
		if seen[id] {
			t.Errorf("Message-ID %s twice", id)
		}
		seen[id] = true
		m, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if got := m.Header.Get("Message-Id"); got != id {
			t.Errorf("size %d: header Message-ID %q, returned %q", size, got, id)
		}
		if m.Header.Get("To") != "<user@example.org>" || m.Header.Get("Subject") != "bench test" {
			t.Errorf("size %d: header %v", size, m.Header)
		}
		// About the size asked for: within a line or two.
		if d := len(msg) - size; d < -160 || d > 80 {
			t.Errorf("size %d: message of %d bytes", size, len(msg))
		}
		for i, line := range strings.Split(string(msg), "\r\n") {
			if len(line) > 78 || strings.ContainsAny(line, "\r\n") {
				t.Errorf("size %d: line %d %q: longer than 78 or a bare CR/LF", size, i, line)
				break
			}
		}
	}
	if !strings.HasPrefix(mailgen.Sender, "sender@") {
		t.Errorf("Sender = %q", mailgen.Sender)
	}
}

func TestMessageUnknownSize(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Message(size not given to New) did not panic")
		}
	}()
	mailgen.New("x", []int{1024}).Message("u@x", 2048)
}

func TestSizeLabel(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want string
	}{{4096, "4 KiB"}, {102400, "100 KiB"}, {700, "700 B"}, {1500, "1500 B"}} {
		if got := mailgen.SizeLabel(tt.n); got != tt.want {
			t.Errorf("SizeLabel(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
