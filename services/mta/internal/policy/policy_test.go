package policy

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCRLFReader(t *testing.T) {
	tests := []struct {
		in   string
		want Reason // "" for no violation
	}{
		{"a\r\nb\r\n", ""},
		{"", ""},
		{"no line ending", ""},
		{"a\nb\r\n", BareLF},
		{"\n", BareLF},
		{"a\rb\r\n", BareCR},
		{"a\r\r\n", BareCR},
		{"a\r\n\r", BareCR},
		{"ends in CR\r", BareCR},
		{"x\r\n.\n", BareLF},
	}
	for _, tt := range tests {
		// One byte at a time too: state crosses Read calls.
		for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
			got, err := io.ReadAll(NewCRLFReader(r))
			var v *Violation
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CRLFReader(%q) = %v, want no error", tt.in, err)
			case tt.want == "" && string(got) != tt.in:
				t.Errorf("CRLFReader(%q) read %q", tt.in, got)
			case tt.want != "" && (!errors.As(err, &v) || v.Reason != tt.want):
				t.Errorf("CRLFReader(%q) = %v, want %s", tt.in, err, tt.want)
			}
		}
	}
}

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name, in   string
		max        int
		want       Reason // "" for success
		fields     int
		wantHeader string // Bytes() on success
		wantBody   string
	}{
		{name: "simple", in: "A: 1\r\nB: 2\r\n\r\nbody\r\n", max: 100, fields: 2, wantHeader: "A: 1\r\nB: 2\r\n\r\n", wantBody: "body\r\n"},
		{name: "folded", in: "A: 1\r\n 2\r\n\tthree\r\n\r\n", max: 100, fields: 1, wantHeader: "A: 1\r\n 2\r\n\tthree\r\n\r\n"},
		{name: "no body", in: "A: 1\r\n", max: 100, fields: 1, wantHeader: "A: 1\r\n\r\n"},
		{name: "no line end", in: "A: 1", max: 100, fields: 1, wantHeader: "A: 1\r\n\r\n"},
		{name: "empty header", in: "\r\nbody", max: 100, fields: 0, wantHeader: "\r\n", wantBody: "body"},
		{name: "utf8", in: "Subject: caf\xc3\xa9\r\n\r\n", max: 100, fields: 1, wantHeader: "Subject: caf\xc3\xa9\r\n\r\n"},
		{name: "too large", in: "A: " + strings.Repeat("x", 200) + "\r\n\r\n", max: 100, want: HeaderTooLarge},
		{name: "too large folded", in: strings.Repeat("A: 1\r\n", 30) + "\r\n", max: 100, want: HeaderTooLarge},
		{name: "NUL", in: "A: 1\x00\r\n\r\n", max: 100, want: ControlChar},
		{name: "DEL", in: "A: 1\x7f\r\n\r\n", max: 100, want: ControlChar},
		{name: "lone CR", in: "A: 1\r2\r\n\r\n", max: 100, want: ControlChar},
		{name: "no colon", in: "just text\r\n\r\n", max: 100, want: HeaderSyntax},
		{name: "space in name", in: "A B: 1\r\n\r\n", max: 100, want: HeaderSyntax},
		{name: "empty name", in: ": 1\r\n\r\n", max: 100, want: HeaderSyntax},
		{name: "continuation first", in: " A: 1\r\n\r\n", max: 100, want: HeaderSyntax},
	}
	for _, tt := range tests {
		br := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
		h, err := ReadHeader(br, tt.max)
		if tt.want != "" {
			var v *Violation
			if !errors.As(err, &v) || v.Reason != tt.want {
				t.Errorf("%s: ReadHeader = %v, want %s", tt.name, err, tt.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: ReadHeader = %v", tt.name, err)
			continue
		}
		body, _ := io.ReadAll(br)
		if len(h.Fields) != tt.fields || string(h.Bytes()) != tt.wantHeader || string(body) != tt.wantBody {
			t.Errorf("%s: %d fields, header %q, body %q; want %d, %q, %q", tt.name, len(h.Fields), h.Bytes(), body, tt.fields, tt.wantHeader, tt.wantBody)
		}
	}
}

func TestHeaderEdit(t *testing.T) {
	h, err := ReadHeader(bufio.NewReader(strings.NewReader("Subject: a\r\n b\r\nreceived: x\r\nReceived: y\r\n\r\n")), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Values("SUBJECT"); len(got) != 1 || got[0] != "a b" {
		t.Errorf("Values(SUBJECT) = %q, want [\"a b\"]", got)
	}
	if n := h.Count("Received"); n != 2 {
		t.Errorf("Count(Received) = %d, want 2", n)
	}
	h.Prepend("Received", "z")
	h.Append("Date", "now")
	want := "Received: z\r\nSubject: a\r\n b\r\nreceived: x\r\nReceived: y\r\nDate: now\r\n\r\n"
	if got := string(h.Bytes()); got != want {
		t.Errorf("Bytes() = %q, want %q", got, want)
	}
}

func TestCheckLoop(t *testing.T) {
	for _, n := range []int{0, 50, 51} {
		h, err := ReadHeader(bufio.NewReader(strings.NewReader(strings.Repeat("Received: x\r\n", n)+"\r\n")), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckLoop(h)
		var v *Violation
		if got := errors.As(err, &v) && v.Reason == Loop; got != (n > MaxReceived) {
			t.Errorf("CheckLoop(%d Received) = %v", n, err)
		}
	}
}

func TestStripAuthResults(t *testing.T) {
	in := "Authentication-Results: mx.example.org; spf=pass\r\n" +
		"authentication-results:MX.EXAMPLE.ORG;dkim=pass\r\n" +
		"Authentication-Results: (forged (nested)) mx.example.org 1; dmarc=pass\r\n" +
		"Authentication-Results: mx.example.org.evil; spf=pass\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" +
		"X-Authentication-Results: mx.example.org; spf=pass\r\n\r\n"
	h, err := ReadHeader(bufio.NewReader(strings.NewReader(in)), 10000)
	if err != nil {
		t.Fatal(err)
	}
	if n := StripAuthResults(h, "mx.example.org"); n != 3 {
		t.Errorf("StripAuthResults removed %d, want 3", n)
	}
	want := "Authentication-Results: mx.example.org.evil; spf=pass\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" +
		"X-Authentication-Results: mx.example.org; spf=pass\r\n\r\n"
	if got := string(h.Bytes()); got != want {
		t.Errorf("after stripping:\n%s\nwant:\n%s", got, want)
	}
}

// FuzzReadHeader: the header parser never panics, keeps its limit, and
// what it accepts it writes back byte for byte (the fields as received
// plus the empty line).
func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{"A: 1\r\n\r\nbody", "A: 1\r\n 2\r\n\r\n", "\r\n", "x", "A: \x00\r\n\r\n", " a\r\n", "A: 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 512
		h, err := ReadHeader(bufio.NewReaderSize(NewCRLFReader(strings.NewReader(string(in))), 16), limit)
		if err != nil {
			return
		}
		out := h.Bytes()
		if len(out) > limit+4 {
			t.Fatalf("header of %d bytes accepted with limit %d", len(out), limit)
		}
		if !strings.HasPrefix(string(in)+"\r\n\r\n", string(out[:len(out)-2])) {
			t.Fatalf("Bytes() = %q is not what was read from %q", out, in)
		}
		StripAuthResults(h, "mx.example.org")
		CheckLoop(h)
	})
}
