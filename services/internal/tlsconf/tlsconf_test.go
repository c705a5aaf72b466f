package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
)

// result is what one handshake over a real TCP connection gave on each side.
type result struct {
	serverErr error
	clientErr error
	state     tls.ConnectionState // client side
	peerCerts int                 // client certificates the server saw
}

// handshake serves one connection with srv on 127.0.0.1 and connects to it
// with cli. The server writes "ok" after its handshake; the client reads it,
// which is where a TLS 1.3 client learns that the server rejected its
// certificate.
func handshake(t *testing.T, srv, cli *tls.Config) result {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()

	var r result
	var wg sync.WaitGroup
	wg.Go(func() {
		conn, err := lis.Accept()
		if err != nil {
			r.serverErr = err
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, srv)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if r.serverErr = tc.Handshake(); r.serverErr != nil {
			return
		}
		r.peerCerts = len(tc.ConnectionState().PeerCertificates)
		_, r.serverErr = io.WriteString(tc, "ok")
	})

	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", lis.Addr().String(), cli)
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		got, err = io.ReadAll(conn)
		if err == nil && string(got) != "ok" {
			err = errors.New("read " + string(got))
		}
		r.state = conn.ConnectionState()
		conn.Close()
	}
	r.clientErr = err
	wg.Wait()
	return r
}

func mustServer(t *testing.T, f Files, opts ...Option) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(f, opts...)
	if err != nil || cfg == nil {
		t.Fatalf("ServerConfig(%+v) = %v, %v", f, cfg, err)
	}
	return cfg
}

func mustClient(t *testing.T, f Files, serverName string) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(f, serverName)
	if err != nil || cfg == nil {
		t.Fatalf("ClientConfig(%+v) = %v, %v", f, cfg, err)
	}
	return cfg
}

func TestHandshake(t *testing.T) {
	certs := testlib.NewCerts(t)
	other := testlib.NewCerts(t)
	tlsOnly := Files{Cert: certs.ServerCert, Key: certs.ServerKey}
	mtls := Files{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA}
	client := Files{Cert: certs.ClientCert, Key: certs.ClientKey, CA: certs.CA}

	tests := []struct {
		name       string
		server     Files
		client     Files
		serverName string
		tweak      func(*tls.Config)
		ok         bool
		peerCerts  int
	}{
		{name: "TLS", server: tlsOnly, client: Files{CA: certs.CA}, serverName: "localhost", ok: true},
		{name: "TLS by IP", server: tlsOnly, client: Files{CA: certs.CA}, ok: true},
		{name: "mTLS", server: mtls, client: client, serverName: "localhost", ok: true, peerCerts: 1},
		{name: "mTLS refuses a client without certificate", server: mtls, client: Files{CA: certs.CA}},
		{
			name: "mTLS refuses a client certificate from another CA", server: mtls,
			client: Files{Cert: other.ClientCert, Key: other.ClientKey, CA: certs.CA},
		},
		{
			name: "mTLS refuses a server certificate used as client certificate", server: mtls,
			client: Files{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA},
		},
		{name: "client refuses a server from another CA", server: tlsOnly, client: Files{CA: other.CA}},
		{name: "client refuses a wrong server name", server: tlsOnly, client: Files{CA: certs.CA}, serverName: "mail.example.org"},
		{
			name: "TLS 1.1 refused", server: tlsOnly, client: Files{CA: certs.CA},
			tweak: func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 },
		},
		{
			name: "TLS 1.2 accepted", server: mtls, client: client, ok: true, peerCerts: 1,
			tweak: func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli := mustClient(t, tt.client, tt.serverName)
			if tt.tweak != nil {
				tt.tweak(cli)
			}
			r := handshake(t, mustServer(t, tt.server), cli)
			if tt.ok {
				if r.serverErr != nil || r.clientErr != nil {
					t.Fatalf("handshake: server %v, client %v; want success", r.serverErr, r.clientErr)
				}
				if r.state.Version < tls.VersionTLS12 {
					t.Errorf("negotiated version %x, want at least TLS 1.2", r.state.Version)
				}
				if r.peerCerts != tt.peerCerts {
					t.Errorf("server saw %d client certificates, want %d", r.peerCerts, tt.peerCerts)
				}
				return
			}
			if r.serverErr == nil || r.clientErr == nil {
				t.Errorf("handshake: server %v, client %v; want both to fail", r.serverErr, r.clientErr)
			}
		})
	}
}

func TestConfigsOff(t *testing.T) {
	if cfg, err := ServerConfig(Files{}); cfg != nil || err != nil {
		t.Errorf("ServerConfig(Files{}) = %v, %v, want nil, nil", cfg, err)
	}
	if cfg, err := ClientConfig(Files{}, "localhost"); cfg != nil || err != nil {
		t.Errorf("ClientConfig(Files{}) = %v, %v, want nil, nil", cfg, err)
	}
}

