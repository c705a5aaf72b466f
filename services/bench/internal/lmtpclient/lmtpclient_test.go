package lmtpclient

import (
	"bufio"
	"bytes"
	"testing"
)

func TestWriteDotStuffed(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ".\r\n"},
		{"a\nb", "a\r\nb\r\n.\r\n"},
		{"a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n.\r\n"},
		{".\n", "..\r\n.\r\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := writeDotStuffed(w, []byte(tt.in)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if buf.String() != tt.want {
			t.Errorf("writeDotStuffed(%q) = %q, want %q", tt.in, buf.String(), tt.want)
		}
	}
}
