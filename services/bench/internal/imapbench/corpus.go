package imapbench

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The mail both servers read: n messages generated from a seed, written
// once as Maildir files and hard-linked into every mailbox (the servers
// never change a message file; flag changes rename, and nothing here
// changes flags), so the two servers read the same bytes and the disk
// holds them once.
//
// A message is 2 to 20 KiB (log-uniform: most are small), CRLF line ends
// as on the wire, with the headers of delivered mail; 30% are
// multipart/mixed with a base64 attachment. Text is words from a fixed
// vocabulary, so SEARCH TEXT has something to read, and searchWord (which
// no vocabulary word, name or header contains) is put in the text of
// about 5% of them: the number of messages SEARCH TEXT must find is known.
// System flags are in the file names' info (":2,S" and the like), where
// Maildir keeps them and both servers read them.

// searchWord is what SEARCH TEXT looks for.
const searchWord = "heliotrope"

// vocabulary is the words of message text.
var vocabulary = strings.Fields(`the of and to in is that for it as was with be by on not he this are or
his from at which but have an they you were her she there been one all we their has would when if so no
will can more about said what out up them into some could him than only other new time these two may
then do first any my now such like our over man me even most made after also did many before must through
back years where much your way well down should because each just those people how too little state good
very make world still own see men work long get here between both life being under never day same another
know while last might us great old year off come since against go came right used take three meeting
invoice project report schedule budget review deadline quarter customer server release backup network
garden recipe holiday weekend train ticket museum concert library harbour mountain river coffee market`)

// senders are the From names of the messages.
var senders = []string{"Alice Martin", "Bruno Keller", "Chen Wei", "Dana Okafor", "Emil Novak", "Fatima Haddad", "Greta Lund", "Hugo Silva"}

// msgInfo is what the checks need to know of a message.
type msgInfo struct {
	size    int    // bytes of the file, which is what BODY[] returns
	crc     uint32 // CRC-32C of the file
	letters string // Maildir info flags: "", "S", "FS", "RS"
	hasWord bool   // its text holds searchWord
}

// corpus is the generated messages, numbered from 0.
type corpus struct {
	seed uint64
	msgs []msgInfo
	// names are the file names in cur/, of the form dovecot and postcove
	// both parse: <sec>.M<usec>P<pid>.<host>,S=<size>,W=<vsize>:2,<flags>.
	names []string
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// baseTime is the date of message 0; message i is i minutes later.
var baseTime = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// messageIDPrefix starts the Message-ID header, followed by the message's
// number: how a fetched body is matched with what was written.
const messageIDPrefix = "Message-ID: <"

// generate builds message i of the corpus with this seed.
func generate(seed uint64, i int) ([]byte, msgInfo) {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	target := int(2048 * math.Pow(10, rng.Float64())) // 2 to 20 KiB, log-uniform
	date := baseTime.Add(time.Duration(i) * time.Minute)
	from := senders[rng.IntN(len(senders))]
	addr := strings.ToLower(strings.ReplaceAll(from, " ", ".")) + "@example.net"
	var b bytes.Buffer
	b.Grow(target + 512)
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", addr)
	fmt.Fprintf(&b, "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\r\n\tby mail.example.org with ESMTPS id %08x\r\n\tfor <bench@example.org>; %s\r\n",
		i%7, i%7, 1+i%250, rng.Uint32(), date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: %s <%s>\r\nTo: Bench User <bench@example.org>\r\n", from, addr)
	fmt.Fprintf(&b, "Subject: %s\r\n", words(rng, 3+rng.IntN(6)))
	fmt.Fprintf(&b, "Date: %s\r\n%s%d.%d@bench.localhost>\r\nMIME-Version: 1.0\r\n", date.Format(time.RFC1123Z), messageIDPrefix, i, seed)
	info := msgInfo{hasWord: rng.IntN(20) == 0}
	switch f := rng.IntN(10); {
	case f < 6:
		info.letters = "S"
	case f < 7:
		info.letters = "FS"
	case f < 8:
		info.letters = "RS"
	}
	if rng.IntN(10) < 3 {
		boundary := fmt.Sprintf("=_bench_%d", i)
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\nThis is a multi-part message in MIME format.\r\n", boundary)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n", boundary)
		text(&b, rng, b.Len()+(target-b.Len())*2/5, info.hasWord)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: application/octet-stream; name=\"data%d.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data%d.bin\"\r\n\r\n", boundary, i, i)
		attachment(&b, rng, target-b.Len()-len(boundary)-8)
		fmt.Fprintf(&b, "--%s--\r\n", boundary)
	} else {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		text(&b, rng, target, info.hasWord)
	}
	info.size = b.Len()
	info.crc = crc32.Checksum(b.Bytes(), castagnoli)
	return b.Bytes(), info
}

