package password

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// kind says how the decoded part after "{SCHEME}" is interpreted.
type kind uint8

const (
	kindPlain  kind = iota // the password itself
	kindDigest             // digest(password), fixed length
	kindSalted             // digest(password || salt) || salt
	kindMD5                // dovecot's {MD5}: md5crypt, or a PLAIN-MD5 digest
	kindCrypt              // a crypt(3) string: $1$, $5$, $6$, $2y$...
	kindArgon2             // libsodium's $argon2i$ / $argon2id$ string
)

// encoding is how the part after "{SCHEME}" is stored, before decoding.
type encoding uint8

const (
	encNone   encoding = iota // stored as is
	encBase64                 // standard base64 with padding
	encHex                    // hexadecimal, either case
)

// scheme is one of dovecot's password schemes.
type scheme struct {
	name    string // canonical upper-case name, for error messages
	kind    kind
	defEnc  encoding         // encoding when the name has no suffix
	newHash func() hash.Hash // kindDigest, kindSalted
	size    int              // digest size in bytes (kindDigest, kindSalted)
}

// lookupScheme resolves the text between the braces: a scheme name,
// case-insensitive, optionally followed by ".B64", ".BASE64" or ".HEX"
// selecting the encoding, as dovecot's password_scheme_lookup() does. explicit
// reports whether such a suffix was present. An unknown suffix makes the whole
// scheme unknown, as in dovecot.
func lookupScheme(name string) (s scheme, enc encoding, explicit bool, err error) {
	base, suffix, explicit := strings.Cut(name, ".")
	s, ok := schemeByName(strings.ToUpper(base))
	if !ok {
		return scheme{}, 0, false, fmt.Errorf("%w: %s", ErrUnknownScheme, schemeLabel(name))
	}
	enc = s.defEnc
	if explicit {
		switch strings.ToUpper(suffix) {
		case "B64", "BASE64":
			enc = encBase64
		case "HEX":
			enc = encHex
		default:
			return scheme{}, 0, false, fmt.Errorf("%w: %s: unknown encoding", ErrUnknownScheme, schemeLabel(name))
		}
	}
	return s, enc, explicit, nil
}

// schemeLabel returns "{name}" for error messages when name looks like a
// scheme name. Anything else is withheld: a value that merely starts with "{"
// may be a cleartext password stored without a scheme.
func schemeLabel(name string) string {
	if len(name) == 0 || len(name) > 32 {
		return "{?}"
	}
	for _, c := range name {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "{?}"
		}
	}
	return "{" + name + "}"
}

// schemeByName is the table of supported schemes, keyed by dovecot's
// upper-case name. Default encodings and digest sizes are dovecot's (see its
// builtin_schemes[] in src/auth/password-scheme.c).
func schemeByName(name string) (scheme, bool) {
	switch name {
	case "PLAIN", "CLEAR", "CLEARTEXT":
		return scheme{name: name, kind: kindPlain}, true
	case "SHA", "SHA1":
		return scheme{name: name, kind: kindDigest, defEnc: encBase64, newHash: sha1.New, size: sha1.Size}, true
	case "SHA256":
		return scheme{name: name, kind: kindDigest, defEnc: encBase64, newHash: sha256.New, size: sha256.Size}, true
	case "SHA512":
		return scheme{name: name, kind: kindDigest, defEnc: encBase64, newHash: sha512.New, size: sha512.Size}, true
	case "PLAIN-MD5":
		return scheme{name: name, kind: kindDigest, defEnc: encHex, newHash: md5.New, size: md5.Size}, true
	case "LDAP-MD5":
		return scheme{name: name, kind: kindDigest, defEnc: encBase64, newHash: md5.New, size: md5.Size}, true
	case "SSHA":
		return scheme{name: name, kind: kindSalted, defEnc: encBase64, newHash: sha1.New, size: sha1.Size}, true
	case "SSHA256":
		return scheme{name: name, kind: kindSalted, defEnc: encBase64, newHash: sha256.New, size: sha256.Size}, true
	case "SSHA512":
		return scheme{name: name, kind: kindSalted, defEnc: encBase64, newHash: sha512.New, size: sha512.Size}, true
	case "SMD5":
		return scheme{name: name, kind: kindSalted, defEnc: encBase64, newHash: md5.New, size: md5.Size}, true
	case "MD5":
		return scheme{name: name, kind: kindMD5}, true
	case "CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT":
		return scheme{name: name, kind: kindCrypt}, true
	case "ARGON2I", "ARGON2ID":
		return scheme{name: name, kind: kindArgon2}, true
	}
	return scheme{}, false
}

// decodeBody decodes the part after "{SCHEME}" as dovecot's password_decode()
// does. For a fixed-size digest whose encoding was not given explicitly,
// dovecot guesses: hex if the length is exactly twice the digest size,
// otherwise base64 (and base64 again if that hex turns out invalid). A
// fixed-size digest must then decode to exactly its size.
//
// Errors say what is wrong but never include the input, which may be a
// cleartext password.
func decodeBody(body string, s scheme, enc encoding, explicit bool) ([]byte, error) {
	var raw []byte
	switch {
	case enc == encNone:
		raw = []byte(body)
	case !explicit && s.kind == kindDigest:
		var err error
		if len(body) == 2*s.size {
			raw, err = hex.DecodeString(body)
		}
		if raw == nil || err != nil {
			if raw, err = decodeBase64(body); err != nil {
				return nil, err
			}
		}
	case enc == encHex:
		var err error
		if raw, err = hex.DecodeString(body); err != nil {
			return nil, errors.New("bad hex encoding")
		}
	default:
		var err error
		if raw, err = decodeBase64(body); err != nil {
			return nil, err
		}
	}
	if s.kind == kindDigest && len(raw) != s.size {
		return nil, fmt.Errorf("digest is %d bytes, want %d", len(raw), s.size)
	}
	return raw, nil
}

// decodeBase64 decodes dovecot's base64: the standard alphabet with padding.
// dovecot's decoder skips whitespace, so this does too.
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("bad base64 encoding")
	}
	return raw, nil
}
