package password

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"
	"strings"
)

// SHA-crypt, as specified by Ulrich Drepper in "Unix crypt using SHA-256 and
// SHA-512" (https://www.akkadia.org/drepper/SHA-crypt.txt). Step numbers in
// the comments below are the specification's.
const (
	shaCryptSaltMax       = 16        // "the salt string ... at most 16 characters"
	shaCryptRoundsDefault = 5000      // when no rounds=N$ is given
	shaCryptRoundsMin     = 1000      // smaller N are raised to this by crypt()
	shaCryptRoundsMax     = 999999999 // larger N are lowered to this
)

// The byte order in which the final digest is encoded, three bytes at a
// time, from the specification's step 22. The one or two bytes left over
// are encoded separately (see encode).
var (
	sha256CryptOrder = [...][3]uint8{
		{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
		{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29},
	}
	sha512CryptOrder = [...][3]uint8{
		{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
		{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51},
		{31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
		{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
		{62, 20, 41},
	}
)

// shaCryptHash is a parsed "$5$[rounds=N$]salt$hash" or "$6$..." string.
type shaCryptHash struct {
	sha512 bool
	rounds int
	salt   string
	hash   string // crypt-base64 of the final digest: 43 or 86 characters
}

// parseSHACrypt parses s strictly. crypt() clamps rounds into
// [1000, 999999999] and truncates the salt to 16 characters, then prints the
// values it used; a stored string outside those bounds therefore differs
// from what crypt() produces for every password and can never verify, so it
// is rejected as malformed instead of being clamped.
func parseSHACrypt(s string) (*shaCryptHash, error) {
	h := &shaCryptHash{sha512: strings.HasPrefix(s, "$6$"), rounds: shaCryptRoundsDefault}
	name, hashLen := "SHA256-CRYPT", 43
	if h.sha512 {
		name, hashLen = "SHA512-CRYPT", 86
	}
	rest := s[3:]
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		num, after, ok := strings.Cut(r, "$")
		if !ok {
			return nil, fmt.Errorf("%w: %s: unterminated rounds=", ErrMalformed, name)
		}
		n, err := parseDecimal(num, shaCryptRoundsMax)
		if err == nil && n < shaCryptRoundsMin {
			err = fmt.Errorf("number below %d", shaCryptRoundsMin)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: rounds: %w", ErrMalformed, name, err)
		}
		h.rounds, rest = int(n), after
	}
	salt, sum, ok := strings.Cut(rest, "$")
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s: no $ between salt and hash", ErrMalformed, name)
	case len(salt) > shaCryptSaltMax || !isCryptText(salt):
		return nil, fmt.Errorf("%w: %s: salt not up to %d characters of [./0-9A-Za-z]", ErrMalformed, name, shaCryptSaltMax)
	case len(sum) != hashLen || !isCryptText(sum):
		return nil, fmt.Errorf("%w: %s: hash not %d characters of [./0-9A-Za-z]", ErrMalformed, name, hashLen)
	}
	h.salt, h.hash = salt, sum
	return h, nil
}

func (h *shaCryptHash) verify(plain []byte) bool {
	got := h.encode(shaCrypt(h.newHash, plain, []byte(h.salt), h.rounds))
	return subtle.ConstantTimeCompare(got, []byte(h.hash)) == 1
}

func (h *shaCryptHash) newHash() hash.Hash {
	if h.sha512 {
		return sha512.New()
	}
	return sha256.New()
}

// encode is the specification's step 22: the digest's bytes, permuted,
// in crypt-base64.
func (h *shaCryptHash) encode(d []byte) []byte {
	out := make([]byte, 0, 86)
	if h.sha512 {
		for _, o := range sha512CryptOrder {
			out = appendCrypt24(out, d[o[0]], d[o[1]], d[o[2]], 4)
		}
		return appendCrypt24(out, 0, 0, d[63], 2)
	}
	for _, o := range sha256CryptOrder {
		out = appendCrypt24(out, d[o[0]], d[o[1]], d[o[2]], 4)
	}
	return appendCrypt24(out, 0, d[31], d[30], 3)
}

// shaCrypt computes the SHA-crypt digest of key with salt (already at most
// 16 bytes) and rounds (already within bounds), steps 1 to 21.
func shaCrypt(newHash func() hash.Hash, key, salt []byte, rounds int) []byte {
	// Steps 4-8: digest B = H(key || salt || key).
	hb := newHash()
	hb.Write(key)
	hb.Write(salt)
	hb.Write(key)
	b := hb.Sum(nil)
	size := len(b)

	// Steps 1-3 and 9-12: digest A.
	ha := newHash()
	ha.Write(key)
	ha.Write(salt)
	// Steps 9-10: as many bytes of B as the key is long.
	for n := len(key); n > 0; n -= size {
		ha.Write(b[:min(n, size)])
	}
	// Step 11: walk the bits of the key's length from the lowest up to the
	// highest set one, adding B for a 1 and the key for a 0.
	for n := len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			ha.Write(b)
		} else {
			ha.Write(key)
		}
	}
	a := ha.Sum(nil)

	// Steps 13-16: byte sequence P, the digest of the key repeated once per
	// key byte, stretched or cut to the key's length.
	hp := newHash()
	for range len(key) {
		hp.Write(key)
	}
	p := repeatTo(hp.Sum(nil), len(key))

	// Steps 17-20: byte sequence S, the digest of the salt repeated
	// 16 + A[0] times, cut to the salt's length.
	hs := newHash()
	for range 16 + int(a[0]) {
		hs.Write(salt)
	}
	s := repeatTo(hs.Sum(nil), len(salt))

	// Step 21: the rounds, each hashing the previous digest (A, then C)
	// with P and S in an order set by the round number.
	c := a
	hc := newHash()
	for i := range rounds {
		hc.Reset()
		if i&1 != 0 {
			hc.Write(p)
		} else {
			hc.Write(c)
		}
		if i%3 != 0 {
			hc.Write(s)
		}
		if i%7 != 0 {
			hc.Write(p)
		}
		if i&1 != 0 {
			hc.Write(c)
		} else {
			hc.Write(p)
		}
		c = hc.Sum(c[:0])
	}
	return c
}

// repeatTo returns n bytes made of d repeated.
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, n)
	for i := 0; i < n; i += len(d) {
		copy(out[i:], d)
	}
	return out
}