func TestConfigErrors(t *testing.T) {
	certs := testlib.NewCerts(t)
	missing := certs.Dir + "/missing.pem"
	garbage := certs.Dir + "/garbage.pem"
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		server bool
		f      Files
		want   string // the file the error must name
	}{
		{"missing cert", true, Files{Cert: missing, Key: certs.ServerKey}, missing},
		{"missing key", true, Files{Cert: certs.ServerCert, Key: missing}, missing},
		{"key without cert", true, Files{Key: certs.ServerKey}, certs.ServerKey},
		{"cert without key", true, Files{Cert: certs.ServerCert}, certs.ServerCert},
		{"CA without cert", true, Files{CA: certs.CA}, certs.CA},
		{"mismatched key", true, Files{Cert: certs.ServerCert, Key: certs.ClientKey}, certs.ClientKey},
		{"missing CA", true, Files{Cert: certs.ServerCert, Key: certs.ServerKey, CA: missing}, missing},
		{"garbage CA", true, Files{Cert: certs.ServerCert, Key: certs.ServerKey, CA: garbage}, garbage},
		{"client missing CA", false, Files{CA: missing}, missing},
		{"client garbage cert", false, Files{Cert: garbage, Key: certs.ClientKey}, garbage},
		{"client cert without key", false, Files{Cert: certs.ClientCert}, certs.ClientCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.server {
				_, err = ServerConfig(tt.f)
			} else {
				_, err = ClientConfig(tt.f, "")
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func serverSerial(t *testing.T, srv *tls.Config, ca string) *big.Int {
	t.Helper()
	r := handshake(t, srv, mustClient(t, Files{CA: ca}, "localhost"))
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	return r.state.PeerCertificates[0].SerialNumber
}

func leafSerial(t *testing.T, certFile string) *big.Int {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, strings.TrimSuffix(certFile, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber
}

func TestReload(t *testing.T) {
	certs := testlib.NewCerts(t)
	var mu sync.Mutex
	var reloadErrs []error
	srv := mustServer(t, Files{Cert: certs.ServerCert, Key: certs.ServerKey},
		ReloadInterval(0),
		OnReloadError(func(err error) {
			mu.Lock()
			defer mu.Unlock()
			reloadErrs = append(reloadErrs, err)
		}))

	first := leafSerial(t, certs.ServerCert)
	if got := serverSerial(t, srv, certs.CA); got.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want %v", got, first)
	}

	// Renew: new files in place, as an ACME client does.
	renewedCert, renewedKey := certs.IssueServer(t, "renewed", "localhost", "127.0.0.1")
	copyFile(t, renewedKey, certs.ServerKey)
	copyFile(t, renewedCert, certs.ServerCert)
	second := leafSerial(t, renewedCert)
	if got := serverSerial(t, srv, certs.CA); got.Cmp(second) != 0 {
		t.Fatalf("after renewal served serial %v, want %v", got, second)
	}

	// A broken renewal keeps the last good pair and is reported.
	if err := os.WriteFile(certs.ServerCert, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serverSerial(t, srv, certs.CA); got.Cmp(second) != 0 {
		t.Fatalf("after a broken renewal served serial %v, want %v", got, second)
	}
	mu.Lock()
	n := len(reloadErrs)
	var msg string
	if n > 0 {
		msg = reloadErrs[0].Error()
	}
	mu.Unlock()
	if n == 0 || !strings.Contains(msg, certs.ServerCert) {
		t.Errorf("reload errors = %d (%q), want some naming %s", n, msg, certs.ServerCert)
	}
}

func TestReloadInterval(t *testing.T) {
	certs := testlib.NewCerts(t)
	srv := mustServer(t, Files{Cert: certs.ServerCert, Key: certs.ServerKey}, ReloadInterval(time.Hour))
	first := leafSerial(t, certs.ServerCert)
	renewedCert, renewedKey := certs.IssueServer(t, "renewed", "localhost")
	copyFile(t, renewedKey, certs.ServerKey)
	copyFile(t, renewedCert, certs.ServerCert)
	if got := serverSerial(t, srv, certs.CA); got.Cmp(first) != 0 {
		t.Errorf("within the interval served serial %v, want the first %v", got, first)
	}
}

func TestClientCertificateReload(t *testing.T) {
	certs := testlib.NewCerts(t)
	srv := mustServer(t, Files{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA})
	cli, err := ClientConfig(Files{Cert: certs.ClientCert, Key: certs.ClientKey, CA: certs.CA}, "localhost", ReloadInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	srv.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
		seen = append(seen, chains[0][0].Subject.CommonName)
		return nil
	}
	if r := handshake(t, srv, cli); r.clientErr != nil {
		t.Fatal(r.clientErr)
	}
	cert, key := certs.IssueClient(t, "client2", "second client")
	copyFile(t, key, certs.ClientKey)
	copyFile(t, cert, certs.ClientCert)
	if r := handshake(t, srv, cli); r.clientErr != nil {
		t.Fatal(r.clientErr)
	}
	if len(seen) != 2 || seen[1] != "second client" {
		t.Errorf("server saw client certificates %q, want the renewed one second", seen)
	}
}
