package maildir

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Folder names on disk are in modified UTF-7 (RFC 3501 section 5.1.3), as
// dovecot writes them for Maildir++ unless told to use UTF-8: "Entwürfe"
// is ".Entw&APw-rfe". Printable ASCII stands for itself except "&", which
// is "&-"; other characters are UTF-16 in base64 with "," for "/", between
// "&" and "-".

const mutf7Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

var errBadMUTF7 = errors.New("invalid modified UTF-7")

func mutf7Encoding() *base64.Encoding {
	return base64.NewEncoding(mutf7Alphabet).WithPadding(base64.NoPadding).Strict()
}

// encodeMUTF7 encodes valid UTF-8.
func encodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		units := utf16.Encode(run)
		buf := make([]byte, 2*len(units))
		for i, u := range units {
			buf[2*i], buf[2*i+1] = byte(u>>8), byte(u)
		}
		b.WriteByte('&')
		b.WriteString(mutf7Encoding().EncodeToString(buf))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}

// decodeMUTF7 decodes modified UTF-7 strictly: a base64 run must encode
// characters that could not stand for themselves, and must be whole UTF-16.
func decodeMUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errBadMUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errBadMUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		buf, err := mutf7Encoding().DecodeString(enc)
		if err != nil || len(buf)%2 != 0 {
			return "", errBadMUTF7
		}
		units := make([]uint16, len(buf)/2)
		for k := range units {
			units[k] = uint16(buf[2*k])<<8 | uint16(buf[2*k+1])
		}
		for _, r := range utf16.Decode(units) {
			if r == utf8.RuneError || (r >= 0x20 && r <= 0x7e) {
				return "", errBadMUTF7
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