// words is n vocabulary words separated by spaces.
func words(rng *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = vocabulary[rng.IntN(len(vocabulary))]
	}
	return strings.Join(w, " ")
}

// text writes lines of words, up to 76 characters, until b holds about
// until bytes, with searchWord once somewhere when withWord.
func text(b *bytes.Buffer, rng *rand.Rand, until int, withWord bool) {
	lines := max((until-b.Len())/70, 1)
	wordLine := -1
	if withWord {
		wordLine = rng.IntN(lines)
	}
	for l := range lines {
		var line strings.Builder
		if l == wordLine {
			line.WriteString(searchWord)
		}
		for line.Len() < 64 {
			if line.Len() > 0 {
				line.WriteByte(' ')
			}
			line.WriteString(vocabulary[rng.IntN(len(vocabulary))])
		}
		b.WriteString(line.String())
		b.WriteString("\r\n")
		if rng.IntN(8) == 0 {
			b.WriteString("\r\n") // a paragraph
		}
	}
}

// attachment writes about n bytes of base64 of random data, in 76
// character lines (RFC 2045 section 6.8).
func attachment(b *bytes.Buffer, rng *rand.Rand, n int) {
	raw := make([]byte, max(n, 78)/78*57)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 0 {
		k := min(76, len(enc))
		b.WriteString(enc[:k])
		b.WriteString("\r\n")
		enc = enc[k:]
	}
}

// messageNumber finds the number of the corpus message in a fetched body,
// from its Message-ID.
func messageNumber(body []byte) (int, bool) {
	i := bytes.Index(body, []byte("\r\n"+messageIDPrefix))
	if i < 0 {
		return 0, false
	}
	rest := body[i+2+len(messageIDPrefix):]
	j := bytes.IndexByte(rest, '.')
	if j < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:j]))
	return n, err == nil
}

// writeCorpus generates n messages into dir (created), one goroutine per
// CPU, and returns what it wrote. Each file's mtime is the message's
// date, which Maildir servers report as INTERNALDATE.
func writeCorpus(ctx context.Context, seed uint64, n int, dir string) (*corpus, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &corpus{seed: seed, msgs: make([]msgInfo, n), names: make([]string, n)}
	var next atomic.Int64
	errs := make([]error, runtime.NumCPU())
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				msg, info := generate(seed, i)
				date := baseTime.Add(time.Duration(i) * time.Minute)
				name := fmt.Sprintf("%d.M%dP%d.bench.localhost,S=%d,W=%d:2,%s", date.Unix(), i%1000000, 1000+i%30000, info.size, info.size, info.letters)
				path := filepath.Join(dir, name)
				if err := os.WriteFile(path, msg, 0o644); err != nil {
					errs[w] = err
					return
				}
				if err := os.Chtimes(path, date, date); err != nil {
					errs[w] = err
					return
				}
				c.msgs[i], c.names[i] = info, name
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, fmt.Errorf("write the messages: %w", err)
	}
	return c, nil
}

// linkMailbox makes maildir (…/Maildir, with cur/ new/ tmp/) hold the
// first n messages of the corpus in dir, as hard links.
func (c *corpus) linkMailbox(dir, maildir string, n int) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o755); err != nil {
			return err
		}
	}
	for i := range n {
		if err := os.Link(filepath.Join(dir, c.names[i]), filepath.Join(maildir, "cur", c.names[i])); err != nil {
			return err
		}
	}
	return nil
}

// expected is what a mailbox of the first n messages holds.
type expected struct {
	messages                int
	seen, flagged, answered int // messages with each flag
	withWord                int // messages SEARCH TEXT searchWord finds
}

func (c *corpus) expect(n int) expected {
	e := expected{messages: n}
	for _, m := range c.msgs[:n] {
		if strings.Contains(m.letters, "S") {
			e.seen++
		}
		if strings.Contains(m.letters, "F") {
			e.flagged++
		}
		if strings.Contains(m.letters, "R") {
			e.answered++
		}
		if m.hasWord {
			e.withWord++
		}
	}
	return e
}

// checkBody reports whether body is exactly a message of the corpus.
func (c *corpus) checkBody(body []byte) error {
	i, ok := messageNumber(body)
	if !ok || i < 0 || i >= len(c.msgs) {
		return fmt.Errorf("a body of %d bytes that is no message of the corpus", len(body))
	}
	m := c.msgs[i]
	if len(body) != m.size || crc32.Checksum(body, castagnoli) != m.crc {
		return fmt.Errorf("message %d: %d bytes fetched, CRC-32C %08x; want %d bytes, %08x", i, len(body), crc32.Checksum(body, castagnoli), m.size, m.crc)
	}
	return nil
}
