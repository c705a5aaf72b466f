package password

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// cryptAlphabet is the base64 alphabet crypt(3) uses for salts and hashes.
// Its order differs from RFC 4648 and bytes are packed little-endian, so
// encoding/base64 cannot be used.
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// isCryptString reports whether s starts with the prefix of a crypt(3)
// algorithm this package implements.
func isCryptString(s string) bool {
	for _, p := range [...]string{"$1$", "$5$", "$6$", "$2a$", "$2b$", "$2y$"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// parseCrypt parses a crypt(3) string, choosing the algorithm by its prefix.
func parseCrypt(s string) (verifier, error) {
	switch {
	case strings.HasPrefix(s, "$1$"):
		return asVerifier(parseMD5Crypt(s))
	case strings.HasPrefix(s, "$5$"), strings.HasPrefix(s, "$6$"):
		return asVerifier(parseSHACrypt(s))
	case strings.HasPrefix(s, "$2"):
		return asVerifier(parseBcrypt(s))
	}
	return nil, fmt.Errorf("%w: unsupported crypt(3) algorithm", ErrUnknownScheme)
}

// isCryptText reports whether s uses only cryptAlphabet.
func isCryptText(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(cryptAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// appendCrypt24 appends the n crypt-base64 characters of the 24-bit group
// b2:b1:b0, least significant 6 bits first: the b64_from_24bit() step of
// md5crypt and of SHA-crypt.
func appendCrypt24(dst []byte, b2, b1, b0 byte, n int) []byte {
	w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
	for range n {
		dst = append(dst, cryptAlphabet[w&0x3f])
		w >>= 6
	}
	return dst
}

// bcryptHash is a "$2y$NN$<22 salt chars><31 hash chars>" string.
type bcryptHash struct {
	s    string
	cost int
}

// parseBcrypt validates the whole string before golang.org/x/crypto/bcrypt
// sees it: that package only checks the version and cost and slices the
// rest. It computes the one correct bcrypt, which $2b$ and $2y$ name and
// which crypt_blowfish (dovecot's BLF-CRYPT) also applies to $2a$; $2x$,
// crypt_blowfish's marker for its pre-2011 sign-extension bug, is not
// supported. The cost is bounded as bcrypt bounds it, 4..31.
func parseBcrypt(s string) (*bcryptHash, error) {
	const n = len("$2y$10$") + 22 + 31
	if len(s) != n || s[0] != '$' || s[1] != '2' || s[3] != '$' || s[6] != '$' {
		return nil, fmt.Errorf("%w: bcrypt: not a $2?$NN$ string of %d characters", ErrMalformed, n)
	}
	switch s[2] {
	case 'a', 'b', 'y':
	default:
		return nil, fmt.Errorf("%w: bcrypt variant not 2a, 2b or 2y", ErrUnknownScheme)
	}
	if s[4] < '0' || s[4] > '9' || s[5] < '0' || s[5] > '9' {
		return nil, fmt.Errorf("%w: bcrypt: bad cost", ErrMalformed)
	}
	cost := int(s[4]-'0')*10 + int(s[5]-'0')
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("%w: bcrypt cost %d outside %d..%d", ErrMalformed, cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if !isCryptText(s[7:]) {
		return nil, fmt.Errorf("%w: bcrypt: salt or hash outside the bcrypt alphabet", ErrMalformed)
	}
	return &bcryptHash{s: s, cost: cost}, nil
}

// verify uses bcrypt's own comparison, which is constant-time. Passwords
// longer than 72 bytes are truncated there as in every bcrypt.
func (b *bcryptHash) verify(plain []byte) bool {
	return bcrypt.CompareHashAndPassword([]byte(b.s), plain) == nil
}
