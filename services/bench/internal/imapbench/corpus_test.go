package imapbench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	const n = 400
	var withWord, multipart int
	for i := range n {
		msg, info := generate(7, i)
		again, _ := generate(7, i)
		if !bytes.Equal(msg, again) {
			t.Fatalf("generate(7, %d) differs between calls", i)
		}
		if other, _ := generate(8, i); bytes.Equal(msg, other) {
			t.Errorf("generate(8, %d) = generate(7, %d): the seed is not used", i, i)
		}
		if info.size != len(msg) || info.size < 1800 || info.size > 22*1024 {
			t.Errorf("message %d: size %d, %d bytes; want 2 to 20 KiB", i, info.size, len(msg))
		}
		if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) || bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\r")) {
			t.Errorf("message %d has a bare CR or LF", i)
		}
		// SEARCH TEXT is case-insensitive (RFC 3501 section 6.4.4).
		if got := bytes.Contains(bytes.ToLower(msg), []byte(searchWord)); got != info.hasWord {
			t.Errorf("message %d: holds %q = %v, recorded %v", i, searchWord, got, info.hasWord)
		}
		if info.hasWord {
			withWord++
		}
		if bytes.Contains(msg, []byte("multipart/mixed")) {
			multipart++
		}
		if got, ok := messageNumber(msg); !ok || got != i {
			t.Errorf("messageNumber(message %d) = %d, %v", i, got, ok)
		}
	}
	// Loose bounds on the mix (5% with the word, 30% multipart): they
	// catch a generator that never or always does one, not chance.
	if withWord < 5 || withWord > 50 || multipart < 60 || multipart > 180 {
		t.Errorf("%d of %d messages with the word, %d multipart; want about 5%% and 30%%", withWord, n, multipart)
	}
	for _, w := range append(append([]string(nil), vocabulary...), senders...) {
		if strings.Contains(strings.ToLower(w), searchWord) {
			t.Errorf("vocabulary %q holds the search word", w)
		}
	}
}

func TestWriteCorpusAndCheck(t *testing.T) {
	dir := t.TempDir()
	c, err := writeCorpus(context.Background(), 3, 50, filepath.Join(dir, "corpus"))
	if err != nil {
		t.Fatal(err)
	}
	md := maildir(filepath.Join(dir, "mail"), fetchUser)
	if err := c.linkMailbox(filepath.Join(dir, "corpus"), md, 20); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(md, "cur"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 20 {
		t.Fatalf("%d files in cur/, want 20", len(entries))
	}
	for _, sub := range []string{"new", "tmp"} {
		if _, err := os.Stat(filepath.Join(md, sub)); err != nil {
			t.Errorf("Maildir lacks %s/: %v", sub, err)
		}
	}
	var want expected
	for _, e := range entries {
		body, err := os.ReadFile(filepath.Join(md, "cur", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.checkBody(body); err != nil {
			t.Errorf("checkBody(%s) = %v", e.Name(), err)
		}
		// The name's S= and W= are the file's size (all CRLF), and its
		// info the recorded flags.
		base, info, _ := strings.Cut(e.Name(), ":2,")
		size := strconv.Itoa(len(body))
		if !strings.HasSuffix(base, ",S="+size+",W="+size) {
			t.Errorf("file %s is %s bytes", e.Name(), size)
		}
		i, _ := messageNumber(body)
		if info != c.msgs[i].letters {
			t.Errorf("file %s: flags %q, recorded %q", e.Name(), info, c.msgs[i].letters)
		}
		want.messages++
		want.seen += strings.Count(info, "S")
		want.flagged += strings.Count(info, "F")
		want.answered += strings.Count(info, "R")
		if c.msgs[i].hasWord {
			want.withWord++
		}
	}
	if got := c.expect(20); got != want {
		t.Errorf("expect(20) = %+v, want %+v", got, want)
	}

	body, _ := generate(3, 4)
	for name, bad := range map[string][]byte{
		"truncated":  body[:len(body)-1],
		"one byte":   append(append([]byte(nil), body[:len(body)-2]...), 'x', '\n'),
		"unknown":    bytes.Replace(body, []byte(messageIDPrefix+"4."), []byte(messageIDPrefix+"999."), 1),
		"no id":      []byte("Subject: x\r\n\r\nbody\r\n"),
		"other seed": func() []byte { b, _ := generate(4, 4); return b }(),
	} {
		if err := c.checkBody(bad); err == nil {
			t.Errorf("checkBody(%s) = nil, want an error", name)
		}
	}
}

func TestFetchFlags(t *testing.T) {
	tests := []struct {
		line, want string
		ok         bool
	}{
		{`12 FETCH (FLAGS (\Seen \Flagged))`, `\Seen \Flagged`, true},
		{`1 FETCH (UID 4 FLAGS ())`, ``, true},
		{`3 EXISTS`, ``, false},
		{`OK [PERMANENTFLAGS (\Seen)] x`, ``, false},
		{`2 FETCH (UID 4)`, ``, false},
	}
	for _, tt := range tests {
		got, ok := fetchFlags([]byte(tt.line))
		if string(got) != tt.want || ok != tt.ok {
			t.Errorf("fetchFlags(%q) = %q, %v, want %q, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}
