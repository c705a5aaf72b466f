// Package smtpd is the MTA's SMTP server, on go-smtp: inbound mail from
// other servers (port 25, RFC 5321) and submission from our users (587
// with STARTTLS, RFC 6409 and RFC 3207; 465 with implicit TLS, RFC 8314),
// both ending in the durable queue.
//
// A Server serves one listener in one Mode. It answers RCPT from the auth
// service (no accept-then-bounce), refuses relaying without SMTP AUTH,
// checks the message as it arrives (package policy: line endings, header,
// loops), adds the trace and identification fields, and says 250 only
// after the queue has the message on disk.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/mta/internal/policy"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// Mode is what a listener is for.
type Mode int

const (
	// Inbound is port 25: mail from the world for our domains. No AUTH,
	// no relaying.
	Inbound Mode = iota
	// Submission is ports 587 and 465: our users, authenticated (over
	// TLS only), sending anywhere as addresses they own.
	Submission
)

func (m Mode) String() string {
	if m == Submission {
		return "submission"
	}
	return "inbound"
}

// Spool is where accepted messages go: the queue. Enqueue returns only
// once the message is durable.
type Spool interface {
	Enqueue(ctx context.Context, env queue.Envelope, body io.Reader) (string, error)
}

// Auth is what the server asks the auth service (authclient.Client).
type Auth interface {
	Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (authclient.User, error)
	ResolveRecipient(ctx context.Context, address string) (authclient.Recipient, error)
	CanSendAs(ctx context.Context, user, address string) (bool, error)
}

var _ Auth = (*authclient.Client)(nil)

// Verifier judges an inbound message at the end of DATA: SPF, DKIM and
// DMARC (the next step of issue 4 implements it). It sees the header
// after our own Authentication-Results were stripped, and the body.
type Verifier interface {
	Verify(ctx context.Context, m *Message) (Verdict, error)
}

// DKIMSigner signs submitted mail (package dkimsign): it returns the
// DKIM-Signature fields, each ending in CRLF, for the domain of fromAddr,
// none when that domain has no key.
type DKIMSigner interface {
	Sign(fromAddr string, header []byte, body io.Reader) ([]string, error)
}

// Message is an inbound message as a Verifier sees it.
type Message struct {
	RemoteIP net.IP
	Helo     string
	Sender   string // the reverse-path; "" is the null sender
	Header   *policy.Header
	Body     io.Reader
}

// Verdict is a Verifier's judgement.
type Verdict struct {
	// AuthResults is the value of the Authentication-Results field to
	// add (RFC 8601), starting with our authserv-id; "" adds none.
	AuthResults string
	// Reject, when not nil, refuses the message with this reply (DMARC
	// p=reject: 550 5.7.1).
	Reject *smtp.SMTPError
	// Junk files the message into the Junk folder (DMARC p=quarantine).
	Junk bool
}

// Defaults for the zero values of Options. go-smtp's own defaults are
// "unlimited", which no server facing the Internet can afford.
const (
	// DefaultMaxMessageBytes is what large providers accept (Gmail: 25
	// MB after encoding; postfix's message_size_limit is 10 MB).
	DefaultMaxMessageBytes = 25 << 20
	// DefaultMaxRecipients is postfix's smtpd_recipient_limit; RFC 5321
	// section 4.5.3.1.8 asks for at least 100.
	DefaultMaxRecipients = 1000
	// DefaultMaxLineLength bounds a command line and a message line,
	// CRLF included. RFC 5321 section 4.5.3.1.6 says 1000 octets, but
	// real mail breaks that often enough that refusing at 1000 loses
	// mail; twice that is go-smtp's own choice.
	DefaultMaxLineLength = 2000
	// DefaultMaxHeaderBytes bounds the header block (postfix's
	// header_size_limit is 100 KiB).
	DefaultMaxHeaderBytes = 100 << 10
	// DefaultReadTimeout is RFC 5321 section 4.5.3.2.7's 5 minutes for
	// the next command. go-smtp sets the deadline per command line, so
	// for DATA it bounds the whole transfer: 10 minutes there (section
	// 4.5.3.2.6 gives the final dot 10 minutes).
	DefaultReadTimeout  = 5 * time.Minute
	DefaultDataTimeout  = 10 * time.Minute
	DefaultWriteTimeout = time.Minute
	// DefaultMaxConnections and DefaultMaxConnectionsPerIP bound the
	// sessions of a listener (postfix: default_process_limit 100,
	// smtpd_client_connection_count_limit 50).
	DefaultMaxConnections      = 500
	DefaultMaxConnectionsPerIP = 20
	// DefaultSpoolMemory: message bodies up to this size are held in
	// memory between DATA and the queue; larger ones in a temporary file.
	DefaultSpoolMemory = 1 << 20
)

// Options configure a Server. Zero values take the defaults above.
type Options struct {
	Mode Mode
	// Hostname is announced in the greeting and the Received field,
	// and is our authserv-id for Authentication-Results. Required.
	Hostname string
	// TLS is the certificate for STARTTLS; nil offers no STARTTLS.
	// Submission without TLS cannot authenticate, so it is useless.
	TLS *tls.Config
	// ImplicitTLS makes the listener TLS from the first byte (port 465,
	// RFC 8314); TLS is then required.
	ImplicitTLS bool

	Auth     Auth
	Spool    Spool
	Verifier Verifier   // nil: no SPF/DKIM/DMARC yet
	DKIM     DKIMSigner // signs submission; nil: unsigned
	Logger   *slog.Logger
	Metrics  *Metrics // shared by the listeners; nil: not counted

	MaxMessageBytes     int64
	MaxRecipients       int
	MaxLineLength       int
	MaxHeaderBytes      int
	ReadTimeout         time.Duration
	DataTimeout         time.Duration
	WriteTimeout        time.Duration
	MaxConnections      int
	MaxConnectionsPerIP int
	// SpoolDir holds the temporary files of large messages (unlinked at
	// once); default the system's temporary directory.
	SpoolDir    string
	SpoolMemory int64
}

