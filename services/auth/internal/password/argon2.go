package password

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Bounds on argon2 parameters, for stored hashes and for our own Params
// alike, so that everything Hash writes parse accepts.
const (
	// maxArgon2MemoryKiB caps the memory a single verification allocates:
	// 1 GiB, far above any interactive-login setting (dovecot's default is
	// 64 MiB) but still survivable.
	maxArgon2MemoryKiB = 1 << 20
	// maxArgon2Time caps the passes over memory; 100 passes at 1 GiB are
	// already minutes of CPU.
	maxArgon2Time = 100
	// Salt and hash lengths: the lower bounds are libsodium's (so dovecot
	// can read what we write: a hash shorter than 16 bytes is rejected by
	// crypto_pwhash_str_verify), the upper bounds only keep the strings
	// within maxStoredLen.
	minArgon2SaltLen = 8
	maxArgon2SaltLen = 1024
	minArgon2KeyLen  = 16
	maxArgon2KeyLen  = 1024
)

// argon2Hash is a parsed "$argon2id$v=19$m=M,t=T,p=P$salt$hash" string (or
// $argon2i$), the PHC string format as libsodium writes and reads it: salt
// and hash in standard base64 without padding, parameters in this order.
type argon2Hash struct {
	id      bool // argon2id, else argon2i
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// String encodes a in the PHC format, without the {SCHEME} prefix.
func (a *argon2Hash) String() string {
	variant := "argon2i"
	if a.id {
		variant = "argon2id"
	}
	return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", variant, argon2.Version,
		a.memory, a.time, a.threads,
		base64.RawStdEncoding.EncodeToString(a.salt),
		base64.RawStdEncoding.EncodeToString(a.key))
}

func (a *argon2Hash) verify(plain []byte) bool {
	got := argon2Key(a.id, plain, a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(got, a.key) == 1
}

// goArgon2Key computes an argon2id (id) or argon2i key with
// golang.org/x/crypto/argon2, which takes any parameters parse accepts.
func goArgon2Key(id bool, plain, salt []byte, time, memoryKiB uint32, threads uint8, keyLen uint32) []byte {
	if id {
		return argon2.IDKey(plain, salt, time, memoryKiB, threads, keyLen)
	}
	return argon2.Key(plain, salt, time, memoryKiB, threads, keyLen)
}

// hasParams reports whether a is argon2id made with exactly p.
func (a *argon2Hash) hasParams(p Params) bool {
	return a.id && a.memory == p.MemoryKiB && a.time == p.Time && a.threads == p.Threads &&
		uint32(len(a.salt)) == p.SaltLen && uint32(len(a.key)) == p.KeyLen
}

// checkArgon2Params enforces the bounds above and argon2's own rule that
// there be at least 8 KiB of memory per lane (RFC 9106, section 3.1), which
// libsodium checks and golang.org/x/crypto/argon2 silently rounds up instead.
func checkArgon2Params(memory, time, threads, saltLen, keyLen uint32) error {
	switch {
	case time < 1 || time > maxArgon2Time:
		return fmt.Errorf("argon2 t=%d outside 1..%d", time, maxArgon2Time)
	case threads < 1 || threads > 255:
		return fmt.Errorf("argon2 p=%d outside 1..255", threads)
	case memory < 8*threads || memory > maxArgon2MemoryKiB:
		return fmt.Errorf("argon2 m=%d KiB outside %d..%d", memory, 8*threads, maxArgon2MemoryKiB)
	case saltLen < minArgon2SaltLen || saltLen > maxArgon2SaltLen:
		return fmt.Errorf("argon2 salt of %d bytes outside %d..%d", saltLen, minArgon2SaltLen, maxArgon2SaltLen)
	case keyLen < minArgon2KeyLen || keyLen > maxArgon2KeyLen:
		return fmt.Errorf("argon2 hash of %d bytes outside %d..%d", keyLen, minArgon2KeyLen, maxArgon2KeyLen)
	}
	return nil
}

// parseArgon2 parses s strictly, the way libsodium's decoder does: fixed
// field order, decimal numbers without sign or leading zeros, canonical
// unpadded base64. Only version 19 (0x13) is accepted: it is the only one
// golang.org/x/crypto/argon2 computes, and the only one libsodium writes.
func parseArgon2(s string) (*argon2Hash, error) {
	var a argon2Hash
	f := strings.Split(s, "$")
	if len(f) < 2 || f[0] != "" {
		return nil, fmt.Errorf("%w: argon2: not a $argon2...$ string", ErrMalformed)
	}
	switch f[1] {
	case "argon2id":
		a.id = true
	case "argon2i":
	default:
		// argon2d and anything else: libsodium does not verify them either.
		return nil, fmt.Errorf("%w: argon2 variant is not argon2i or argon2id", ErrUnknownScheme)
	}
	if len(f) == 5 && strings.HasPrefix(f[2], "m=") {
		return nil, fmt.Errorf("%w: argon2 version 16 (no v= field) is not supported", ErrUnknownScheme)
	}
	if len(f) != 6 {
		return nil, fmt.Errorf("%w: argon2: %d $-separated fields, want 6", ErrMalformed, len(f))
	}
	v, ok := strings.CutPrefix(f[2], "v=")
	if !ok {
		return nil, fmt.Errorf("%w: argon2: missing v=", ErrMalformed)
	}
	version, err := parseDecimal(v, 1<<32-1)
	if err != nil {
		return nil, fmt.Errorf("%w: argon2 version: %w", ErrMalformed, err)
	}
	if version != argon2.Version {
		return nil, fmt.Errorf("%w: argon2 version %d is not supported", ErrUnknownScheme, version)
	}
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return nil, fmt.Errorf("%w: argon2: want m=,t=,p= parameters", ErrMalformed)
	}
	var vals [3]uint64
	for i, name := range [3]string{"m=", "t=", "p="} {
		num, ok := strings.CutPrefix(params[i], name)
		if !ok {
			return nil, fmt.Errorf("%w: argon2: parameter %d is not %s", ErrMalformed, i+1, name)
		}
		if vals[i], err = parseDecimal(num, 1<<32-1); err != nil {
			return nil, fmt.Errorf("%w: argon2 %s: %w", ErrMalformed, name, err)
		}
	}
	if a.salt, err = decodeRawBase64(f[4]); err != nil {
		return nil, fmt.Errorf("%w: argon2 salt: %w", ErrMalformed, err)
	}
	if a.key, err = decodeRawBase64(f[5]); err != nil {
		return nil, fmt.Errorf("%w: argon2 hash: %w", ErrMalformed, err)
	}
	memory, time, threads := uint32(vals[0]), uint32(vals[1]), uint32(vals[2])
	if err := checkArgon2Params(memory, time, threads, uint32(len(a.salt)), uint32(len(a.key))); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	a.memory, a.time, a.threads = memory, time, uint8(threads)
	return &a, nil
}

// parseDecimal parses an unsigned decimal number of at most max, rejecting
// signs, spaces and leading zeros: a number a hash writer would never print
// in that form makes a string that can never verify.
func parseDecimal(s string, max uint64) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a decimal number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal number")
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("number above %d", max)
	}
	return n, nil
}

// decodeRawBase64 decodes standard base64 without padding, rejecting
// non-zero trailing bits and the CR/LF the Go decoder would otherwise skip.
func decodeRawBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("bad base64")
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("bad base64")
	}
	return b, nil
}
