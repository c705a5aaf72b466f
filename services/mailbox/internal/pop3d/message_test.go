package pop3d

import (
	"bytes"
	"strings"
	"testing"
)

// encode runs msg through a wireWriter in one write and returns the
// output and the octet count.
func encode(t testing.TB, msg string, stuff bool, bodyLines int) (string, int64) {
	t.Helper()
	var out bytes.Buffer
	ww := newWireWriter(&out, stuff, bodyLines)
	if err := copyWire(ww, strings.NewReader(msg)); err != nil {
		t.Fatalf("copyWire(%q) = %v", msg, err)
	}
	return out.String(), ww.n
}

// encodeBytewise is encode with one write per input byte, which must not
// change anything: a CR at the end of one write and its LF in the next,
// a dot at the start of a write.
func encodeBytewise(t testing.TB, msg string, stuff bool, bodyLines int) (string, int64) {
	t.Helper()
	var out bytes.Buffer
	ww := newWireWriter(&out, stuff, bodyLines)
	for i := 0; i < len(msg); i++ {
		if _, err := ww.Write([]byte{msg[i]}); err != nil {
			if err == errStop {
				break
			}
			t.Fatalf("Write = %v", err)
		}
	}
	if err := ww.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	return out.String(), ww.n
}

func TestWireWriter(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		stuff     bool
		bodyLines int
		want      string
		wantN     int // -1: len(want)
	}{
		{"crlf unchanged", "A: b\r\n\r\nbody\r\n", false, -1, "A: b\r\n\r\nbody\r\n", -1},
		{"bare lf", "A: b\n\nbody\n", false, -1, "A: b\r\n\r\nbody\r\n", -1},
		{"bare cr", "A: b\r\rx\r", false, -1, "A: b\r\n\r\nx\r\n", -1},
		{"mixed", "a\r\nb\nc\rd", false, -1, "a\r\nb\r\nc\r\nd\r\n", -1},
		{"unterminated", "abc", false, -1, "abc\r\n", -1},
		{"empty", "", false, -1, "", -1},
		{"stuffing", ".a\r\n..b\r\nc.\r\n.\r\n", true, -1, "..a\r\n...b\r\nc.\r\n..\r\n", 16},
		{"stuffing bare lf", ".\n.x\n", true, -1, "..\r\n..x\r\n", 7},
		{"stuffing after bare cr", "a\r.b", true, -1, "a\r\n..b\r\n", 7},
		{"no stuffing when counting", ".a\n", false, -1, ".a\r\n", -1},
		{"top 0", "H: 1\r\n\r\nb1\r\nb2\r\n", false, 0, "H: 1\r\n\r\n", -1},
		{"top 1", "H: 1\r\n\r\nb1\r\nb2\r\n", false, 1, "H: 1\r\n\r\nb1\r\n", -1},
		{"top more than there is", "H: 1\r\n\r\nb1\r\nb2", false, 5, "H: 1\r\n\r\nb1\r\nb2\r\n", -1},
		{"top no body", "H: 1\nH: 2\n", false, 0, "H: 1\r\nH: 2\r\n", -1},
		{"top bare lf and stuffing", "H: 1\n\n.b1\nb2\n", true, 1, "H: 1\r\n\r\n..b1\r\n", 13},
		{"top blank line is bare cr", "H: 1\r\rb1\rb2", false, 1, "H: 1\r\n\r\nb1\r\n", -1},
		{"nul and 8-bit kept", "a\x00\xff\n", false, -1, "a\x00\xff\r\n", -1},
	}
	for _, tt := range tests {
		for _, enc := range []struct {
			how string
			fn  func(testing.TB, string, bool, int) (string, int64)
		}{{"one write", encode}, {"bytewise", encodeBytewise}} {
			if tt.wantN < 0 {
				tt.wantN = len(tt.want)
			}
			got, n := enc.fn(t, tt.in, tt.stuff, tt.bodyLines)
			if got != tt.want || n != int64(tt.wantN) {
				t.Errorf("%s: wire(%q, stuff %v, lines %d) %s = %q, %d, want %q, %d", tt.name, tt.in, tt.stuff, tt.bodyLines, enc.how, got, n, tt.want, tt.wantN)
			}
		}
	}
}

func TestSizeCache(t *testing.T) {
	var c sizeCache
	k := sizeKey{user: "a@example.org", id: "x", storedSize: 10}
	if _, ok := c.get(k); ok {
		t.Fatal("get on an empty cache found something")
	}
	c.put(k, 12)
	if n, ok := c.get(k); !ok || n != 12 {
		t.Errorf("get(%v) = %d, %v, want 12, true", k, n, ok)
	}
	other := k
	other.storedSize = 11
	if _, ok := c.get(other); ok {
		t.Errorf("get(%v) found the entry of another stored size", other)
	}
	for i := range maxCachedSizes {
		c.put(sizeKey{id: string(rune(i))}, 1)
	}
	if len(c.sizes) > maxCachedSizes {
		t.Errorf("cache holds %d entries, more than %d", len(c.sizes), maxCachedSizes)
	}
}

// FuzzWireWriter: whatever the stored bytes, the output has only CRLF line
// ends, no line that is a lone "." (so the terminator cannot be forged),
// the count matches the unstuffed output, and splitting the writes changes
// nothing.
func FuzzWireWriter(f *testing.F) {
	f.Add(msgCRLF, -1)
	f.Add(msgLF, 1)
	f.Add(msgOdd, 0)
	f.Add("\r\n.\r\n", -1)
	f.Add("a\r.\r\nb", 2)
	f.Fuzz(func(t *testing.T, msg string, bodyLines int) {
		if bodyLines < -1 {
			bodyLines = -1
		}
		out, n := encode(t, msg, true, bodyLines)
		if split, sn := encodeBytewise(t, msg, true, bodyLines); split != out || sn != n {
			t.Fatalf("bytewise = %q, %d; one write = %q, %d", split, sn, out, n)
		}
		if out != "" && !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("output %q does not end in CRLF", out)
		}
		var unstuffed int64
		for _, line := range strings.SplitAfter(out, "\r\n") {
			if line == "" {
				continue
			}
			body := strings.TrimSuffix(line, "\r\n")
			if strings.ContainsAny(body, "\r\n") {
				t.Fatalf("bare CR or LF in output line %q", line)
			}
			if body == "." {
				t.Fatalf("output has a lone dot line: %q", out)
			}
			line = strings.TrimPrefix(line, ".")
			unstuffed += int64(len(line))
		}
		if unstuffed != n {
			t.Fatalf("count = %d, want %d (output %q)", n, unstuffed, out)
		}
		if bodyLines < 0 {
			if counted, _ := wireSize(strings.NewReader(msg)); counted != n {
				t.Fatalf("wireSize = %d, RETR sends %d", counted, n)
			}
		}
	})
}
