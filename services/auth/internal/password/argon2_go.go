//go:build !libsodium

package password

// Argon2Implementation names the implementation argon2 hashes are computed
// with, for the log.
const Argon2Implementation = "golang.org/x/crypto/argon2"

// HashMemoryOnHeap reports whether an argon2 computation takes its memory
// (Params.MemoryKiB) from the Go heap, where it lingers as garbage after
// the computation until a collection: true with golang.org/x/crypto.
const HashMemoryOnHeap = true

// argon2Key computes an argon2id (id) or argon2i key.
func argon2Key(id bool, plain, salt []byte, time, memoryKiB uint32, threads uint8, keyLen uint32) []byte {
	return goArgon2Key(id, plain, salt, time, memoryKiB, threads, keyLen)
}
