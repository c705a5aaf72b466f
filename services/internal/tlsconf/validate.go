package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"os"

	"github.com/postcove/postcove/services/internal/config"
)

// Validate records in errs what is wrong with f, under the keys
// keyPrefix.cert_file, keyPrefix.key_file and keyPrefix.ca_file: a
// certificate without a key or the reverse, files that cannot be read, a key
// that does not match its certificate, a CA file without certificates.
// Call it from the service's Validate so that a bad path fails at start, in
// the same list as every other bad setting.
func (f Files) Validate(errs *config.Errors, keyPrefix string) {
	certKey := config.Join(keyPrefix, "cert_file")
	keyKey := config.Join(keyPrefix, "key_file")
	caKey := config.Join(keyPrefix, "ca_file")

	switch {
	case f.Cert != "" && f.Key == "":
		errs.Add(keyKey, "required when %s is set", certKey)
	case f.Cert == "" && f.Key != "":
		errs.Add(certKey, "required when %s is set", keyKey)
	}
	var certPEM, keyPEM []byte
	if f.Cert != "" {
		certPEM = readFile(errs, certKey, f.Cert)
	}
	if f.Key != "" {
		keyPEM = readFile(errs, keyKey, f.Key)
	}
	if certPEM != nil && keyPEM != nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			errs.Add(keyKey, "%s and %s are not a usable key pair: %v", f.Cert, f.Key, err)
		}
	}
	if f.CA != "" {
		if data := readFile(errs, caKey, f.CA); data != nil && !x509.NewCertPool().AppendCertsFromPEM(data) {
			errs.Add(caKey, "%s holds no PEM certificate", f.CA)
		}
	}
}

// readFile returns the file's contents, or nil after recording why it could
// not be read.
func readFile(errs *config.Errors, key, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		errs.Add(key, "%v", err)
		return nil
	}
	return data
}
