// Package password hashes and verifies the auth service's passwords.
//
// New passwords are hashed with Argon2id and stored in dovecot's notation,
// "{ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$salt$hash", so that dovecot
// itself (which reads it through libsodium) can verify what we write.
//
// Verify also accepts the schemes an operator finds in an existing dovecot or
// postfixadmin user table, so such a table can be imported as it is and each
// legacy hash is replaced on the user's next successful login (needsRehash):
//
//   - {ARGON2ID}, {ARGON2I}: libsodium's encoding of Argon2 (RFC 9106).
//   - {BLF-CRYPT}: bcrypt, $2a$, $2b$ and $2y$.
//   - {SHA512-CRYPT}, {SHA256-CRYPT}: Ulrich Drepper's SHA-crypt, $6$ and $5$,
//     with optional rounds=N, written here from the specification at
//     https://www.akkadia.org/drepper/SHA-crypt.txt.
//   - {MD5-CRYPT} (and dovecot's {MD5}): Poul-Henning Kamp's $1$ md5crypt.
//   - {CRYPT}: any of the crypt(3) strings above, chosen by their prefix, as
//     dovecot's crypt() call does.
//   - {SSHA512}, {SSHA256}, {SSHA}, {SMD5}: base64(digest(pw || salt) || salt).
//   - {SHA512}, {SHA256}, {SHA}/{SHA1}, {PLAIN-MD5}, {LDAP-MD5}: unsalted.
//   - {PLAIN}, {CLEAR}, {CLEARTEXT}.
//   - the ".B64"/".BASE64" and ".HEX" suffixes on any of them, which change
//     how the part after the braces is encoded (see encoding.go).
//   - strings without braces that carry a crypt prefix ($1$, $5$, $6$, $2y$,
//     $2b$, $2a$, $argon2id$, $argon2i$), as postfixadmin stores them.
//
// Scheme names and their encodings follow dovecot's "Password schemes"
// documentation (https://doc.dovecot.org/configuration_manual/authentication/password_schemes/)
// and its password-scheme.c. Every digest comparison is constant-time, and
// every cost parameter read from a stored hash is bounded before any work is
// done, so a hostile row in an imported table cannot make a login hang or
// exhaust memory beyond the limits documented on each scheme.
package password

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Errors Verify wraps when a stored hash cannot be used. A wrong password is
// not an error.
var (
	// ErrUnknownScheme: the stored hash names, or starts with, a scheme this
	// package does not implement (or has no scheme prefix at all).
	ErrUnknownScheme = errors.New("password: unknown scheme")
	// ErrMalformed: the scheme is known but the stored value does not parse,
	// or its cost parameters are outside the accepted bounds.
	ErrMalformed = errors.New("password: malformed hash")
)

const (
	// maxPasswordLen bounds the plaintext. SHA-crypt and md5crypt hash the
	// password several times per round, so their cost grows with its length
	// (a 1 MiB password at 5000 rounds is gigabytes of SHA-512); no real
	// password comes close to 1 KiB.
	maxPasswordLen = 1024
	// maxStoredLen bounds the stored value before it is decoded; the largest
	// hash we accept (argon2 with 1 KiB salt and key) is below 3 KiB.
	maxStoredLen = 8192
)

// Params are argon2id cost parameters.
type Params struct {
	Time      uint32 // passes over memory (t)
	MemoryKiB uint32 // memory in KiB (m)
	Threads   uint8  // lanes (p)
	SaltLen   uint32 // bytes of random salt
	KeyLen    uint32 // bytes of derived hash
}

// DefaultParams returns the parameters new hashes use: m=19456 KiB (19 MiB),
// t=2, p=1, a 16-byte salt and a 32-byte hash.
//
// These are OWASP's Password Storage Cheat Sheet recommendation for Argon2id.
// BenchmarkHashDefault measures 25-30 ms per hash (35 ms with the machine
// busy) on a 2-vCPU AMD EPYC VM: inside a budget of tens of milliseconds per
// login on a 2-core machine, while costing an attacker 19 MiB per guess.
// dovecot's own ARGON2ID default (m=65536, t=3) is five times that work. p=1 because libsodium
// (and so dovecot) only ever computes one lane and because extra lanes would
// only spread the same work over the cores other logins need.
func DefaultParams() Params {
	return Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Validate reports whether p can produce a hash that we, and libsodium, can
// read back: the same bounds parse enforces on stored argon2 hashes.
func (p Params) Validate() error {
	return checkArgon2Params(p.MemoryKiB, p.Time, uint32(p.Threads), p.SaltLen, p.KeyLen)
}

// Hasher hashes new passwords with its Params and verifies stored hashes of
// any supported scheme. It is safe for concurrent use. Its Params must not be
// changed after first use. The zero value is not valid; use New.
type Hasher struct {
	Params Params

	dummyOnce sync.Once
	dummy     string
}

// New returns a Hasher that hashes with p.
func New(p Params) *Hasher {
	return &Hasher{Params: p}
}

// Hash returns plain hashed with argon2id and h.Params, encoded as
// "{ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>" with salt and
// hash in standard base64 without padding: libsodium's encoding, which
// dovecot's ARGON2ID scheme reads.
func (h *Hasher) Hash(plain string) (string, error) {
	p := h.Params
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("password: invalid params: %w", err)
	}
	if len(plain) > maxPasswordLen {
		return "", fmt.Errorf("password: password longer than %d bytes", maxPasswordLen)
	}
	salt := make([]byte, p.SaltLen)
	// crypto/rand.Read never fails (it aborts the program if the kernel's
	// generator is unusable), so there is no error to handle.
	rand.Read(salt)
	a := &argon2Hash{
		id:      true,
		memory:  p.MemoryKiB,
		time:    p.Time,
		threads: p.Threads,
		salt:    salt,
		key:     argon2Key(true, []byte(plain), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen),
	}
	return "{ARGON2ID}" + a.String(), nil
}

