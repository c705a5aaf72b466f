// Package remote delivers queued messages to other mail servers over SMTP
// (RFC 5321), with github.com/emersion/go-smtp's client.
//
// For each recipient domain: the MX records, in preference order (equal
// preferences shuffled, §5.1), or the domain itself when it has none (the
// implicit MX, §5.1); a null MX (RFC 7505) fails at once with 5.1.10; a DNS
// failure is temporary (4.4.3). Each exchanger's addresses are tried until
// one answers; an exchanger that cannot be reached, or refuses the session
// or the sender temporarily, passes the message to the next one.
//
// TLS is opportunistic, as postfix's "may" level: STARTTLS when offered,
// any certificate accepted (without DANE or MTA-STS, refusing to send over
// an unverifiable certificate would only push the message to plaintext),
// and plaintext to the same address when the handshake fails.
//
// All the recipients of one domain go in one transaction; answers are per
// recipient (RCPT) and per message (DATA). At most Options.PerDomain
// connections are open to one domain at once. A connection is kept for
// Options.ConnCacheTime after a transaction, for the next message to the
// same domain (postfix's connection cache).
//
// With Options.Relay every message goes to a smarthost instead, over TLS
// (implicit or STARTTLS, certificate verified) with AUTH PLAIN.
package remote

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/mta/internal/deliver"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// Resolver is the DNS the deliverer needs; *dnsclient.Resolver is one.
// Errors wrap dnsclient.ErrNotFound or dnsclient.ErrTemporary.
type Resolver interface {
	MX(ctx context.Context, name string) ([]dnsclient.MX, error)
	IPs(ctx context.Context, name string) ([]netip.Addr, error)
}

// Defaults for the zero fields of Options.
const (
	DefaultPort           = 25
	DefaultPerDomain      = 20 // postfix's default_destination_concurrency_limit
	DefaultDialTimeout    = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute  // RFC 5321 §4.5.3.2
	DefaultDataTimeout    = 10 * time.Minute // §4.5.3.2.6
	// DefaultConnCacheTime is postfix's smtp_connection_cache_time_limit.
	DefaultConnCacheTime = 2 * time.Second
	// quitTimeout bounds the polite QUIT to a server we are done with.
	quitTimeout = 5 * time.Second
	// maxAddrsPerHost bounds the addresses tried per exchanger, and
	// maxTries the connections per delivery, so that a domain with many
	// dead exchangers does not hold a worker for hours.
	maxAddrsPerHost = 4
	maxTries        = 10
)

// Relay is a smarthost: all remote mail goes there (relay.host,
// relay.username, relay.password_file).
type Relay struct {
	// Addr is "host:port". Port 465 means implicit TLS (RFC 8314), any
	// other STARTTLS, which is then required.
	Addr string
	// Username and Password for AUTH PLAIN; no AUTH when Username is "".
	Username, Password string
	// TLSConfig verifies the smarthost's certificate; nil: the system
	// roots, for the host name of Addr.
	TLSConfig *tls.Config
}

// Options configure a Client.
type Options struct {
	// Hostname is our name in EHLO (the MTA's public host name).
	Hostname string
	// Port is the SMTP port of the exchangers (remote.port); tests point
	// it at a loopback sink.
	Port int
	// Resolver looks up MX and address records (dns.resolver).
	Resolver Resolver
	// Relay, when set, sends everything to a smarthost.
	Relay *Relay
	// PerDomain bounds the connections open to one domain at once.
	PerDomain int
	// DialTimeout, CommandTimeout and DataTimeout bound connecting, each
	// command, and the answer to the message.
	DialTimeout, CommandTimeout, DataTimeout time.Duration
	// ConnCacheTime is how long an idle connection is kept for the next
	// message to the same domain; negative: not at all.
	ConnCacheTime time.Duration
	// TLSConfig is used for opportunistic STARTTLS; nil accepts any
	// certificate. ServerName is set to the exchanger's name.
	TLSConfig *tls.Config
	Logger    *slog.Logger
}

// Client delivers to remote domains. It is a queue.Deliverer for
// RouteRemote recipients and is safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex // protects slots and idle
	slots map[string]*slot
	idle  map[string][]*session // by domain ("" for the relay host), most recent last
}

