package password

import (
	"errors"
	"testing"
)

// cheap reports whether verifying plain against v costs well under a
// millisecond, so that the fuzzer (and its minimizer, which re-runs an input
// thousands of times) spends its time on parsing rather than on KDFs. The
// KDFs' cost grows with the password's length for SHA-crypt and md5crypt, so
// long passwords only reach the digest schemes. parse bounds the rest;
// TestVerifyErrors covers the refusal of hostile costs.
func cheap(v verifier, plain string) bool {
	switch v := v.(type) {
	case plainHash, *digestHash, *saltedHash:
		return true
	case *argon2Hash:
		return len(plain) <= 64 && v.memory <= 64 && v.time <= 1 && len(v.key) <= 64
	case *shaCryptHash:
		return len(plain) <= 64 && v.rounds <= 1000
	case *md5CryptHash:
		return len(plain) <= 64
	case *bcryptHash:
		return len(plain) <= 64 && v.cost <= 4
	}
	return false
}

// FuzzVerify feeds arbitrary stored values and passwords to parse and, when
// the KDF is cheap, to Verify. Nothing may panic, every error must wrap one
// of the two sentinels, and whatever parse accepts Verify must handle
// without an error.
func FuzzVerify(f *testing.F) {
	for _, v := range readVectors(f) {
		f.Add(v.hash, v.password)
	}
	for _, s := range []string{
		"", "{", "{}", "{SHA", "{SHA.HEX}", "{PLAIN.B64}=", "$", "$1$", "$5$rounds=", "$6$rounds=1000$$",
		"$2y$04$", "$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$3wMuGj0dODzt6tc0XJ4ynMo7h5FvWBsl5pdqoDZTLaQ",
		"$argon2id$v=19$m=4294967295,t=4294967295,p=255$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
	} {
		f.Add(s, "secret")
	}
	h := New(testParams)
	f.Fuzz(func(t *testing.T, stored, plain string) {
		v, err := parse(stored)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownScheme) {
				t.Fatalf("parse(%q) = %v, want an error wrapping ErrMalformed or ErrUnknownScheme", stored, err)
			}
			if v != nil {
				t.Fatalf("parse(%q) = %v, %v, want a nil verifier with the error", stored, v, err)
			}
			return
		}
		if !cheap(v, plain) {
			return
		}
		ok, rehash, err := h.Verify(stored, plain)
		if err != nil {
			t.Fatalf("Verify(%q, %q) = _, _, %v, want nil: parse accepted it", stored, plain, err)
		}
		if rehash && !ok {
			t.Fatalf("Verify(%q, %q) = %v, %v, nil, want needsRehash only with ok", stored, plain, ok, rehash)
		}
	})
}
