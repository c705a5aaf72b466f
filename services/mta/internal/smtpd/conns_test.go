package smtpd

import "testing"

// FuzzWatch: trackedConn's watch for CRLF "." CR not followed by LF finds
// the sequence exactly when a byte-by-byte scan does, however the bytes
// are split into reads.
func FuzzWatch(f *testing.F) {
	for _, s := range []string{"", "a\r\n.\rb", "\r\n.\r\n.\rx", "\r\n.\r\n", "x\r\n.\r", ".\r\r\n.\r\r\n"} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(5))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		n := max(int(step), 1)
		c := &trackedConn{tail: 0x0d0a}
		for i := 0; i < len(in); i += n {
			c.watch(in[i:min(i+n, len(in))])
		}
		// The reference: every byte in turn, after the greeting's CRLF.
		want := false
		tail := uint32(0x0d0a)
		for _, b := range in {
			if tail == 0x0d0a2e0d && b != '\n' {
				want = true
			}
			tail = tail<<8 | uint32(b)
		}
		if got := c.smuggled.Load(); got != want || c.tail != tail {
			t.Fatalf("watch(%q, reads of %d) = %v, tail %#x; want %v, tail %#x", in, n, got, c.tail, want, tail)
		}
	})
}