var _ queue.Deliverer = (*Client)(nil)

// slot limits the connections to one domain.
type slot struct {
	sem   chan struct{}
	users int // deliveries holding or waiting for sem; the slot is dropped at 0
}

// New returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Resolver == nil && opts.Relay == nil {
		return nil, errors.New("remote: no DNS resolver")
	}
	if opts.Relay != nil {
		if _, _, err := net.SplitHostPort(opts.Relay.Addr); err != nil {
			return nil, fmt.Errorf("remote: relay address %q: %w", opts.Relay.Addr, err)
		}
	}
	if opts.Hostname == "" {
		return nil, errors.New("remote: no host name for EHLO")
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.PerDomain <= 0 {
		opts.PerDomain = DefaultPerDomain
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
	if opts.ConnCacheTime == 0 {
		opts.ConnCacheTime = DefaultConnCacheTime
	}
	if opts.TLSConfig == nil {
		// Opportunistic TLS: encryption against passive listeners, no
		// authentication (RFC 7435).
		opts.TLSConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // opportunistic, see above
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: opts, log: opts.Logger, slots: map[string]*slot{}, idle: map[string][]*session{}}, nil
}

// Close closes the cached connections.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle = map[string][]*session{}
	c.mu.Unlock()
	for _, list := range idle {
		for _, sc := range list {
			sc.quit()
		}
	}
	return nil
}

// takeIdle returns a cached connection to domain, or nil.
func (c *Client) takeIdle(domain string) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	for list := c.idle[domain]; len(list) > 0; list = c.idle[domain] {
		sc := list[len(list)-1]
		c.idle[domain] = list[:len(list)-1]
		if time.Since(sc.usedAt) < c.opts.ConnCacheTime {
			return sc
		}
		go sc.quit()
	}
	delete(c.idle, domain)
	return nil
}

// done ends a transaction's use of sc: cached for the next message to
// domain when its state allows, else closed. Expired cached connections
// are closed on the way.
func (c *Client) done(domain string, sc *session) {
	if !sc.clean || c.opts.ConnCacheTime < 0 {
		sc.quit()
		return
	}
	sc.usedAt = time.Now()
	var expired []*session
	c.mu.Lock()
	for d, list := range c.idle {
		keep := list[:0]
		for _, old := range list {
			if time.Since(old.usedAt) < c.opts.ConnCacheTime {
				keep = append(keep, old)
			} else {
				expired = append(expired, old)
			}
		}
		if len(keep) == 0 {
			delete(c.idle, d)
		} else {
			c.idle[d] = keep
		}
	}
	if len(c.idle[domain]) < c.opts.PerDomain {
		c.idle[domain] = append(c.idle[domain], sc)
		sc = nil
	}
	c.mu.Unlock()
	if sc != nil {
		expired = append(expired, sc)
	}
	for _, old := range expired {
		old.quit()
	}
}

// Deliver implements queue.Deliverer: the recipients are grouped by
// domain, and the domains delivered to at the same time.
func (c *Client) Deliver(ctx context.Context, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) []queue.Result {
	out := make([]queue.Result, len(rcpts))
	groups := map[string][]int{}
	var order []string
	for i, r := range rcpts {
		dom := ""
		if c.opts.Relay == nil {
			dom = domainOf(r.Address)
		}
		if _, ok := groups[dom]; !ok {
			order = append(order, dom)
		}
		groups[dom] = append(groups[dom], i)
	}
	var wg sync.WaitGroup
	for _, dom := range order {
		idx := groups[dom]
		wg.Go(func() {
			sub := make([]queue.Recipient, len(idx))
			for j, i := range idx {
				sub[j] = rcpts[i]
			}
			res := c.deliverDomain(ctx, dom, env, sub, body)
			for j, i := range idx {
				out[i] = res[j]
			}
		})
	}
	wg.Wait()
	return out
}

// domainOf returns the lower-cased domain of an address.
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

