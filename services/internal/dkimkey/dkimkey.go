// Package dkimkey manages DKIM private keys (RFC 6376) in the layout that
// `mailctl dkim keygen` writes and the MTA's signer reads:
//
//	keys/<domain>/<selector>.key
//
// where <domain> is the canonical (lower-case A-label) signing domain, the
// d= tag, and <selector> the s= tag (RFC 6376 §3.1). Keys are PEM files: the
// PKCS#8 "PRIVATE KEY" form this package writes, and for keys brought over
// from opendkim, the PKCS#1 "RSA PRIVATE KEY" form opendkim-genkey writes.
// Two algorithms are supported: RSA (rsa-sha256, RFC 6376 §3.3.1, with the
// key sizes of RFC 8301) and Ed25519 (ed25519-sha256, RFC 8463).
//
// Rotation (RFC 6376 §3.1 and M3AAWG's DKIM key rotation practices) is a new
// selector beside the old one: publish the new key's record, switch the
// signer to it, keep the old record published until mail signed with it has
// been delivered and verified (about a week), then delete the old key. A
// date-based DefaultSelector makes "a new key" mean "a new name".
package dkimkey

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/postcove/postcove/services/internal/address"
)

// Type is a kind of key to generate.
type Type string

// The key types Generate makes.
const (
	// RSA2048 is the RSA size RFC 8301 §3.2 recommends: every verifier
	// understands it, and its record still fits one TXT record.
	RSA2048 Type = "rsa2048"
	// Ed25519 (RFC 8463) is short, but not yet verified everywhere: sign
	// with it beside an RSA key, not instead of one.
	Ed25519 Type = "ed25519"
)

const (
	// minRSABits is the smallest RSA key Load accepts: verifiers must
	// refuse smaller ones (RFC 8301 §3.2).
	minRSABits = 1024
	// maxTXTString is the most bytes one character-string of a TXT record
	// holds (RFC 1035 §3.3).
	maxTXTString = 255
	// maxDomainName is the longest domain name in octets, without the
	// trailing dot (RFC 1035 §2.3.4, RFC 5321 §4.5.3.1.2).
	maxDomainName = 253
	keySuffix     = ".key"
)

// ErrExists is returned by Write when a key is already at the path.
var ErrExists = errors.New("a key already exists")

// ParseType returns the Type named s ("rsa2048" or "ed25519").
func ParseType(s string) (Type, error) {
	switch t := Type(s); t {
	case RSA2048, Ed25519:
		return t, nil
	}
	return "", fmt.Errorf("unknown key type %q: use %s or %s", s, RSA2048, Ed25519)
}

// Generate returns a new private key of type t.
func Generate(t Type) (crypto.Signer, error) {
	switch t {
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case Ed25519:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	}
	return nil, fmt.Errorf("generate: unknown key type %q: use %s or %s", t, RSA2048, Ed25519)
}

// ParseSelector checks a selector and returns its canonical, lower-case
// form: one or more DNS labels of letters, digits and inner hyphens, joined
// by dots (the sub-domain of RFC 6376 §3.1 and RFC 5321 §4.1.2). Nothing else
// is accepted, so a selector can never name a path outside its directory.
func ParseSelector(s string) (string, error) {
	sel := strings.ToLower(s)
	if sel == "" {
		return "", errors.New("empty DKIM selector")
	}
	for label := range strings.SplitSeq(sel, ".") {
		if reason := labelReason(label); reason != "" {
			return "", fmt.Errorf("invalid DKIM selector %q: %s", s, reason)
		}
	}
	return sel, nil
}

// labelReason returns why label cannot be a selector label, or "".
func labelReason(label string) string {
	switch {
	case label == "":
		return "empty label (a leading, trailing or doubled dot)"
	case len(label) > 63:
		return "a label is longer than 63 characters"
	case label[0] == '-' || label[len(label)-1] == '-':
		return "a label starts or ends with a hyphen"
	}
	for _, c := range label {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Sprintf("%q is not allowed: use letters, digits, hyphens and dots", c)
		}
	}
	return ""
}

// canonical checks domain and selector and returns their canonical forms.
func canonical(domain, selector string) (string, string, error) {
	d, err := address.ParseDomain(domain)
	if err != nil {
		return "", "", err
	}
	sel, err := ParseSelector(selector)
	if err != nil {
		return "", "", err
	}
	if name := RecordName(d, sel); len(name) > maxDomainName {
		return "", "", fmt.Errorf("DKIM record name %s is longer than %d characters: use a shorter selector", name, maxDomainName)
	}
	return d, sel, nil
}

// RecordName returns the DNS name of the key record of a canonical domain
// and selector (RFC 6376 §3.6.2.1), without the trailing dot.
func RecordName(domain, selector string) string {
	return selector + "._domainkey." + domain
}

