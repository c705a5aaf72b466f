// Package lmtp delivers queued messages to the mailbox service over LMTP
// (RFC 2033), with a client of its own.
//
// One transaction carries a message to all its local recipients, and the
// server answers once per recipient after the message (RFC 2033 §4.2):
// 2xx delivered, 4xx tried again later, 5xx failed for that recipient
// only. When no mailbox server can be reached every recipient gets a 4xx:
// the message stays queued, and nobody is bounced before the queue
// lifetime.
//
// The mailbox (go-smtp's server) offers PIPELINING (RFC 2920) and
// CHUNKING (RFC 3030), and a transaction is then one write: MAIL, one RCPT
// per recipient, "BDAT <size>" and the message as it is, "BDAT 0 LAST".
// The replies come back in that order: MAIL's, one per RCPT, the chunk's,
// and one per accepted recipient for BDAT LAST. BDAT is why this client
// exists: with DATA both ends go through the message byte by byte, we to
// dot-stuff it and the server to undo that, where a chunk is copied in
// bulk; go-smtp's client has no BDAT, and waits for each RCPT's reply. A
// server without PIPELINING or CHUNKING gets one command at a time, and
// the message with DATA.
//
// Load is spread over the configured addresses round-robin; a host name
// with several addresses (a scaled compose service) counts as each of
// them. Connections are kept open between transactions and reused.
package lmtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postcove/postcove/services/mta/internal/deliver"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// JunkHeader is the header field the mailbox's LMTP server files into
// Junk (services/mailbox/internal/lmtpd, SpamHeader): prepended to the
// messages whose envelope says Junk.
const JunkHeader = "X-Postcove-Spam: yes\r\n"

// Defaults for the zero fields of Options.
const (
	DefaultAddr           = "127.0.0.1:2424"
	DefaultDialTimeout    = 10 * time.Second
	DefaultCommandTimeout = 2 * time.Minute
	// DefaultDataTimeout bounds the wait for the per-recipient answers
	// after the message: the mailbox fsyncs each copy.
	DefaultDataTimeout = 10 * time.Minute
	DefaultMaxIdle     = 16
	DefaultIdleTimeout = 30 * time.Second
)

// Options configure a Client.
type Options struct {
	// Addrs are the mailbox servers, "host:port" (lmtp.addrs). Default
	// DefaultAddr.
	Addrs []string
	// Hostname is the name we give in LHLO.
	Hostname string
	// DialTimeout, CommandTimeout, DataTimeout bound connecting, each
	// command, and the answers after the message.
	DialTimeout, CommandTimeout, DataTimeout time.Duration
	// MaxIdle connections are kept open for reuse, each for at most
	// IdleTimeout. Negative: no reuse.
	MaxIdle     int
	IdleTimeout time.Duration
	// LookupHost resolves host names in Addrs; nil uses the system
	// resolver (as compose's DNS serves service names).
	LookupHost func(ctx context.Context, host string) ([]string, error)
	Logger     *slog.Logger
}

// Client delivers to the mailbox service. It is a queue.Deliverer for
// RouteLocal recipients and is safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger
	next atomic.Uint64 // round-robin position

	mu   sync.Mutex // protects idle and the fields below
	idle []*conn    // most recently used last
	// resolved is the expansion of Addrs, kept until resolvedUntil:
	// resolving the mailbox host names for every message costs a DNS
	// round trip (or more) each time.
	resolved      []string
	resolvedUntil time.Time
}

// resolveTTL is how long the addresses of lmtp.addrs are reused: a
// scaled-up or moved mailbox service is seen within it, so it is short
// (one lookup every few seconds costs nothing next to the deliveries; at
// 30 s, mail sent soon after "docker compose up --scale mailbox=2" all
// went to the first replica). Failed lookups are not kept.
const resolveTTL = 5 * time.Second

var _ queue.Deliverer = (*Client)(nil)

// New returns a Client. It does not connect yet.
func New(opts Options) (*Client, error) {
	if len(opts.Addrs) == 0 {
		opts.Addrs = []string{DefaultAddr}
	}
	for _, a := range opts.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("lmtp: address %q: %w", a, err)
		}
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	// The name goes into the LHLO command line as it is.
	if strings.ContainsFunc(opts.Hostname, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("lmtp: hostname %q has a space or a control character", opts.Hostname)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if opts.DataTimeout <= 0 {
		opts.DataTimeout = DefaultDataTimeout
	}
	if opts.MaxIdle == 0 {
		opts.MaxIdle = DefaultMaxIdle
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.LookupHost == nil {
		opts.LookupHost = net.DefaultResolver.LookupHost
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: opts, log: opts.Logger}, nil
}

// Close closes the idle connections.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.close()
	}
	return nil
}

