package lmtpd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/mailbox/internal/lmtpd/lmtptest"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
)

// BenchmarkDeliver measures one LMTP transaction (MAIL, RCPT, DATA) into a
// Maildir store over a real socket, spread over 100 users who have had a
// delivery already, with a fake resolver: what `bench lmtp` measures minus
// the auth service and first deliveries. With -cpu N the transactions come
// from N connections in parallel. Profile it with -cpuprofile: its wall
// time is that of the disk's fsyncs.
func BenchmarkDeliver(b *testing.B) {
	const users = 100
	for _, size := range []int{4096, 102400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			root := b.TempDir()
			st, err := maildir.Open(maildir.Options{Root: root})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			res := fakeResolver{}
			for i := range users {
				addr := fmt.Sprintf("user%03d@example.org", i)
				res[addr] = authclient.Recipient{Kind: authclient.Deliver, Address: addr,
					Mailboxes: []authclient.Mailbox{{Address: addr, Domain: "example.org", LocalPart: fmt.Sprintf("user%03d", i)}}}
			}
			srv, err := New(Options{Store: st, Resolver: res, Logger: slog.New(slog.DiscardHandler), Hostname: "mx.test", SpoolDir: root})
			if err != nil {
				b.Fatal(err)
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(lis)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			body := strings.Repeat(strings.Repeat("x", 76)+"\n", size/77+1)[:size]
			msg := lmtptest.Message(body)
			// One delivery to each user first: the benchmark measures
			// deliveries to existing users with their folders loaded.
			warm := lmtptest.Dial(b, lis.Addr().String())
			warm.LHLO()
			for i := range users {
				rcpt := fmt.Sprintf("user%03d@example.org", i)
				if _, replies := warm.Transaction("sender@example.net", []string{rcpt}, msg); len(replies) != 1 || replies[0].Code != 250 {
					b.Fatalf("delivery to %s: %v", rcpt, replies)
				}
			}
			var n atomic.Uint64
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := lmtptest.Dial(b, lis.Addr().String())
				c.LHLO()
				for pb.Next() {
					rcpt := fmt.Sprintf("user%03d@example.org", (n.Add(1)*37)%users)
					_, replies := c.Transaction("sender@example.net", []string{rcpt}, msg)
					if len(replies) != 1 || replies[0].Code != 250 {
						b.Errorf("delivery to %s: %v", rcpt, replies)
						return
					}
				}
			})
		})
	}
}
