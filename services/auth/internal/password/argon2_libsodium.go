//go:build libsodium

package password

// Argon2 through libsodium, the implementation dovecot uses: it picks
// AVX-512, AVX2 or SSSE3 code for the CPU at hand, where
// golang.org/x/crypto/argon2 has SSE4.1 code only. On an AVX-512 Xeon a
// hash with our default parameters takes 24 ms there against 48 ms in Go,
// and a login is mostly that hash. The build tag is set by the Makefile
// when libsodium's header is installed (Debian: libsodium-dev); without
// it, argon2_go.go is built instead.

/*
#cgo LDFLAGS: -lsodium
#include <sodium.h>
*/
import "C"

import (
	"sync"
	"unsafe"
)

// Argon2Implementation names the implementation argon2 hashes are computed
// with, for the log.
const Argon2Implementation = "libsodium"

// HashMemoryOnHeap reports whether an argon2 computation takes its memory
// (Params.MemoryKiB) from the Go heap, where it lingers as garbage after
// the computation until a collection: false with libsodium, which maps
// it for the computation and unmaps it before it returns.
const HashMemoryOnHeap = false

// sodiumReady is sodium_init's success: it selects the code for the CPU,
// and libsodium must not be used without it.
var sodiumReady = sync.OnceValue(func() bool { return C.sodium_init() >= 0 })

// argon2Key computes an argon2id (id) or argon2i key with libsodium when
// the parameters are ones its crypto_pwhash takes (one lane, a 16-byte
// salt, and for argon2i at least 3 passes: what libsodium, dovecot and
// postcove write), and with golang.org/x/crypto otherwise (hashes imported
// from other software) or if libsodium fails (out of memory).
func argon2Key(id bool, plain, salt []byte, time, memoryKiB uint32, threads uint8, keyLen uint32) []byte {
	alg := C.int(C.crypto_pwhash_ALG_ARGON2ID13)
	minTime := uint32(C.crypto_pwhash_argon2id_OPSLIMIT_MIN)
	if !id {
		alg, minTime = C.crypto_pwhash_ALG_ARGON2I13, uint32(C.crypto_pwhash_argon2i_OPSLIMIT_MIN)
	}
	if threads != 1 || len(salt) != C.crypto_pwhash_SALTBYTES || time < minTime ||
		keyLen < C.crypto_pwhash_BYTES_MIN || !sodiumReady() {
		return goArgon2Key(id, plain, salt, time, memoryKiB, threads, keyLen)
	}
	out := make([]byte, keyLen)
	// The Go memory passed holds no Go pointers, and libsodium keeps no
	// reference to it after the call (cgo's rules for passing pointers).
	rc := C.crypto_pwhash(
		(*C.uchar)(unsafe.Pointer(&out[0])), C.ulonglong(keyLen),
		(*C.char)(unsafe.Pointer(unsafe.SliceData(plain))), C.ulonglong(len(plain)),
		(*C.uchar)(unsafe.Pointer(&salt[0])),
		C.ulonglong(time), C.size_t(memoryKiB)*1024, alg)
	if rc != 0 {
		return goArgon2Key(id, plain, salt, time, memoryKiB, threads, keyLen)
	}
	return out
}
