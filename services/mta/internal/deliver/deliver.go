// Package deliver joins the queue to the two ways a message leaves it:
// Router sends each recipient to the local (LMTP, package deliver/lmtp) or
// the remote (SMTP, package deliver/remote) deliverer by its route, and
// the helpers here turn SMTP answers and network errors into per-recipient
// queue results the same way for both.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/mta/internal/queue"
)

// Router is a queue.Deliverer that hands each recipient to Local or Remote
// by its route. Both run at once when a message has recipients of each.
type Router struct {
	Local  queue.Deliverer
	Remote queue.Deliverer
}

var _ queue.Deliverer = Router{}

// Deliver implements queue.Deliverer.
func (r Router) Deliver(ctx context.Context, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) []queue.Result {
	out := make([]queue.Result, len(rcpts))
	var wg sync.WaitGroup
	for _, route := range []queue.Route{queue.RouteLocal, queue.RouteRemote} {
		var idx []int
		var sub []queue.Recipient
		for i, rc := range rcpts {
			if rc.Route == route {
				idx = append(idx, i)
				sub = append(sub, rc)
			}
		}
		if len(sub) == 0 {
			continue
		}
		d := r.Local
		if route == queue.RouteRemote {
			d = r.Remote
		}
		wg.Go(func() {
			var res []queue.Result
			if d != nil {
				res = d.Deliver(ctx, env, sub, body)
			}
			for j, i := range idx {
				if j < len(res) {
					out[i] = res[j]
				} else {
					out[i] = queue.Result{Code: 451, Enhanced: "4.3.5", Text: fmt.Sprintf("no %s delivery configured", route)}
				}
			}
		})
	}
	wg.Wait()
	return out
}

// FromError turns a failed SMTP or LMTP exchange into a result: the
// server's own answer when it gave one (*smtp.SMTPError), else a
// temporary failure — the network failed, or the server went away, and
// trying again later is right (DESIGN.md invariant 2: a dependency down is
// never a bounce). remote names the server.
func FromError(err error, remote string) queue.Result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return FromSMTP(se, remote)
	}
	return queue.Result{Code: 451, Enhanced: "4.4.2", Text: "connection failed: " + err.Error(), RemoteMTA: remote}
}

// FromSMTP turns a server's answer into a result.
func FromSMTP(se *smtp.SMTPError, remote string) queue.Result {
	r := queue.Result{Code: se.Code, Text: se.Message, RemoteMTA: remote}
	if c := se.EnhancedCode; c[0] >= 2 && c[0] <= 5 && c[1] >= 0 && c[2] >= 0 {
		r.Enhanced = fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
	}
	if r.Code < 200 || r.Code > 599 {
		// Not a reply code we can classify: never read it as permanent.
		r.Code = 451
	}
	return r
}

// Rcpts sends RCPT TO for each recipient, with the options opts gives
// (nil: none). It returns the results of those refused, the indexes of
// those accepted, and ok false when the connection broke: then every
// result is set to that failure.
func Rcpts(c *smtp.Client, rcpts []queue.Recipient, opts func(queue.Recipient) *smtp.RcptOptions, remote string) (res []queue.Result, accepted []int, ok bool) {
	res = make([]queue.Result, len(rcpts))
	for i, r := range rcpts {
		var o *smtp.RcptOptions
		if opts != nil {
			o = opts(r)
		}
		if err := c.Rcpt(r.Address, o); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return All(len(rcpts), FromError(err, remote)), nil, false
			}
			res[i] = FromSMTP(se, remote)
			continue
		}
		accepted = append(accepted, i)
	}
	return res, accepted, true
}

// All returns n copies of r.
func All(n int, r queue.Result) []queue.Result {
	out := make([]queue.Result, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// CloseOnDone closes conn once ctx is done, so that an exchange with a
// client library without contexts gives up promptly (the queue is
// shutting down). (Deadlines would not do: go-smtp sets its own around
// every command.) Call the returned stop when the exchange ends.
func CloseOnDone(ctx context.Context, conn net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { conn.Close() })
}