// Server is an SMTP server on one listener.
type Server struct {
	opts    Options
	smtp    *smtp.Server
	log     *slog.Logger
	metrics *Metrics
	name    string // the mode, as a metrics label
	// bodyPool holds *bytes.Buffer for message bodies (spoolBody).
	bodyPool sync.Pool

	closing atomic.Bool // Shutdown has begun: no new transactions
	mu      sync.Mutex  // protects conns and perIP
	conns   map[*trackedConn]struct{}
	perIP   map[string]int
}

// New returns a server; Serve starts it.
func New(opts Options) (*Server, error) {
	if opts.Hostname == "" {
		return nil, errors.New("smtpd: hostname is required")
	}
	if opts.Auth == nil || opts.Spool == nil {
		return nil, errors.New("smtpd: Auth and Spool are required")
	}
	if opts.ImplicitTLS && opts.TLS == nil {
		return nil, errors.New("smtpd: implicit TLS needs a certificate")
	}
	config.SetDefault(&opts.MaxMessageBytes, DefaultMaxMessageBytes)
	config.SetDefault(&opts.MaxRecipients, DefaultMaxRecipients)
	config.SetDefault(&opts.MaxLineLength, DefaultMaxLineLength)
	config.SetDefault(&opts.MaxHeaderBytes, DefaultMaxHeaderBytes)
	config.SetDefault(&opts.ReadTimeout, DefaultReadTimeout)
	config.SetDefault(&opts.DataTimeout, DefaultDataTimeout)
	config.SetDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	config.SetDefault(&opts.MaxConnections, DefaultMaxConnections)
	config.SetDefault(&opts.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	config.SetDefault(&opts.SpoolMemory, DefaultSpoolMemory)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: opts.Metrics,
		name:    opts.Mode.String(),
		conns:   make(map[*trackedConn]struct{}),
		perIP:   make(map[string]int),
	}
	if opts.ImplicitTLS {
		s.name = "submissions"
	}

	srv := smtp.NewServer(backend{s})
	srv.Domain = opts.Hostname
	srv.TLSConfig = opts.TLS
	// Every limit set explicitly: go-smtp's zero values are unlimited.
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = opts.MaxLineLength
	// go-smtp sets the read deadline when it reads a command line, and
	// DATA is read under the deadline of the DATA line: the session
	// moves it to DataTimeout when DATA starts (session.Data).
	srv.ReadTimeout = opts.ReadTimeout
	srv.WriteTimeout = opts.WriteTimeout
	// AUTH is only offered over TLS, but go-smtp's own refusal before
	// TLS is a 523; the session refuses with RFC 4954's 538 5.7.11
	// instead, and offers no mechanism before TLS (AuthMechanisms).
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true // RFC 6531: the queue and LMTP carry UTF-8 as is
	srv.EnableDSN = true      // RFC 3461: the queue keeps RET, ENVID, NOTIFY, ORCPT
	// BINARYMIME would let NUL and bare CR/LF in; REQUIRETLS needs an
	// outbound path that honours it; DELIVERBY, MT-PRIORITY, RRVS are
	// not implemented by the queue.
	srv.EnableBINARYMIME = false
	srv.EnableREQUIRETLS = false
	srv.ErrorLog = logging.Printer{Log: s.log}
	s.smtp = srv
	return s, nil
}

// Serve accepts connections on lis until Shutdown. It owns lis.
func (s *Server) Serve(lis net.Listener) error {
	var l net.Listener = &limitListener{Listener: lis, srv: s}
	if s.opts.ImplicitTLS {
		// go-smtp does the handshake (under its timeouts) when it is
		// given a *tls.Conn.
		l = tls.NewListener(l, s.opts.TLS)
	}
	return s.smtp.Serve(l)
}

// Shutdown stops accepting, closes the sessions that are not in a mail
// transaction, lets the others finish theirs (sessions in the middle of
// DATA must not lose a message the client is about to see accepted),
// closing each as it does, and cuts what is left when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.smtp.Shutdown(context.Background()) }()
	s.closeConns(true)
	select {
	case err := <-done:
		if errors.Is(err, smtp.ErrServerClosed) {
			err = nil
		}
		return err
	case <-ctx.Done():
		// (go-smtp's Close does nothing once Shutdown has begun.)
		s.closeConns(false)
		<-done
		return fmt.Errorf("smtpd: sessions cut at shutdown: %w", ctx.Err())
	}
}

// closeConns closes the connections not in a transaction, or all.
func (s *Server) closeConns(idleOnly bool) {
	var close []*trackedConn
	s.mu.Lock()
	for c := range s.conns {
		if !idleOnly || !c.busy.Load() {
			close = append(close, c)
		}
	}
	s.mu.Unlock()
	for _, c := range close { // Close takes s.mu
		c.Close()
	}
}

// backend is go-smtp's view of the server.
type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.s.newSession(c)
}
