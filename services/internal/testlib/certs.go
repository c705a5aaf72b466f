package testlib

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are PEM files for TLS and mTLS tests: a CA, a server certificate for
// localhost, 127.0.0.1 and ::1, and a client certificate, all signed by the CA.
type Certs struct {
	Dir        string // holds every file below
	CA         string // CA certificate: the ca_file of both sides
	CAKey      string // CA private key, used by Issue*
	ServerCert string
	ServerKey  string
	ClientCert string
	ClientKey  string
}

// NewCerts generates a fresh CA, server and client certificate (ECDSA P-256)
// in a TempDir. Each call makes a different CA, so a second NewCerts is the
// "wrong CA" of a negative test.
func NewCerts(t testing.TB) Certs {
	t.Helper()
	dir := TempDir(t)
	c := Certs{
		Dir:   dir,
		CA:    filepath.Join(dir, "ca.crt"),
		CAKey: filepath.Join(dir, "ca.key"),
	}
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "postcove test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	writePEM(t, c.CA, "CERTIFICATE", der, 0o644)
	writeKey(t, c.CAKey, key)
	c.ServerCert, c.ServerKey = c.IssueServer(t, "server", "localhost", "127.0.0.1", "::1")
	c.ClientCert, c.ClientKey = c.IssueClient(t, "client", "postcove test client")
	return c
}

// IssueServer writes NAME.crt and NAME.key in c.Dir: a server certificate
// signed by c's CA for hosts (DNS names or IP addresses). Use it for a second
// server identity or a renewed certificate.
func (c Certs) IssueServer(t testing.TB, name string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return c.issue(t, name, tmpl)
}

// IssueClient writes NAME.crt and NAME.key in c.Dir: a client certificate
// signed by c's CA with the common name cn.
func (c Certs) IssueClient(t testing.TB, name, cn string) (certFile, keyFile string) {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return c.issue(t, name, tmpl)
}

func (c Certs) issue(t testing.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(c.CA, c.CAKey)
	if err != nil {
		t.Fatalf("load test CA: %v", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(7 * 24 * time.Hour)
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", name, err)
	}
	certFile = filepath.Join(c.Dir, name+".crt")
	keyFile = filepath.Join(c.Dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writeKey(t, keyFile, key)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return key
}

// serial is a random 128-bit serial number, as RFC 5280 section 4.1.2.2
// wants them unique per CA.
func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatalf("generate serial number: %v", err)
	}
	return n
}

func writeKey(t testing.TB, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	writePEM(t, path, "PRIVATE KEY", der, 0o600)
}

func writePEM(t testing.TB, path, typ string, der []byte, perm os.FileMode) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