// acquire waits for a connection slot to domain; release gives it back.
func (c *Client) acquire(ctx context.Context, domain string) (release func(), err error) {
	c.mu.Lock()
	s := c.slots[domain]
	if s == nil {
		s = &slot{sem: make(chan struct{}, c.opts.PerDomain)}
		c.slots[domain] = s
	}
	s.users++
	c.mu.Unlock()
	done := func() {
		c.mu.Lock()
		if s.users--; s.users == 0 {
			delete(c.slots, domain)
		}
		c.mu.Unlock()
	}
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// hop is one address to try: the exchanger's name (for TLS SNI and the
// DSN's Remote-MTA) and where to connect.
type hop struct {
	name string
	addr string // "ip:port"
}

func (c *Client) deliverDomain(ctx context.Context, domain string, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) []queue.Result {
	release, err := c.acquire(ctx, domain)
	if err != nil {
		return deliver.All(len(rcpts), queue.Result{Code: 451, Enhanced: "4.4.5", Text: "delivery cancelled: " + err.Error()})
	}
	defer release()
	log := c.log.With("id", env.ID, "domain", domain)
	if sc := c.takeIdle(domain); sc != nil {
		res, next, err := c.run(ctx, domain, sc, env, rcpts, body)
		if !next {
			return res
		}
		// Closed by the server meanwhile, most likely: go the usual way.
		log.Debug("cached connection failed", "err", err)
	}
	if c.opts.Relay != nil {
		return c.deliverRelay(ctx, env, rcpts, body)
	}

	hosts, fail := c.exchangers(ctx, domain)
	if fail != nil {
		log.Info("no route", "reply", fail.String())
		return deliver.All(len(rcpts), *fail)
	}
	last := queue.Result{Code: 451, Enhanced: "4.4.4", Text: "no usable address for the domain's mail exchangers"}
	tries := 0
	for _, host := range hosts {
		ips, err := c.opts.Resolver.IPs(ctx, host)
		if err != nil {
			log.Info("mail exchanger has no address", "mx", host, "err", err)
			last = queue.Result{Code: 451, Enhanced: "4.4.4", Text: fmt.Sprintf("mail exchanger %s: %v", host, err), RemoteMTA: host}
			if errors.Is(err, dnsclient.ErrTemporary) {
				last.Enhanced = "4.4.3"
			}
			continue
		}
		for _, ip := range ips[:min(len(ips), maxAddrsPerHost)] {
			if tries++; tries > maxTries {
				return deliver.All(len(rcpts), last)
			}
			h := hop{name: host, addr: net.JoinHostPort(ip.String(), strconv.Itoa(c.opts.Port))}
			res, next, err := c.attempt(ctx, domain, h, env, rcpts, body, true)
			if errors.Is(err, errTLS) {
				log.Info("STARTTLS failed, retrying in plaintext", "mx", host, "addr", h.addr, "err", err)
				res, next, err = c.attempt(ctx, domain, h, env, rcpts, body, false)
			}
			if !next {
				return res
			}
			log.Info("mail exchanger failed, trying the next one", "mx", host, "addr", h.addr, "err", err)
			last = deliver.FromError(err, host)
			if ctx.Err() != nil {
				return deliver.All(len(rcpts), last)
			}
		}
	}
	return deliver.All(len(rcpts), last)
}

// exchangers returns the hosts to try for domain, or the result every
// recipient gets when there is none.
func (c *Client) exchangers(ctx context.Context, domain string) ([]string, *queue.Result) {
	mxs, err := c.opts.Resolver.MX(ctx, domain)
	switch {
	case errors.Is(err, dnsclient.ErrNotFound):
		// RFC 5321 §5.1: no MX, the domain is its own exchanger — if it
		// has an address at all.
		if _, err := c.opts.Resolver.IPs(ctx, domain); errors.Is(err, dnsclient.ErrNotFound) {
			return nil, &queue.Result{Code: 550, Enhanced: "5.1.2", Text: fmt.Sprintf("domain %s has no mail exchanger and no address", domain)}
		}
		return []string{domain}, nil
	case err != nil:
		return nil, &queue.Result{Code: 451, Enhanced: "4.4.3", Text: fmt.Sprintf("MX lookup for %s failed: %v", domain, err)}
	}
	var hosts []string
	for i := 0; i < len(mxs); {
		if mxs[i].Host == "." {
			// RFC 7505 §3: a null MX says the domain takes no mail.
			return nil, &queue.Result{Code: 556, Enhanced: "5.1.10", Text: fmt.Sprintf("domain %s accepts no mail (null MX)", domain)}
		}
		// Equal preferences share the load in random order (§5.1).
		j := i
		for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
			j++
		}
		same := mxs[i:j]
		rand.Shuffle(len(same), func(a, b int) { same[a], same[b] = same[b], same[a] })
		for _, m := range same {
			hosts = append(hosts, m.Host)
		}
		i = j
	}
	return hosts, nil
}

