package lmtpclient

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeServer accepts one connection on loopback and answers like an LMTP
// or SMTP server that accepts every recipient but "bad@x", replying to
// DATA after dataDelay. It records the command lines it read.
type fakeServer struct {
	addr      string
	lines     chan []string // the commands of the connection, when it ends
	smtp      bool
	dataDelay time.Duration
}

func startFake(t *testing.T, smtp bool, dataDelay time.Duration) *fakeServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	s := &fakeServer{addr: lis.Addr().String(), lines: make(chan []string, 1), smtp: smtp, dataDelay: dataDelay}
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			s.lines <- nil
			return
		}
		defer conn.Close()
		s.lines <- s.serve(conn)
	}()
	return s
}

func (s *fakeServer) serve(conn net.Conn) []string {
	r := textproto.NewReader(bufio.NewReader(conn))
	w := bufio.NewWriter(conn)
	say := func(line string) { w.WriteString(line + "\r\n"); w.Flush() }
	say("220 fake ready")
	var cmds []string
	accepted := 0
	for {
		line, err := r.ReadLine()
		if err != nil {
			return cmds
		}
		cmds = append(cmds, line)
		verb, _, _ := strings.Cut(line, " ")
		switch verb {
		case "LHLO", "EHLO":
			say("250-fake\r\n250 8BITMIME")
		case "MAIL":
			accepted = 0
			say("250 ok")
		case "RCPT":
			if strings.Contains(line, "<bad@x>") {
				say("550 5.1.1 no such user")
				continue
			}
			accepted++
			say("250 ok")
		case "DATA":
			say("354 go ahead")
			if _, err := r.ReadDotLines(); err != nil {
				return cmds
			}
			time.Sleep(s.dataDelay) // the server's work, which DataWait measures
			n := accepted
			if s.smtp {
				n = 1
			}
			for i := range n {
				say(fmt.Sprintf("250 2.0.0 queued %d", i))
			}
		case "RSET":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return cmds
		default:
			say("500 what")
		}
	}
}

func TestDeliverProtocols(t *testing.T) {
	tests := []struct {
		name  string
		smtp  bool
		hello string
		// the replies to a, bad, b
		want []Reply
	}{
		{"lmtp", false, "LHLO", []Reply{{250, "2.0.0 queued 0"}, {550, "5.1.1 no such user"}, {250, "2.0.0 queued 1"}}},
		{"smtp", true, "EHLO", []Reply{{250, "2.0.0 queued 0"}, {550, "5.1.1 no such user"}, {250, "2.0.0 queued 0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const delay = 30 * time.Millisecond
			srv := startFake(t, tt.smtp, delay)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			dial := Dial
			if tt.smtp {
				dial = DialSMTP
			}
			c, err := dial(ctx, srv.addr, "client.test")
			if err != nil {
				t.Fatal(err)
			}
			replies, err := c.Deliver(ctx, "s@x", []string{"a@x", "bad@x", "b@x"}, []byte("Subject: t\r\n\r\n.dot\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(replies, tt.want) {
				t.Errorf("Deliver() = %v, want %v", replies, tt.want)
			}
			// The wait includes the server's delay before its reply.
			if c.DataWait() < delay {
				t.Errorf("DataWait() = %v, want at least the server's %v", c.DataWait(), delay)
			}
			// Nobody accepted: the transaction is reset, the connection kept.
			replies, err = c.Deliver(ctx, "s@x", []string{"bad@x"}, []byte("x\r\n"))
			if err != nil || len(replies) != 1 || replies[0].Code != 550 {
				t.Errorf("Deliver(no valid recipient) = %v, %v; want one 550", replies, err)
			}
			c.Close()
			cmds := <-srv.lines
			want := []string{tt.hello + " client.test", "MAIL FROM:<s@x>", "RCPT TO:<a@x>", "RCPT TO:<bad@x>", "RCPT TO:<b@x>", "DATA",
				"MAIL FROM:<s@x>", "RCPT TO:<bad@x>", "RSET", "QUIT"}
			if !slices.Equal(cmds, want) {
				t.Errorf("server read %q, want %q", cmds, want)
			}
		})
	}
}

func TestDialRefusedGreeting(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			return
		}
		conn.Write([]byte("554 5.3.2 go away\r\n"))
		conn.Close()
	}()
	_, err = DialSMTP(context.Background(), lis.Addr().String(), "client.test")
	if err == nil || !strings.Contains(err.Error(), "smtp: greeting: 554") {
		t.Errorf("DialSMTP() to a server refusing = %v, want the smtp greeting error", err)
	}
}
