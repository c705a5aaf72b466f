// Package mailgen makes the messages the benchmarks deliver: a plain-text
// message of about a given size (RFC 5322: header, blank line, body of
// CRLF-ended lines under 78 characters), each with its own Message-ID, so
// that what arrives can be told apart and counted.
package mailgen

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Sender is the address the messages come from, a domain none of the
// benchmarks serves.
const Sender = "sender@example.net"

// Generator makes messages with the Message-IDs <RUN.N@bench.localhost>:
// RUN random for each Generator, N counting from 1. It is safe for
// concurrent use.
type Generator struct {
	subject string
	runID   string
	seq     atomic.Uint64
	bodies  map[int][]byte // by message size; read-only after New
}

// New returns a generator of messages of the given sizes (in bytes,
// header included, approximately) with subject.
func New(subject string, sizes []int) *Generator {
	id := make([]byte, 6)
	rand.Read(id) //nolint:errcheck // never fails
	g := &Generator{subject: subject, runID: hex.EncodeToString(id), bodies: make(map[int][]byte)}
	for _, s := range sizes {
		g.bodies[s] = fixedBody(s)
	}
	return g
}

// Message returns a new message to rcpt of one of the sizes given to New,
// and its Message-ID (angle brackets included).
func (g *Generator) Message(rcpt string, size int) (id string, msg []byte) {
	body, ok := g.bodies[size]
	if !ok {
		panic(fmt.Sprintf("mailgen: size %d was not given to New", size)) // a programmer's error
	}
	id = fmt.Sprintf("<%s.%d@bench.localhost>", g.runID, g.seq.Add(1))
	var sb strings.Builder
	sb.Grow(len(body) + 300)
	fmt.Fprintf(&sb, "From: Bench Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		Sender, rcpt, g.subject, time.Now().Format(time.RFC1123Z), id)
	sb.Write(body)
	return id, []byte(sb.String())
}

// headerAllowance is roughly the size of Message's header, subtracted
// from the body so a message is about the size asked for.
const headerAllowance = 260

// fixedBody is size-headerAllowance bytes of 76-character text lines.
func fixedBody(size int) []byte {
	n := max(size-headerAllowance, 80)
	line := []byte("The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrs\r\n") // 78 bytes
	out := make([]byte, 0, n)
	for len(out)+len(line) <= n {
		out = append(out, line...)
	}
	return out
}

// SizeLabel formats a message size for a report: "4 KiB", "700 B".
func SizeLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}