// errTLS marks a failed STARTTLS handshake: the same address is tried
// again without TLS.
var errTLS = errors.New("TLS handshake failed")

// attempt runs one SMTP session to h. next says the message should go to
// the next address: nothing was decided here (connection refused, session
// refused, temporary refusal of the sender); err says why.
func (c *Client) attempt(ctx context.Context, domain string, h hop, env queue.Envelope, rcpts []queue.Recipient, body queue.Body, useTLS bool) (res []queue.Result, next bool, err error) {
	sc, err := c.connect(ctx, h, useTLS, nil)
	if err != nil {
		return nil, true, err
	}
	return c.run(ctx, domain, sc, env, rcpts, body)
}

// run sends the message on an open session, then caches or closes it.
func (c *Client) run(ctx context.Context, domain string, sc *session, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) ([]queue.Result, bool, error) {
	stop := deliver.CloseOnDone(ctx, sc.nc)
	sc.clean = false
	res, next, err := c.transaction(sc, env, rcpts, body)
	if !stop() { // ctx ended: the connection is closed
		sc.clean = false
	}
	c.done(domain, sc)
	return res, next, err
}

// session is an SMTP client after EHLO.
type session struct {
	*smtp.Client
	nc     net.Conn
	host   string // the server's name, for the DSN's Remote-MTA
	tls    bool
	clean  bool // between transactions: a new MAIL may follow
	usedAt time.Time
}

// quit ends the session politely but without waiting long.
func (s *session) quit() {
	s.CommandTimeout = quitTimeout
	if s.Quit() != nil {
		s.Close()
	}
}

// connect dials h, reads the greeting and says EHLO, after STARTTLS when
// useTLS and the server offers it. With relay set it insists on TLS and
// verifies the certificate (relayTLS).
func (c *Client) connect(ctx context.Context, h hop, useTLS bool, relayTLS *tls.Config) (*session, error) {
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	stop := deliver.CloseOnDone(ctx, nc)
	defer stop()
	mode := tlsNone
	switch {
	case relayTLS != nil && strings.HasSuffix(h.addr, ":465"):
		// RFC 8314 §3.3: implicit TLS on the submissions port.
		tc := tls.Client(nc, relayTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%s: TLS: %w", h.addr, err)
		}
		nc = tc
	case relayTLS != nil:
		mode = tlsRequired
	case useTLS:
		mode = tlsMay
	}
	conn, isTLS, err := c.starttls(ctx, nc, h, mode, relayTLS)
	if err != nil {
		nc.Close()
		return nil, err
	}
	sc := smtp.NewClient(conn)
	sc.CommandTimeout = c.opts.CommandTimeout
	sc.SubmissionTimeout = c.opts.DataTimeout
	if err := sc.Hello(c.opts.Hostname); err != nil {
		sc.Close()
		var se *smtp.SMTPError
		if isTLS && mode == tlsMay && !errors.As(err, &se) {
			// Under TLS 1.3 a server refusing the handshake says so
			// only at our first read (here a client certificate
			// demanded): still a TLS failure, for the plaintext retry.
			return nil, fmt.Errorf("%s: EHLO: %w: %w", h.addr, errTLS, err)
		}
		return nil, fmt.Errorf("%s: EHLO: %w", h.addr, err)
	}
	_, implicit := nc.(*tls.Conn)
	return &session{Client: sc, nc: conn, host: h.name, tls: isTLS || implicit}, nil
}

// tlsMode says whether connect uses STARTTLS.
type tlsMode int

const (
	tlsNone     tlsMode = iota // never (plaintext retry, or TLS already)
	tlsMay                     // when offered, any certificate
	tlsRequired                // or fail; the certificate verified (smarthost)
)

