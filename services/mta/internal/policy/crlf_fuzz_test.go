package policy

import (
	"errors"
	"io"
	"testing"
)

// referenceCRLF is the plain definition CRLFReader must agree with: the
// good bytes before the first bare CR or LF, and the violation with its
// line.
func referenceCRLF(data []byte) ([]byte, *Violation) {
	line := 1
	for i, b := range data {
		prevCR := i > 0 && data[i-1] == '\r'
		switch {
		case prevCR && b != '\n':
			return data[:i], &Violation{Reason: BareCR, Detail: "line " + itoa(line)}
		case !prevCR && b == '\n':
			return data[:i], &Violation{Reason: BareLF, Detail: "line " + itoa(line)}
		}
		if b == '\n' {
			line++
		}
	}
	if len(data) > 0 && data[len(data)-1] == '\r' {
		return data, &Violation{Reason: BareCR, Detail: "at the end of the message"}
	}
	return data, nil
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// FuzzCRLFReader: read in pieces of any size, CRLFReader finds what the
// byte-by-byte definition finds, at the same place and line.
func FuzzCRLFReader(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\nb", "a\rb", "a\r", "\r\n\r\n.\r\n", "x\r\n\n.\r\n", "x\r.\r\n", "\n", "\r", "ok\r\nbad\n"} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		var r io.Reader = &pieces{data: data, n: int(piece%16) + 1}
		got, err := io.ReadAll(NewCRLFReader(r))
		want, wantV := referenceCRLF(data)
		var v *Violation
		switch {
		case wantV == nil && err != nil:
			t.Fatalf("%q: error %v, want none", data, err)
		case wantV != nil && (!errors.As(err, &v) || v.Reason != wantV.Reason || v.Detail != wantV.Detail):
			t.Fatalf("%q: error %v, want %v (%s)", data, err, wantV.Reason, wantV.Detail)
		case string(got) != string(want):
			t.Fatalf("%q: read %q before the error, want %q", data, got, want)
		}
	})
}

// pieces reads data n bytes at a time.
type pieces struct {
	data []byte
	n    int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), p.n)], p.data)
	p.data = p.data[k:]
	return k, nil
}