// Path returns keysDir/<domain>/<selector>.key for the canonical forms of
// domain and selector, after checking both (see ParseSelector and
// address.ParseDomain).
func Path(keysDir, domain, selector string) (string, error) {
	d, sel, err := canonical(domain, selector)
	if err != nil {
		return "", err
	}
	return filepath.Join(keysDir, d, sel+keySuffix), nil
}

// Write stores key at Path(keysDir, domain, selector) as a PKCS#8 PEM file
// readable by its owner only (0600, in directories of 0700), and returns the
// path. It refuses to replace an existing key (ErrExists) unless force is
// set; the error then wraps ErrExists and the path is returned too. The
// file appears whole or not at all: it is written to a temporary file,
// synced, then linked (refusing to replace) or renamed (force) into place.
func Write(keysDir, domain, selector string, key crypto.Signer, force bool) (string, error) {
	path, err := Path(keysDir, domain, selector)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if !force {
		// Checked early for a clear error; the link below is what makes
		// the refusal race-free.
		if _, err := os.Lstat(path); err == nil {
			return path, fmt.Errorf("%s: %w", path, ErrExists)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := writeTemp(dir, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	if force {
		err = os.Rename(tmp, path)
	} else if err = os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return path, fmt.Errorf("%s: %w", path, ErrExists)
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// writeTemp writes data to a new 0600 file in dir, synced, and returns its
// name.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*"+keySuffix+"~")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load reads a private key written by Write (PKCS#8, RSA or Ed25519) or by
// opendkim-genkey (PKCS#1 RSA).
func Load(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read DKIM key: %w", err)
	}
	key, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("read DKIM key %s: %w", path, err)
	}
	return key, nil
}

func parse(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block: want a PEM \"PRIVATE KEY\" or \"RSA PRIVATE KEY\"")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		if _, encrypted := block.Headers["DEK-Info"]; encrypted {
			return nil, errors.New("the key is encrypted: store it without a passphrase")
		}
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\"", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch key := key.(type) {
	case *rsa.PrivateKey:
		if bits := key.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits: verifiers refuse keys under %d bits (RFC 8301)", bits, minRSABits)
		}
		return key, nil
	case ed25519.PrivateKey:
		return key, nil
	}
	return nil, fmt.Errorf("%T keys cannot sign DKIM: use RSA or Ed25519", key)
}

// Key is one private key found by List.
type Key struct {
	Domain   string // canonical
	Selector string
	Path     string
	Signer   crypto.Signer
}

// List returns the keys of domain under keysDir, sorted by selector: every
// <selector>.key file in keysDir/<domain>/. A domain without a directory
// has no keys (and no error). A file that does not load, or whose name is
// not a valid selector, is an error naming it: silently skipping it would
// leave the domain unsigned, or published without its key.
func List(keysDir, domain string) ([]Key, error) {
	d, err := address.ParseDomain(domain)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(keysDir, d)
	entries, err := os.ReadDir(dir) // sorted by file name
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list DKIM keys: %w", err)
	}
	var keys []Key
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), keySuffix)
		if !ok || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if sel, err := ParseSelector(name); err != nil {
			return nil, fmt.Errorf("DKIM key %s: the file name must be SELECTOR%s: %w", path, keySuffix, err)
		} else if sel != name {
			return nil, fmt.Errorf("DKIM key %s: the file name must be lower-case (rename it to %s%s)", path, sel, keySuffix)
		}
		signer, err := Load(path)
		if err != nil {
			return nil, err
		}
		keys = append(keys, Key{Domain: d, Selector: name, Path: path, Signer: signer})
	}
	// ReadDir sorts by file name, which is not the selector order when
	// one selector is a prefix of another ("a.key" sorts after "a-b.key").
	slices.SortFunc(keys, func(a, b Key) int { return strings.Compare(a.Selector, b.Selector) })
	return keys, nil
}

// Record returns the DKIM key record (RFC 6376 §3.6.1) publishing pub:
// "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" for RSA, or
// "v=DKIM1; k=ed25519; p=<base64 of the 32-byte key>" (RFC 8463 §4.2).
func Record(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("DKIM record: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("DKIM record: %T keys are not supported: use RSA or Ed25519", pub)
}

// SplitTXT cuts s into the character-strings of a TXT record, 255 bytes at
// most each (RFC 1035 §3.3.14); verifiers join them again (RFC 6376
// §3.6.2.2). An empty s is one empty string.
func SplitTXT(s string) []string {
	parts := []string{}
	for len(s) > maxTXTString {
		parts = append(parts, s[:maxTXTString])
		s = s[maxTXTString:]
	}
	return append(parts, s)
}

// DefaultSelector returns the selector for a key made at now: "s" and the
// year and month in UTC ("s202611"), so that each rotation gets a new name
// and the names tell the keys' age.
func DefaultSelector(now time.Time) string {
	return "s" + now.UTC().Format("200601")
}