// starttls reads the greeting and, as mode says, upgrades the connection
// with STARTTLS (RFC 3207). It speaks the first commands itself because
// go-smtp's client would say its EHLO before STARTTLS with a default
// name; it returns a connection that replays a greeting, so that go-smtp
// starts its own session (EHLO with our name) on it.
func (c *Client) starttls(ctx context.Context, nc net.Conn, h hop, mode tlsMode, relayTLS *tls.Config) (net.Conn, bool, error) {
	nc.SetDeadline(time.Now().Add(c.opts.CommandTimeout))
	defer nc.SetDeadline(time.Time{})
	br := bufio.NewReader(nc)
	tp := textproto.NewReader(br)
	w := bufio.NewWriter(nc)
	cmd := func(line string, want int) (string, error) {
		if _, err := w.WriteString(line + "\r\n"); err != nil {
			return "", err
		}
		if err := w.Flush(); err != nil {
			return "", err
		}
		_, msg, err := tp.ReadResponse(want)
		return msg, smtpErr(err)
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, fmt.Errorf("%s: greeting: %w", h.addr, smtpErr(err))
	}
	if mode == tlsNone {
		return replay(nc, br), false, nil
	}
	ext, err := cmd("EHLO "+c.opts.Hostname, 250)
	offered := err == nil && slices.ContainsFunc(strings.Split(ext, "\n")[1:], func(l string) bool { return strings.EqualFold(strings.TrimSpace(l), "STARTTLS") })
	if !offered {
		if mode == tlsRequired {
			return nil, false, &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "the relay host does not offer STARTTLS: not sending the password in plaintext"}
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s: EHLO: %w", h.addr, err)
		}
		return replay(nc, br), false, nil
	}
	if _, err := cmd("STARTTLS", 220); err != nil {
		if mode == tlsRequired {
			return nil, false, fmt.Errorf("%s: STARTTLS: %w", h.addr, err)
		}
		return nil, false, fmt.Errorf("%s: STARTTLS: %w: %w", h.addr, errTLS, err)
	}
	cfg := relayTLS
	if mode == tlsMay {
		cfg = c.opts.TLSConfig.Clone()
		cfg.ServerName = h.name
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if mode == tlsRequired {
			return nil, false, fmt.Errorf("%s: TLS: %w", h.addr, err)
		}
		return nil, false, fmt.Errorf("%s: %w: %w", h.addr, errTLS, err)
	}
	return replay(tc, bufio.NewReader(tc)), true, nil
}

// smtpErr turns a textproto reply error into go-smtp's error type, which
// deliver.FromError reads.
func smtpErr(err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	se := &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	if code, msg, ok := strings.Cut(te.Msg, " "); ok {
		var e smtp.EnhancedCode
		if n, _ := fmt.Sscanf(code, "%d.%d.%d", &e[0], &e[1], &e[2]); n == 3 {
			se.EnhancedCode, se.Message = e, msg
		}
	}
	return se
}

// replay returns nc with a 220 greeting to read first, then what br has
// buffered, then the rest of nc.
func replay(nc net.Conn, br *bufio.Reader) net.Conn {
	buffered, _ := br.Peek(br.Buffered())
	r := io.MultiReader(strings.NewReader("220 ready\r\n"), strings.NewReader(string(buffered)), nc)
	return &replayConn{Conn: nc, r: r}
}

