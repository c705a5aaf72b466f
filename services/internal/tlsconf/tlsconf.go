// Package tlsconf turns certificate file settings into *tls.Config values for
// the services' listeners (SMTP, IMAP, POP3, gRPC) and their gRPC clients.
//
// Server certificates are reloaded from disk when the files change, so a
// certificate renewed by an ACME client (certbot, lego) is used from the next
// handshake on without a restart, the way dovecot and postfix pick it up on
// reload. When a CA file is set on the server side, clients must present a
// certificate signed by it (mutual TLS, used between the services).
//
// Everything is at least TLS 1.2 (RFC 8996 deprecates 1.0 and 1.1; RFC 8314
// section 4.1 asks mail clients and servers for 1.2 or later).
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// Files are the PEM files of one side of a TLS connection, as they appear in
// a service's configuration table.
type Files struct {
	Cert string `toml:"cert_file" help:"PEM certificate chain; empty turns TLS off"`
	Key  string `toml:"key_file" help:"PEM private key of cert_file"`
	CA   string `toml:"ca_file" help:"PEM CA certificates: clients must present a certificate signed by them (server), or the server's must be (client)"`
}

// DefaultReloadInterval is how often, at most, a handshake checks whether the
// certificate files changed.
const DefaultReloadInterval = 10 * time.Second

// Option tunes ServerConfig and ClientConfig.
type Option func(*options)

type options struct {
	interval time.Duration
	onError  func(error)
}

// ReloadInterval sets how often, at most, a handshake re-reads the key pair
// (DefaultReloadInterval unless set; 0 re-reads on every handshake, for
// tests).
func ReloadInterval(d time.Duration) Option {
	return func(o *options) { o.interval = d }
}

// OnReloadError sets a function told about a changed key pair that could not
// be loaded, typically to log it. The old pair stays in use and the files are
// tried again at the next interval: a half-written renewal must not take TLS
// down. It is called from a handshake, so it must not block.
func OnReloadError(f func(error)) Option {
	return func(o *options) { o.onError = f }
}

func newOptions(opts []Option) options {
	o := options{interval: DefaultReloadInterval}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// ServerConfig returns nil, nil when f.Cert is empty (TLS off). Otherwise it
// returns a config serving the key pair in f.Cert and f.Key, reloaded as they
// change, and requiring client certificates signed by f.CA when f.CA is set.
// A CA without a certificate is an error rather than a silent plaintext
// listener.
func ServerConfig(f Files, opts ...Option) (*tls.Config, error) {
	if f.Cert == "" {
		if f.CA != "" {
			return nil, fmt.Errorf("tlsconf: ca_file %s is set but cert_file is not: client certificates need a TLS listener", f.CA)
		}
		if f.Key != "" {
			return nil, fmt.Errorf("tlsconf: key_file %s is set but cert_file is not", f.Key)
		}
		return nil, nil
	}
	o := newOptions(opts)
	kp, err := newKeyPair(f.Cert, f.Key, o)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get(), nil
		},
	}
	if f.CA != "" {
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig returns nil, nil when all fields of f are empty (plaintext).
// Otherwise f.CA, when set, replaces the system roots for verifying the
// server; f.Cert and f.Key, when set, are the client certificate (reloaded
// like the server's); serverName, when not empty, is the name the server's
// certificate must carry (else the dialled host).
func ClientConfig(f Files, serverName string, opts ...Option) (*tls.Config, error) {
	if f == (Files{}) {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
	}
	if f.CA != "" {
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" || f.Key != "" {
		kp, err := newKeyPair(f.Cert, f.Key, newOptions(opts))
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get(), nil
		}
	}
	return cfg, nil
}

// loadPool reads the CA certificates in file.
func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsconf: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
