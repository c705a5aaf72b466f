package password

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"hash"
)

// plainHash is a {PLAIN}/{CLEAR}/{CLEARTEXT} password.
type plainHash []byte

// verify compares SHA-256 digests of both sides rather than the passwords:
// subtle.ConstantTimeCompare returns early on a length mismatch, which would
// tell an attacker the stored password's length.
func (p plainHash) verify(plain []byte) bool {
	want := sha256.Sum256(p)
	got := sha256.Sum256(plain)
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// digestHash is an unsalted digest: {SHA}, {SHA256}, {SHA512}, {PLAIN-MD5}...
type digestHash struct {
	newHash func() hash.Hash
	sum     []byte // decodeBody checked it is the digest's size
}

func (d *digestHash) verify(plain []byte) bool {
	h := d.newHash()
	h.Write(plain)
	return subtle.ConstantTimeCompare(h.Sum(nil), d.sum) == 1
}

// saltedHash is dovecot's salted digest: {SSHA}, {SSHA256}, {SSHA512}, {SMD5}.
// The decoded value is digest(password || salt) || salt; dovecot writes a
// 4-byte salt but reads a salt of any length (other tools write 8 or 16).
type saltedHash struct {
	newHash func() hash.Hash
	sum     []byte
	salt    []byte
}

func newSaltedHash(s scheme, raw []byte) (*saltedHash, error) {
	// dovecot's ssha_verify() refuses a value with no salt at all.
	if len(raw) <= s.size {
		return nil, fmt.Errorf("%w: {%s}: %d bytes, want more than the %d-byte digest", ErrMalformed, s.name, len(raw), s.size)
	}
	return &saltedHash{newHash: s.newHash, sum: raw[:s.size], salt: raw[s.size:]}, nil
}

func (d *saltedHash) verify(plain []byte) bool {
	h := d.newHash()
	h.Write(plain)
	h.Write(d.salt)
	return subtle.ConstantTimeCompare(h.Sum(nil), d.sum) == 1
}