// Verify checks plain against stored. ok is false with a nil error for a
// wrong password. err is non-nil only when stored cannot be used: it wraps
// ErrUnknownScheme or ErrMalformed and, since stored may be a cleartext
// password, quotes nothing of it but a scheme name or a cost parameter.
//
// needsRehash is true when ok and stored is not argon2id with exactly
// h.Params in the form Hash writes, so that the caller stores Hash(plain) in
// its place.
func (h *Hasher) Verify(stored, plain string) (ok, needsRehash bool, err error) {
	v, err := parse(stored)
	if err != nil {
		return false, false, err
	}
	if len(plain) > maxPasswordLen {
		return false, false, nil
	}
	if !v.verify([]byte(plain)) {
		return false, false, nil
	}
	// Also rehash an argon2id hash with our parameters that is not written
	// the way Hash writes it (no or lower-case prefix, .B64/.HEX), so that
	// the table converges on the one form dovecot reads without a
	// default_pass_scheme.
	a, isArgon2 := v.(*argon2Hash)
	current := isArgon2 && a.hasParams(h.Params) && stored == "{ARGON2ID}"+a.String()
	return true, !current, nil
}

// Dummy returns a valid hash with h.Params, computed once on first use. The
// caller verifies the offered password against it when the user does not
// exist, so that the time a login takes does not reveal whether it does.
// The hashed password is random and forgotten, so nothing verifies against
// it. If h.Params are invalid (Hash fails) Dummy returns "", which Verify
// rejects with ErrUnknownScheme.
func (h *Hasher) Dummy() string {
	h.dummyOnce.Do(func() {
		secret := make([]byte, 32)
		rand.Read(secret)
		h.dummy, _ = h.Hash(hex.EncodeToString(secret))
	})
	return h.dummy
}

// verifier is a parsed stored hash. Parsing never runs a KDF; verify does,
// at the cost parse checked, and compares in constant time.
type verifier interface {
	verify(plain []byte) bool
}

// asVerifier returns v as a verifier, or a nil verifier with err: returning
// a typed nil pointer directly would make a non-nil interface.
func asVerifier[T verifier](v T, err error) (verifier, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// parse turns a stored value into a verifier without doing any hashing work.
// It is the single entry point for untrusted stored values: every bound is
// enforced here.
func parse(stored string) (verifier, error) {
	if len(stored) > maxStoredLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxStoredLen)
	}
	if !strings.HasPrefix(stored, "{") {
		// postfixadmin (and dovecot with default_pass_scheme = CRYPT)
		// store crypt strings without a {SCHEME} prefix.
		switch {
		case strings.HasPrefix(stored, "$argon2"):
			return asVerifier(parseArgon2(stored))
		case isCryptString(stored):
			return parseCrypt(stored)
		}
		return nil, fmt.Errorf("%w: no {SCHEME} prefix", ErrUnknownScheme)
	}
	end := strings.IndexByte(stored, '}')
	if end < 0 {
		return nil, fmt.Errorf("%w: unterminated {SCHEME} prefix", ErrMalformed)
	}
	name, body := stored[1:end], stored[end+1:]
	s, enc, explicit, err := lookupScheme(name)
	if err != nil {
		return nil, err
	}
	raw, err := decodeBody(body, s, enc, explicit)
	if err != nil {
		return nil, fmt.Errorf("%w: {%s}: %w", ErrMalformed, s.name, err)
	}
	switch s.kind {
	case kindPlain:
		return plainHash(raw), nil
	case kindDigest:
		return &digestHash{newHash: s.newHash, sum: raw}, nil
	case kindSalted:
		return asVerifier(newSaltedHash(s, raw))
	case kindMD5:
		// dovecot's {MD5} is md5crypt when it looks like one, else a
		// PLAIN-MD5 digest in hex or base64.
		if strings.HasPrefix(string(raw), "$1$") {
			return parseCrypt(string(raw))
		}
		md5s, _ := schemeByName("PLAIN-MD5")
		sum, err := decodeBody(string(raw), md5s, md5s.defEnc, false)
		if err != nil {
			return nil, fmt.Errorf("%w: {MD5}: neither md5crypt nor an MD5 digest", ErrMalformed)
		}
		return &digestHash{newHash: md5s.newHash, sum: sum}, nil
	case kindCrypt:
		// dovecot hands all of these to crypt(3), which picks the
		// algorithm from the string's own prefix, not from the scheme name.
		if !isCryptString(string(raw)) {
			return nil, fmt.Errorf("%w: {%s}: unsupported crypt(3) algorithm", ErrUnknownScheme, s.name)
		}
		return parseCrypt(string(raw))
	case kindArgon2:
		// libsodium, too, reads the variant from the string.
		return asVerifier(parseArgon2(string(raw)))
	}
	return nil, fmt.Errorf("%w: {%s}", ErrUnknownScheme, s.name)
}
