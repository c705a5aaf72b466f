package queue

import (
	"context"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/internal/testlib"
)

// BenchmarkEnqueue measures durable enqueues of a 4 KiB message, fsyncs
// included, from 8 goroutines (SMTP sessions).
func BenchmarkEnqueue(b *testing.B) {
	q, err := Open(Options{Dir: testlib.TempDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	body := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 64)
	env := Envelope{Sender: "a@example.org", Recipients: []Recipient{{Address: "b@example.org"}}}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Enqueue(context.Background(), env, strings.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
