package tlsconf

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// keyPair serves a certificate and key from files and picks up new ones.
//
// It compares file contents rather than modification times: certbot swaps
// symlinks, copies keep old times, and two writes within a timestamp tick
// look alike. Reading two small files every interval costs nothing.
type keyPair struct {
	certFile, keyFile string
	opts              options

	mu      sync.Mutex // protects the fields below
	cert    *tls.Certificate
	certPEM []byte // contents cert was built from
	keyPEM  []byte
	checked time.Time // last time the files were read
}

func newKeyPair(certFile, keyFile string, opts options) (*keyPair, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("tlsconf: cert_file and key_file must be set together (cert_file %q, key_file %q)", certFile, keyFile)
	}
	kp := &keyPair{certFile: certFile, keyFile: keyFile, opts: opts}
	certPEM, keyPEM, err := kp.read()
	if err != nil {
		return nil, err
	}
	if err := kp.build(certPEM, keyPEM); err != nil {
		return nil, err
	}
	kp.checked = time.Now()
	return kp, nil
}

// get returns the current certificate, first reloading it when the interval
// has passed and the files changed.
func (kp *keyPair) get() *tls.Certificate {
	kp.mu.Lock()
	var err error
	if time.Since(kp.checked) >= kp.opts.interval {
		kp.checked = time.Now()
		err = kp.reloadLocked()
	}
	cert := kp.cert
	kp.mu.Unlock()
	if err != nil && kp.opts.onError != nil {
		kp.opts.onError(err)
	}
	return cert
}

// reloadLocked rebuilds the certificate if either file changed. On error the
// previous certificate stays; kp.mu must be held.
func (kp *keyPair) reloadLocked() error {
	certPEM, keyPEM, err := kp.read()
	if err != nil {
		return err
	}
	if bytes.Equal(certPEM, kp.certPEM) && bytes.Equal(keyPEM, kp.keyPEM) {
		return nil
	}
	return kp.build(certPEM, keyPEM)
}

func (kp *keyPair) read() (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(kp.certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: read certificate: %w", err)
	}
	keyPEM, err = os.ReadFile(kp.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: read key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// build parses the pair and makes it current.
func (kp *keyPair) build(certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("tlsconf: load certificate %s with key %s: %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert, kp.certPEM, kp.keyPEM = &cert, certPEM, keyPEM
	return nil
}
