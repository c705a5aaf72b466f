//go:build libsodium

package password

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestLibsodiumMatchesGo: libsodium's argon2 and golang.org/x/crypto's
// give the same keys, over parameters both take, for argon2id and argon2i,
// and argon2Key takes libsodium's path for them.
func TestLibsodiumMatchesGo(t *testing.T) {
	if !sodiumReady() {
		t.Fatal("sodium_init failed")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		id := n%2 == 0
		time := uint32(1 + r.IntN(3))
		if !id {
			time += 2 // libsodium's argon2i takes 3 passes or more
		}
		memory := uint32(8 + r.IntN(1024))
		keyLen := uint32(16 + r.IntN(49))
		plain := make([]byte, r.IntN(65))
		salt := make([]byte, 16)
		for _, b := range [][]byte{plain, salt} {
			for i := range b {
				b[i] = byte(r.Uint32())
			}
		}
		got := argon2Key(id, plain, salt, time, memory, 1, keyLen)
		want := goArgon2Key(id, plain, salt, time, memory, 1, keyLen)
		if !bytes.Equal(got, want) {
			t.Fatalf("argon2 id=%v t=%d m=%d len=%d password %x salt %x: libsodium %x, x/crypto %x", id, time, memory, keyLen, plain, salt, got, want)
		}
	}
}

// TestLibsodiumFallback: parameters libsodium's crypto_pwhash does not
// take (several lanes, a salt of another length, argon2i with fewer than 3
// passes) still verify, through golang.org/x/crypto.
func TestLibsodiumFallback(t *testing.T) {
	for _, tt := range []struct {
		id      bool
		time    uint32
		threads uint8
		saltLen int
	}{
		{true, 1, 4, 16},
		{true, 2, 1, 8},
		{true, 2, 1, 32},
		{false, 1, 1, 16},
	} {
		salt := bytes.Repeat([]byte{7}, tt.saltLen)
		got := argon2Key(tt.id, []byte("pw"), salt, tt.time, 64, tt.threads, 32)
		want := goArgon2Key(tt.id, []byte("pw"), salt, tt.time, 64, tt.threads, 32)
		if !bytes.Equal(got, want) {
			t.Errorf("%+v: %x, want %x", tt, got, want)
		}
	}
}
