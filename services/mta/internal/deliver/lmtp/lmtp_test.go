package lmtp

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mta/internal/deliver/smtpsink"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

func body(s string) queue.Body { return io.NewSectionReader(strings.NewReader(s), 0, int64(len(s))) }

func local(addrs ...string) []queue.Recipient {
	var out []queue.Recipient
	for _, a := range addrs {
		out = append(out, queue.Recipient{Address: a, Route: queue.RouteLocal})
	}
	return out
}

func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	opts.Hostname = "mta.test"
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func codes(res []queue.Result) []int {
	var out []int
	for _, r := range res {
		out = append(out, r.Code)
	}
	return out
}

// TestPerRecipient: one transaction for all recipients, one result each:
// refused at RCPT, refused temporarily or permanently after DATA, stored.
func TestPerRecipient(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{LMTP: true, Reply: func(stage smtpsink.Stage, arg string) error {
		switch {
		case stage == smtpsink.StageRcpt && arg == "nobody@example.org":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case stage == smtpsink.StageData && arg == "full@example.org":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "over quota"}
		case stage == smtpsink.StageData && arg == "big@example.org":
			return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 3}, Message: "too big"}
		}
		return nil
	}})
	c := newClient(t, Options{Addrs: []string{sink.Addr}})
	env := queue.Envelope{ID: "m1", Sender: "s@remote.example"}
	msg := "Subject: dots\r\n\r\n.\r\n..two\r\nend\r\n"
	res := c.Deliver(context.Background(), env, local("alice@example.org", "nobody@example.org", "full@example.org", "big@example.org"), body(msg))
	if got, want := codes(res), []int{250, 550, 452, 552}; !slices.Equal(got, want) {
		t.Errorf("Deliver codes = %v, want %v (%+v)", got, want, res)
	}
	if res[1].Enhanced != "5.1.1" || res[1].Text != "no such user" || res[1].RemoteMTA != sink.Addr {
		t.Errorf("RCPT refusal = %+v, want 550 5.1.1 no such user from %s", res[1], sink.Addr)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || msgs[0].Data != msg || msgs[0].From != "s@remote.example" || !slices.Equal(msgs[0].To, []string{"alice@example.org"}) || msgs[0].Helo != "mta.test" {
		t.Errorf("stored = %+v, want the message once for alice, dots intact", msgs)
	}
}

func TestJunkHeader(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{LMTP: true})
	c := newClient(t, Options{Addrs: []string{sink.Addr}})
	for _, junk := range []bool{true, false} {
		c.Deliver(context.Background(), queue.Envelope{ID: "m", Sender: "s@x.example", Junk: junk}, local("a@example.org"), body("Subject: x\r\n\r\nhi\r\n"))
	}
	msgs := sink.Messages()
	if len(msgs) != 2 || msgs[0].Data != "X-Postcove-Spam: yes\r\nSubject: x\r\n\r\nhi\r\n" || msgs[1].Data != "Subject: x\r\n\r\nhi\r\n" {
		t.Errorf("stored = %+v, want the mark on the junk message only", msgs)
	}
}

// TestMailboxDown: no server answering is 4xx for every recipient (the
// message stays queued), never 5xx.
func TestMailboxDown(t *testing.T) {
	c := newClient(t, Options{Addrs: []string{testlib.FreeAddr(t), testlib.FreeAddr(t)}})
	res := c.Deliver(context.Background(), queue.Envelope{ID: "m"}, local("a@example.org", "b@example.org"), body("x\r\n"))
	for _, r := range res {
		if r.Code/100 != 4 {
			t.Errorf("Deliver with the mailbox down = %+v, want 4xx", r)
		}
	}
	// A refusing server at MAIL (shutting down) is temporary too.
	sink := smtpsink.Start(t, smtpsink.Options{LMTP: true, Reply: func(stage smtpsink.Stage, arg string) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
	}})
	c = newClient(t, Options{Addrs: []string{sink.Addr}})
	if res := c.Deliver(context.Background(), queue.Envelope{ID: "m"}, local("a@example.org"), body("x\r\n")); res[0].Code != 421 {
		t.Errorf("Deliver to a server answering 421 = %+v, want 421", res)
	}
}

