package testlib

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

func TestNewCerts(t *testing.T) {
	c := NewCerts(t)
	caPEM, err := os.ReadFile(c.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", c.CA)
	}

	tests := []struct {
		name      string
		cert, key string
		host      string
		usage     x509.ExtKeyUsage
	}{
		{"server localhost", c.ServerCert, c.ServerKey, "localhost", x509.ExtKeyUsageServerAuth},
		{"server IPv4", c.ServerCert, c.ServerKey, "127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"server IPv6", c.ServerCert, c.ServerKey, "::1", x509.ExtKeyUsageServerAuth},
		{"client", c.ClientCert, c.ClientKey, "", x509.ExtKeyUsageClientAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(tt.cert, tt.key)
			if err != nil {
				t.Fatalf("LoadX509KeyPair(%s, %s) = %v", tt.cert, tt.key, err)
			}
			_, err = pair.Leaf.Verify(x509.VerifyOptions{
				DNSName:   tt.host,
				Roots:     roots,
				KeyUsages: []x509.ExtKeyUsage{tt.usage},
			})
			if err != nil {
				t.Errorf("Verify(%q) = %v", tt.host, err)
			}
		})
	}

	info, err := os.Stat(c.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %v, want 0600", c.ServerKey, perm)
	}
}

func TestNewCertsDistinctCAs(t *testing.T) {
	a, b := NewCerts(t), NewCerts(t)
	bPEM, err := os.ReadFile(b.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bPEM)
	pair, err := tls.LoadX509KeyPair(a.ServerCert, a.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots}); err == nil {
		t.Error("a server certificate verified against another NewCerts' CA")
	}
}

func TestIssueServer(t *testing.T) {
	c := NewCerts(t)
	certFile, keyFile := c.IssueServer(t, "mx", "mx.example.org", "192.0.2.1")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("mx.example.org"); err != nil {
		t.Errorf("VerifyHostname(mx.example.org) = %v", err)
	}
	if err := pair.Leaf.VerifyHostname("192.0.2.1"); err != nil {
		t.Errorf("VerifyHostname(192.0.2.1) = %v", err)
	}
}
