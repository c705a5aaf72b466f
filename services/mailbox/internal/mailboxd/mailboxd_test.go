package mailboxd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/lmtpd/lmtptest"
)

func testConfig(t *testing.T, authAddr string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.LogLevel = "debug"
	cfg.Listen = Listen{LMTP: testlib.FreeAddr(t), GRPC: testlib.FreeAddr(t), Metrics: testlib.FreeAddr(t)}
	cfg.Auth.Addr = authAddr
	cfg.Auth.HealthInterval = 100 * time.Millisecond
	cfg.Store.Root = filepath.Join(testlib.TempDir(t), "mail")
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

// runService runs the whole service in-process, as cmd/mailbox does, and
// returns a function that stops it and returns Run's result. Its log goes
// to a file in the store's temporary directory, shown when the test fails.
func runService(t *testing.T, cfg Config) (stop func() error) {
	t.Helper()
	logPath := filepath.Join(filepath.Dir(cfg.Store.Root), "mailbox.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return 30s after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run() = %v after shutdown, want nil", err)
		}
		logFile.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("mailbox log:\n%s", data)
		}
	})
	return stop
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var err error
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: still %v after %v", what, err, timeout)
}

func serving(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return grpcx.CheckHealth(ctx, addr, nil, "")
}

// deliver runs one LMTP transaction to rcpt and returns the RCPT reply
// and, when RCPT was accepted, the DATA reply.
func deliver(t *testing.T, addr, rcpt, subject string) (rcptReply, dataReply lmtptest.Reply) {
	t.Helper()
	c := lmtptest.Dial(t, addr)
	c.LHLO()
	rcpts, data := c.Transaction("s@remote.example", []string{rcpt}, lmtptest.Message("hello", "Subject: "+subject))
	c.Conn.Close()
	if len(data) == 0 {
		return rcpts[0], lmtptest.Reply{}
	}
	return rcpts[0], data[0]
}

// TestRun: the service starts before auth is up (health NOT_SERVING, RCPT
// 451), serves once it is (health SERVING, 250, metrics), goes back to
// NOT_SERVING and 451 when auth stops, and recovers again, all without a
// restart; cancelling the context stops it cleanly.
func TestRun(t *testing.T) {
	a := testlib.StartAuth(t)
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "pw", 0)
	a.Stop()

	cfg := testConfig(t, a.Addr)
	stop := runService(t, cfg)
	waitListening(t, cfg.Listen.LMTP)
	if err := serving(cfg.Listen.GRPC); err == nil {
		t.Errorf("health with auth down = SERVING, want NOT_SERVING")
	}
	if rcpt, _ := deliver(t, cfg.Listen.LMTP, "alice@example.org", "while down"); !strings.HasPrefix(rcpt.String(), "451 4.4.3") {
		t.Errorf("RCPT with auth down = %v, want 451 4.4.3", rcpt)
	}

	a.Start()
	eventually(t, 15*time.Second, "health after auth started", func() error { return serving(cfg.Listen.GRPC) })
	eventually(t, 15*time.Second, "delivery after auth started", func() error {
		if rcpt, data := deliver(t, cfg.Listen.LMTP, "alice@example.org", "after start"); data.Code != 250 {
			return fmt.Errorf("RCPT %v, DATA %v", rcpt, data)
		}
		return nil
	})
	if rcpt, _ := deliver(t, cfg.Listen.LMTP, "nobody@example.org", "x"); !strings.HasPrefix(rcpt.String(), "550 5.1.1") {
		t.Errorf("RCPT of an unknown user = %v, want 550 5.1.1", rcpt)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Store.Root, "example.org", "alice", "Maildir", "cur", "*"))
	if len(files) != 1 {
		t.Errorf("alice's Maildir/cur holds %v, want one message", files)
	}

	resp, err := http.Get("http://" + cfg.Listen.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`postcove_lmtp_deliveries_total{result="inbox"} 1`, `postcove_lmtp_recipients_total{result="unknown_user"} 1`,
		"postcove_mailbox_auth_up 1", "postcove_lmtp_sessions", "grpc_server_handled_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	a.Stop()
	eventually(t, 10*time.Second, "NOT_SERVING after auth stopped", func() error {
		if serving(cfg.Listen.GRPC) == nil {
			return fmt.Errorf("still SERVING")
		}
		return nil
	})
	// A recipient not in lmtp.recipient_cache: auth must be asked.
	if rcpt, _ := deliver(t, cfg.Listen.LMTP, "bob@example.org", "down again"); rcpt.Code != 451 {
		t.Errorf("RCPT with auth stopped again = %v, want 451", rcpt)
	}

	if err := stop(); err != nil {
		t.Errorf("Run() = %v after cancel, want nil", err)
	}
	if _, err := net.DialTimeout("tcp", cfg.Listen.LMTP, time.Second); err == nil {
		t.Errorf("LMTP still listening after Run returned")
	}
}

// TestRunPortTaken: a listen address in use fails Run at once, naming
// its key.
func TestRunPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := testConfig(t, "127.0.0.1:1")
	cfg.Listen.LMTP = taken.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Run(ctx, cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "listen.lmtp") {
		t.Errorf("Run() with listen.lmtp taken = %v, want an error naming listen.lmtp", err)
	}
}