// Deliver implements queue.Deliverer: one LMTP transaction for all rcpts.
func (c *Client) Deliver(ctx context.Context, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) []queue.Result {
	if !safeAddress(env.Sender) {
		return deliver.All(len(rcpts), badAddress("sender"))
	}
	res := make([]queue.Result, len(rcpts))
	var send []queue.Recipient
	var idx []int // of send in rcpts
	for i, r := range rcpts {
		if !safeAddress(r.Address) {
			res[i] = badAddress("recipient")
			continue
		}
		send = append(send, r)
		idx = append(idx, i)
	}
	if len(send) == 0 {
		return res
	}
	for j, r := range c.deliver(ctx, env, send, body) {
		res[idx[j]] = r
	}
	return res
}

// badAddress is the result for an address that cannot be written into a
// command (safeAddress).
func badAddress(which string) queue.Result {
	return queue.Result{Code: 554, Enhanced: "5.1.3", Text: which + " address with CR, LF or '>' not sent to the mailbox"}
}

// deliver runs the transaction, on a new connection when a reused one
// turns out to be closed.
func (c *Client) deliver(ctx context.Context, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) []queue.Result {
	// A reused connection may have been closed by the server meanwhile;
	// a transaction that fails before any answer on one, or whose first
	// answer is the server's 421 goodbye, is retried once on a new
	// connection.
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(ctx)
		if err != nil {
			c.log.Warn("mailbox unreachable", "id", env.ID, "err", err)
			return deliver.All(len(rcpts), queue.Result{Code: 451, Enhanced: "4.4.1", Text: "mailbox service unreachable: " + err.Error()})
		}
		res, ok, stale := c.transaction(ctx, cn, env, rcpts, body)
		if ok {
			c.put(cn)
		} else {
			cn.close()
		}
		if stale && reused && attempt == 0 {
			continue
		}
		return res
	}
}

// get returns an idle connection, or a new one to the next server in
// round-robin order, trying each server once.
func (c *Client) get(ctx context.Context) (*conn, bool, error) {
	targets, lookupErr := c.targets(ctx)
	if len(targets) == 0 {
		return nil, false, lookupErr
	}
	// Each transaction goes to the next server in turn, reused
	// connections included: otherwise one kept connection would carry all
	// the mail and the other mailbox replicas would sit idle.
	start := int(c.next.Add(1) % uint64(len(targets)))
	var errs []error
	for i := range targets {
		addr := targets[(start+i)%len(targets)]
		if cn := c.takeIdle(addr); cn != nil {
			return cn, true, nil
		}
		cn, err := c.dial(ctx, addr)
		if err == nil {
			return cn, false, nil
		}
		errs = append(errs, err)
	}
	return nil, false, errors.Join(errs...)
}

// takeIdle returns the most recently used idle connection to addr, or
// nil, closing the idle connections that have gone stale on the way.
func (c *Client) takeIdle(addr string) *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.idle) - 1; i >= 0; i-- {
		cn := c.idle[i]
		switch {
		case time.Since(cn.usedAt) >= c.opts.IdleTimeout:
			cn.close()
			c.idle = slices.Delete(c.idle, i, i+1)
		case cn.addr == addr:
			c.idle = slices.Delete(c.idle, i, i+1)
			return cn
		}
	}
	return nil
}

// put keeps cn for the next transaction.
func (c *Client) put(cn *conn) {
	cn.usedAt = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= c.opts.MaxIdle {
		cn.close()
		return
	}
	c.idle = append(c.idle, cn)
}

// targets expands Addrs: a host name stands for each of its addresses.
// A complete answer is reused for resolveTTL.
func (c *Client) targets(ctx context.Context) ([]string, error) {
	now := time.Now()
	c.mu.Lock()
	if now.Before(c.resolvedUntil) {
		out := c.resolved
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	out, err := c.resolve(ctx)
	if err == nil && len(out) > 0 {
		c.mu.Lock()
		c.resolved, c.resolvedUntil = out, now.Add(resolveTTL)
		c.mu.Unlock()
	}
	return out, err
}

// resolve looks up the host names in Addrs.
func (c *Client) resolve(ctx context.Context) ([]string, error) {
	var out []string
	var errs []error
	for _, a := range c.opts.Addrs {
		host, port, _ := net.SplitHostPort(a)
		if net.ParseIP(host) != nil {
			out = append(out, a)
			continue
		}
		ips, err := c.opts.LookupHost(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("look up %s: %w", host, err))
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	return out, errors.Join(errs...)
}
