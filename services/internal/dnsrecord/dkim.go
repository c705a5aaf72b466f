package dnsrecord

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrKeyRevoked is returned by DKIMKey.PublicKey for a record with an empty
// p= tag: the selector's key has been withdrawn (RFC 6376 §3.6.1).
var ErrKeyRevoked = errors.New("dkim key revoked: the record has an empty p= tag")

// DKIMKey is a DKIM public key record, published as a TXT record at
// SELECTOR._domainkey.DOMAIN (RFC 6376 §3.6.1, §3.6.2.2; Ed25519 keys from
// RFC 8463). go-msgauth's dkim package parses these records only inside its
// verifier, so this is the exported equivalent, following the same rules
// (RSA keys of either encoding, at least 1024 bits as RFC 8301 §3.2
// requires).
type DKIMKey struct {
	// KeyType is the k= tag in lower case: "rsa" (the default) or "ed25519".
	KeyType string
	// HashAlgorithms is h=, the hash algorithms allowed; empty means all.
	HashAlgorithms []string
	// Services is s=, the service types; empty means all ("*").
	Services []string
	// Flags is t=: "y" is testing mode, "s" forbids subdomains in i=.
	Flags []string
	// Notes is n=, for people.
	Notes string
	// Revoked is set when p= is empty.
	Revoked bool
	// Tags are the tags in record order.
	Tags []Tag

	key crypto.PublicKey
}

// ParseDKIMKey parses a DKIM key record, decoding the public key so that
// an accepted record always has a usable key or is revoked.
func ParseDKIMKey(txt string) (*DKIMKey, error) {
	tags, err := parseTagList("dkim", txt)
	if err != nil {
		return nil, err
	}
	k := &DKIMKey{KeyType: "rsa", Tags: tags}
	var p *Tag
	for i, t := range tags {
		switch t.Name {
		case "v":
			// §3.6.1: optional, but if present first and exactly "DKIM1".
			if i != 0 {
				return nil, &Error{Record: "dkim", Term: "v", Pos: t.Pos, Msg: "v=DKIM1 must be the first tag"}
			}
			if t.Value != "DKIM1" {
				return nil, &Error{Record: "dkim", Term: "v", Pos: t.Pos,
					Msg: fmt.Sprintf("version %q is unknown: write v=DKIM1", t.Value)}
			}
		case "k":
			k.KeyType = strings.ToLower(t.Value)
			if k.KeyType != "rsa" && k.KeyType != "ed25519" {
				return nil, &Error{Record: "dkim", Term: "k", Pos: t.Pos,
					Msg: fmt.Sprintf("key type %q is unknown: use rsa or ed25519", t.Value)}
			}
		case "h":
			k.HashAlgorithms = colonList(t.Value)
		case "s":
			k.Services = colonList(t.Value)
		case "t":
			k.Flags = colonList(t.Value)
		case "n":
			k.Notes = t.Value
		case "p":
			p = &tags[i]
		}
	}
	if p == nil {
		return nil, &Error{Record: "dkim", Pos: -1, Msg: "the public key tag p= is missing"}
	}
	// §3.6.1: base64 with folding white space allowed inside.
	b64 := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, p.Value)
	if b64 == "" {
		k.Revoked = true
		return k, nil
	}
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, &Error{Record: "dkim", Term: "p", Pos: p.Pos, Msg: "the public key is not valid base64", Err: err}
	}
	k.key, err = decodeDKIMKey(k.KeyType, der)
	if err != nil {
		return nil, &Error{Record: "dkim", Term: "p", Pos: p.Pos, Msg: fmt.Sprintf("not a valid %s public key", k.KeyType), Err: err}
	}
	return k, nil
}

func decodeDKIMKey(keyType string, der []byte) (crypto.PublicKey, error) {
	if keyType == "ed25519" {
		// RFC 8463 §4.2: the bare 32-byte key, not SubjectPublicKeyInfo.
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%d bytes, want %d (the raw key, not SubjectPublicKeyInfo)", len(der), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(der), nil
	}
	// RFC 6376 §3.6.1 says RSAPublicKey but means SubjectPublicKeyInfo,
	// which is what everyone publishes (erratum 3017); accept both.
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		rsaPub, err2 := x509.ParsePKCS1PublicKey(der)
		if err2 != nil {
			return nil, err
		}
		pub = rsaPub
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not RSA: set k= to its type", pub)
	}
	if bits := rsaPub.N.BitLen(); bits < 1024 {
		return nil, fmt.Errorf("%d bits: receivers ignore RSA keys shorter than 1024 bits (RFC 8301 §3.2)", bits)
	}
	return rsaPub, nil
}

func colonList(s string) []string {
	var l []string
	for _, v := range strings.Split(s, ":") {
		if v = strings.Trim(v, " \t\r\n"); v != "" {
			l = append(l, v)
		}
	}
	return l
}

// PublicKey returns the key: an *rsa.PublicKey or an ed25519.PublicKey,
// or ErrKeyRevoked.
func (k *DKIMKey) PublicKey() (crypto.PublicKey, error) {
	if k.Revoked {
		return nil, ErrKeyRevoked
	}
	return k.key, nil
}

// Testing reports whether the t=y flag is set: receivers treat signatures
// as unsigned mail (RFC 6376 §3.6.1).
func (k *DKIMKey) Testing() bool {
	for _, f := range k.Flags {
		if f == "y" {
			return true
		}
	}
	return false
}

// ForEmail reports whether s= allows the key for email (RFC 6376 §3.6.1:
// "*" or "email"; absent means all).
func (k *DKIMKey) ForEmail() bool {
	if len(k.Services) == 0 {
		return true
	}
	for _, s := range k.Services {
		if s == "*" || strings.EqualFold(s, "email") {
			return true
		}
	}
	return false
}
