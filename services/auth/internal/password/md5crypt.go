package password

import (
	"crypto/md5"
	"crypto/subtle"
	"fmt"
	"strings"
)

// md5crypt is Poul-Henning Kamp's FreeBSD MD5-based crypt(3), "$1$salt$hash",
// dovecot's MD5-CRYPT. Its cost is fixed at 1000 MD5 rounds.
const md5CryptSaltMax = 8

// md5CryptOrder is the byte order in which the final digest is encoded,
// three bytes at a time; byte 11 follows on its own.
var md5CryptOrder = [...][3]uint8{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}}

// md5CryptHash is a parsed "$1$salt$hash" string.
type md5CryptHash struct {
	salt string
	hash string // 22 characters of crypt-base64
}

func parseMD5Crypt(s string) (*md5CryptHash, error) {
	salt, sum, ok := strings.Cut(s[3:], "$")
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: MD5-CRYPT: no $ between salt and hash", ErrMalformed)
	case len(salt) > md5CryptSaltMax || !isCryptText(salt):
		return nil, fmt.Errorf("%w: MD5-CRYPT: salt not up to %d characters of [./0-9A-Za-z]", ErrMalformed, md5CryptSaltMax)
	case len(sum) != 22 || !isCryptText(sum):
		return nil, fmt.Errorf("%w: MD5-CRYPT: hash not 22 characters of [./0-9A-Za-z]", ErrMalformed)
	}
	return &md5CryptHash{salt: salt, hash: sum}, nil
}

func (h *md5CryptHash) verify(plain []byte) bool {
	d := md5Crypt(plain, []byte(h.salt))
	out := make([]byte, 0, 22)
	for _, o := range md5CryptOrder {
		out = appendCrypt24(out, d[o[0]], d[o[1]], d[o[2]], 4)
	}
	out = appendCrypt24(out, 0, 0, d[11], 2)
	return subtle.ConstantTimeCompare(out, []byte(h.hash)) == 1
}

// md5Crypt computes the md5crypt digest of key with salt.
func md5Crypt(key, salt []byte) []byte {
	// Alternate digest: MD5(key || salt || key).
	alt := md5.New()
	alt.Write(key)
	alt.Write(salt)
	alt.Write(key)
	altSum := alt.Sum(nil)

	h := md5.New()
	h.Write(key)
	h.Write([]byte("$1$"))
	h.Write(salt)
	for n := len(key); n > 0; n -= md5.Size {
		h.Write(altSum[:min(n, md5.Size)])
	}
	// The original walks the bits of the key's length and adds, for a set
	// bit, the first byte of a zeroed buffer (a NUL), else the key's first
	// byte.
	for n := len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write([]byte{0})
		} else {
			h.Write(key[:1])
		}
	}
	sum := h.Sum(nil)

	// 1000 rounds "to slow things down", mixing key, salt and the previous
	// digest in an order set by the round number.
	for i := range 1000 {
		h.Reset()
		if i&1 != 0 {
			h.Write(key)
		} else {
			h.Write(sum)
		}
		if i%3 != 0 {
			h.Write(salt)
		}
		if i%7 != 0 {
			h.Write(key)
		}
		if i&1 != 0 {
			h.Write(sum)
		} else {
			h.Write(key)
		}
		sum = h.Sum(sum[:0])
	}
	return sum
}