type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// transaction sends the message on an open session.
// next says nothing was decided and the next exchanger should be tried.
// sc.clean is set when the session can carry another message.
func (c *Client) transaction(sc *session, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) ([]queue.Result, bool, error) {
	remote := sc.host
	needUTF8 := !isASCII(env.Sender)
	for _, r := range rcpts {
		needUTF8 = needUTF8 || !isASCII(r.Address)
	}
	if ok, _ := sc.Extension("SMTPUTF8"); needUTF8 && !ok {
		// RFC 6531 §3.2: without SMTPUTF8 the addresses cannot be sent.
		return deliver.All(len(rcpts), queue.Result{Code: 553, Enhanced: "5.6.7", Text: "the server does not support SMTPUTF8, needed for the addresses", RemoteMTA: remote}), false, nil
	}
	if limit, ok := sc.MaxMessageSize(); ok && limit > 0 && body.Size() > int64(limit) {
		// RFC 1870 §6.
		return deliver.All(len(rcpts), queue.Result{Code: 552, Enhanced: "5.3.4", Text: fmt.Sprintf("message of %d bytes exceeds the server's limit of %d", body.Size(), limit), RemoteMTA: remote}), false, nil
	}
	mo := &smtp.MailOptions{Size: body.Size(), UTF8: needUTF8, EnvelopeID: env.EnvID}
	switch env.Ret {
	case "FULL":
		mo.Return = smtp.DSNReturnFull
	case "HDRS":
		mo.Return = smtp.DSNReturnHeaders
	}
	if err := sc.Mail(env.Sender, mo); err != nil {
		res := deliver.FromError(err, remote)
		if res.Code/100 == 5 {
			return deliver.All(len(rcpts), res), false, nil
		}
		return nil, true, err // a temporary refusal: the next exchanger may take it
	}
	res, accepted, _ := deliver.Rcpts(sc.Client, rcpts, rcptOptions, remote)
	if len(accepted) == 0 {
		return res, false, nil
	}
	setAll := func(r queue.Result) []queue.Result {
		for _, i := range accepted {
			res[i] = r
		}
		return res
	}
	w, err := sc.Data()
	if err != nil {
		return setAll(deliver.FromError(err, remote)), false, nil
	}
	if _, err := io.Copy(w, io.NewSectionReader(body, 0, body.Size())); err != nil {
		return setAll(deliver.FromError(err, remote)), false, nil
	}
	reply, err := w.CloseWithResponse()
	var se *smtp.SMTPError
	sc.clean = err == nil || errors.As(err, &se) // the server answered the message
	if err != nil {
		return setAll(deliver.FromError(err, remote)), false, nil
	}
	tlsNote := ""
	if sc.tls {
		tlsNote = " (TLS)"
	}
	return setAll(queue.Result{Code: 250, Enhanced: "2.0.0", Text: reply.StatusText + tlsNote, RemoteMTA: remote}), false, nil
}

// rcptOptions passes the recipient's DSN parameters on (RFC 3461 §4), for
// servers that offer DSN.
func rcptOptions(r queue.Recipient) *smtp.RcptOptions {
	o := &smtp.RcptOptions{Notify: notifyList(r.Notify)}
	if r.Orig != "" && isASCII(r.Orig) {
		o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, r.Orig
	}
	return o
}

// notifyList parses a NOTIFY value (RFC 3461 §4.1); nil when empty or not
// valid, so that nothing rather than a part of it is passed on.
func notifyList(notify string) []smtp.DSNNotify {
	if notify == "" {
		return nil
	}
	var out []smtp.DSNNotify
	for _, n := range strings.Split(strings.ToUpper(notify), ",") {
		switch v := smtp.DSNNotify(strings.TrimSpace(n)); v {
		case smtp.DSNNotifyNever, smtp.DSNNotifyDelayed, smtp.DSNNotifyFailure, smtp.DSNNotifySuccess:
			out = append(out, v)
		default:
			return nil
		}
	}
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// deliverRelay sends the message to the smarthost.
func (c *Client) deliverRelay(ctx context.Context, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) []queue.Result {
	rl := c.opts.Relay
	host, _, _ := net.SplitHostPort(rl.Addr)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if rl.TLSConfig != nil {
		cfg = rl.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	sc, err := c.connect(ctx, hop{name: host, addr: rl.Addr}, true, cfg)
	if err != nil {
		c.log.Warn("relay host unreachable", "id", env.ID, "relay", rl.Addr, "err", err)
		return deliver.All(len(rcpts), deliver.FromError(err, host))
	}
	if rl.Username != "" {
		stop := deliver.CloseOnDone(ctx, sc.nc)
		err := sc.Auth(sasl.NewPlainClient("", rl.Username, rl.Password))
		stop()
		if err != nil {
			sc.quit()
			// A refused login is our configuration, not the message's
			// fault: keep the mail queued while the operator fixes it.
			res := deliver.FromError(err, host)
			res.Code, res.Enhanced = 454, "4.7.0"
			res.Text = "relay host refused our login: " + res.Text
			return deliver.All(len(rcpts), res)
		}
	}
	res, _, err := c.run(ctx, "", sc, env, rcpts, body)
	if res == nil {
		return deliver.All(len(rcpts), deliver.FromError(err, host))
	}
	return res
}