// TestLMTPToPOP3: a message delivered over LMTP is read back over POP3 by
// curl, a client nobody here wrote, over implicit TLS and over STLS: the
// path LMTP -> Maildir -> POP3 through the wired service.
func TestLMTPToPOP3(t *testing.T) {
	curl := testlib.RequireTool(t, "curl")
	cfg, certs := serveDelivered(t, "via pop3", func(cfg *Config) {
		cfg.Listen.POP3, cfg.Listen.POP3S = testlib.FreeAddr(t), testlib.FreeAddr(t)
	})
	for _, url := range []string{
		"pop3s://localhost:" + port(t, cfg.Listen.POP3S) + "/1",
		"pop3://localhost:" + port(t, cfg.Listen.POP3) + "/1",
	} {
		out, err := exec.Command(curl, "-sS", "--ssl-reqd", "--cacert", certs.CA, "--connect-to", "localhost:"+port(t, cfg.Listen.POP3)+":"+cfg.Listen.POP3,
			"--connect-to", "localhost:"+port(t, cfg.Listen.POP3S)+":"+cfg.Listen.POP3S,
			"-u", "alice@example.org:s3cret", url).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Subject: via pop3") || !strings.Contains(string(out), "Delivered-To: <alice@example.org>") && !strings.Contains(string(out), "Delivered-To: alice@example.org") {
			t.Errorf("curl %s = %v\n%s\nwant the delivered message with its Delivered-To", url, err, out)
		}
	}
}

// serveDelivered runs the service with real auth (user alice@example.org,
// password s3cret), a TLS certificate for the mail listeners and the
// listeners edit adds, and delivers one message with subject over LMTP.
func serveDelivered(t *testing.T, subject string, edit func(*Config)) (Config, testlib.Certs) {
	t.Helper()
	a := testlib.StartAuth(t)
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "s3cret", 0)
	certs := testlib.NewCerts(t)
	cfg := testConfig(t, a.Addr)
	cfg.TLS.Cert, cfg.TLS.Key = certs.ServerCert, certs.ServerKey
	edit(&cfg)
	runService(t, cfg)
	waitListening(t, cfg.Listen.LMTP)
	eventually(t, 15*time.Second, "delivery", func() error {
		if rcpt, data := deliver(t, cfg.Listen.LMTP, "alice@example.org", subject); data.Code != 250 {
			return fmt.Errorf("RCPT %v, DATA %v", rcpt, data)
		}
		return nil
	})
	return cfg, certs
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitListening waits until something accepts connections on addr.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	eventually(t, 10*time.Second, "listening on "+addr, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// TestLMTPToIMAP: a message delivered over LMTP is read over IMAP, with
// the real auth service checking the login, over STARTTLS and implicit
// TLS; a wrong password is NO [AUTHENTICATIONFAILED].
func TestLMTPToIMAP(t *testing.T) {
	cfg, certs := serveDelivered(t, "via imap", func(cfg *Config) {
		cfg.Listen.IMAP, cfg.Listen.IMAPS = testlib.FreeAddr(t), testlib.FreeAddr(t)
	})
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	opts := &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	for name, dial := range map[string]func() (*imapclient.Client, error){
		"starttls": func() (*imapclient.Client, error) { return imapclient.DialStartTLS(cfg.Listen.IMAP, opts) },
		"implicit": func() (*imapclient.Client, error) { return imapclient.DialTLS(cfg.Listen.IMAPS, opts) },
	} {
		c, err := dial()
		if err != nil {
			t.Fatalf("%s: dial: %v", name, err)
		}
		defer c.Close()
		var ie *imap.Error
		if err := c.Login("alice@example.org", "wrong").Wait(); !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("%s: LOGIN with a wrong password = %v, want NO [AUTHENTICATIONFAILED]", name, err)
		}
		if err := c.Login("alice@example.org", "s3cret").Wait(); err != nil {
			t.Fatalf("%s: LOGIN = %v", name, err)
		}
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil || sel.NumMessages != 1 {
			t.Fatalf("%s: SELECT INBOX = %+v, %v; want 1 message", name, sel, err)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: FETCH 1 = %v, %v", name, msgs, err)
		}
		body := string(msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true}))
		if msgs[0].Envelope == nil || !strings.Contains(body, "Subject: via imap") || !strings.Contains(body, "Delivered-To: alice@example.org") {
			t.Errorf("%s: FETCH 1 = envelope %+v, body %q; want the delivered message", name, msgs[0].Envelope, body)
		}
		c.Logout().Wait()
	}
}

// TestValidateIMAP: the [imap] settings and listen.imaps are checked and
// named.
func TestValidateIMAP(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		key    string
	}{
		{func(c *Config) { c.Listen.IMAP = "143" }, "listen.imap"},
		{func(c *Config) { c.Listen.IMAPS = "127.0.0.1:2993" }, "listen.imaps"},
		{func(c *Config) { c.IMAP.MaxSessions = 0 }, "imap.max_sessions"},
		{func(c *Config) { c.IMAP.MaxAppendSize = 10 }, "imap.max_append_size"},
		{func(c *Config) { c.IMAP.MaxAppendSize = 1 << 33 }, "imap.max_append_size"},
	} {
		cfg := DefaultConfig()
		tc.change(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tc.key)
		}
	}
	cfg := DefaultConfig()
	if got := cfg.appendLimit(); got != cfg.Limits.MaxMessageSize {
		t.Errorf("appendLimit() = %d by default, want limits.max_message_size %d", got, cfg.Limits.MaxMessageSize)
	}
}
