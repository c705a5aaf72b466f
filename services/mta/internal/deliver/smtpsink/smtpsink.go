// Package smtpsink is an SMTP or LMTP server for tests: go-smtp's server
// on loopback, recording what it receives and answering as a test script
// says. Delivery tests talk to it with the real clients over real sockets.
package smtpsink

import (
	"crypto/tls"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Stage names the command an answer is for.
type Stage string

// Stages.
const (
	StageMail Stage = "MAIL"
	StageRcpt Stage = "RCPT"
	// StageData is asked once per accepted recipient after the message:
	// over LMTP each gets its own answer, over SMTP the first answer is
	// the message's.
	StageData Stage = "DATA"
)

// Options configure a Sink.
type Options struct {
	// Addr to listen on; "" picks a free loopback port.
	Addr string
	// LMTP runs the server in LMTP mode.
	LMTP bool
	// TLS, when set, offers STARTTLS with this configuration.
	TLS *tls.Config
	// Reply answers a command: arg is the address (MAIL, RCPT, DATA per
	// recipient). nil, or a nil return, accepts; return an
	// *smtp.SMTPError to refuse.
	Reply func(stage Stage, arg string) error
	// MaxMessageBytes advertises SIZE; 0: unlimited.
	MaxMessageBytes int64
	// SMTPUTF8 advertises the SMTPUTF8 extension.
	SMTPUTF8 bool
	// Auth, when set, offers AUTH PLAIN (after STARTTLS only, unless TLS
	// is nil) and checks the credentials.
	Auth func(username, password string) error
}

// Message is a message the sink accepted (for at least one recipient).
type Message struct {
	From     string
	To       []string // the recipients it was accepted for
	Data     string
	Helo     string
	TLS      bool
	UTF8     bool
	Size     int64  // MAIL FROM SIZE=, 0 when absent
	AuthUser string // who logged in with AUTH, "" for nobody
	ConnAddr string
}

// Sink is a running server.
type Sink struct {
	Addr string // "127.0.0.1:PORT"

	opts Options
	srv  *smtp.Server
	lis  net.Listener

	mu    sync.Mutex // protects msgs and conns
	msgs  []Message
	conns map[*smtp.Conn]bool
}

// Start starts a sink and stops it when the test ends.
func Start(t testing.TB, opts Options) *Sink {
	t.Helper()
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("smtpsink: %v", err)
	}
	s := &Sink{Addr: lis.Addr().String(), opts: opts, lis: lis, conns: map[*smtp.Conn]bool{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		// Called at each EHLO: again after STARTTLS, on one connection.
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		return &session{sink: s, conn: c}, nil
	}))
	s.srv.LMTP = opts.LMTP
	s.srv.Domain = "sink.test"
	s.srv.TLSConfig = opts.TLS
	s.srv.MaxMessageBytes = opts.MaxMessageBytes
	s.srv.MaxRecipients = 100
	s.srv.MaxLineLength = 4096
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.EnableSMTPUTF8 = opts.SMTPUTF8
	s.srv.AllowInsecureAuth = opts.TLS == nil
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Close()
		<-served
	})
	return s
}

// Close stops the server and closes its connections, as a crashed service.
// Closing twice is harmless.
func (s *Sink) Close() {
	s.srv.Close()
	s.lis.Close() // in case Serve had not registered it yet
}

// Messages returns what the sink accepted so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// Connections returns how many connections the sink accepted.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Sink) reply(stage Stage, arg string) error {
	if s.opts.Reply == nil {
		return nil
	}
	return s.opts.Reply(stage, arg)
}

type session struct {
	sink *Sink
	conn *smtp.Conn
	msg  Message
	user string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.sink.opts.Auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.sink.opts.Auth == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if err := ss.sink.opts.Auth(username, password); err != nil {
			return err
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Reset()        { ss.msg = Message{} }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := ss.sink.reply(StageMail, from); err != nil {
		return err
	}
	_, isTLS := ss.conn.TLSConnectionState()
	ss.msg = Message{From: from, Helo: ss.conn.Hostname(), TLS: isTLS, AuthUser: ss.user, ConnAddr: ss.conn.Conn().RemoteAddr().String()}
	if opts != nil {
		ss.msg.UTF8, ss.msg.Size = opts.UTF8, opts.Size
	}
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := ss.sink.reply(StageRcpt, to); err != nil {
		return err
	}
	ss.msg.To = append(ss.msg.To, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := ss.sink.reply(StageData, ss.msg.To[0]); err != nil {
		return err
	}
	ss.store(string(b), ss.msg.To)
	return nil
}

func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var ok []string
	for _, to := range ss.msg.To {
		err := ss.sink.reply(StageData, to)
		if err == nil {
			ok = append(ok, to)
		}
		status.SetStatus(to, err)
	}
	if len(ok) > 0 {
		ss.store(string(b), ok)
	}
	return nil
}

func (ss *session) store(data string, to []string) {
	m := ss.msg
	m.Data, m.To = data, slices.Clone(to)
	ss.sink.mu.Lock()
	ss.sink.msgs = append(ss.sink.msgs, m)
	ss.sink.mu.Unlock()
}