// TestSpreadAndFailover: messages alternate between the servers; a host
// name with two addresses counts as two servers; a dead server is skipped.
func TestSpreadAndFailover(t *testing.T) {
	a := smtpsink.Start(t, smtpsink.Options{LMTP: true})
	_, port, _ := net.SplitHostPort(a.Addr)
	b := smtpsink.Start(t, smtpsink.Options{LMTP: true, Addr: "127.0.0.2:" + port})
	dead := testlib.FreeAddr(t)
	var lookups atomic.Int32
	c := newClient(t, Options{
		Addrs: []string{"mailbox.internal:" + port, dead},
		LookupHost: func(ctx context.Context, host string) ([]string, error) {
			lookups.Add(1)
			if host != "mailbox.internal" {
				return nil, fmt.Errorf("unknown host %s", host)
			}
			return []string{"127.0.0.1", "127.0.0.2"}, nil
		},
	})
	for i := range 6 {
		res := c.Deliver(context.Background(), queue.Envelope{ID: "m"}, local("a@example.org"), body(fmt.Sprintf("n %d\r\n", i)))
		if res[0].Code != 250 {
			t.Fatalf("Deliver %d = %+v, want 250", i, res[0])
		}
	}
	// Connections are reused, and still every replica takes its turn.
	if na, nb := len(a.Messages()), len(b.Messages()); na < 2 || nb < 2 || na+nb != 6 {
		t.Errorf("messages per server = %d, %d; want the 6 spread over both", na, nb)
	}
	if ca, cb := a.Connections(), b.Connections(); ca != 1 || cb != 1 {
		t.Errorf("connections per server = %d, %d; want one each, reused", ca, cb)
	}
	if n := lookups.Load(); n != 1 {
		t.Errorf("%d lookups of mailbox.internal for 6 messages, want 1 (kept for %v)", n, resolveTTL)
	}
}

// TestReuse: consecutive messages share one connection, and a connection
// the server closed meanwhile is replaced without failing the delivery.
func TestReuse(t *testing.T) {
	addr := testlib.FreeAddr(t)
	sink := smtpsink.Start(t, smtpsink.Options{LMTP: true, Addr: addr})
	c := newClient(t, Options{Addrs: []string{addr}})
	deliverOK := func(s *smtpsink.Sink) {
		t.Helper()
		if res := c.Deliver(context.Background(), queue.Envelope{ID: "m"}, local("a@example.org"), body("x\r\n")); res[0].Code != 250 {
			t.Fatalf("Deliver = %+v, want 250", res[0])
		}
	}
	for range 3 {
		deliverOK(sink)
	}
	if n := sink.Connections(); n != 1 {
		t.Errorf("3 messages used %d connections, want 1", n)
	}
	sink.Close() // the mailbox restarts
	sink2 := smtpsink.Start(t, smtpsink.Options{LMTP: true, Addr: addr})
	deliverOK(sink2)
	if n := len(sink2.Messages()); n != 1 {
		t.Errorf("restarted mailbox got %d messages, want 1", n)
	}
}

func TestNewRefusesBadAddr(t *testing.T) {
	if _, err := New(Options{Addrs: []string{"no-port"}}); err == nil {
		t.Error("New(no-port) = nil error, want one")
	}
}

func TestWithoutEnhanced(t *testing.T) {
	for in, want := range map[string]string{
		"2.0.0 <a@example.org> x saved": "<a@example.org> x saved",
		"saved":                         "saved",
		"2.0 ok":                        "2.0 ok",
		"Ok: queued":                    "Ok: queued",
	} {
		if got := withoutEnhanced(in); got != want {
			t.Errorf("withoutEnhanced(%q) = %q, want %q", in, got, want)
		}
	}
}
