package smtp

import (
	"bytes"
	"math/rand"
	"testing"
)

type chunkReader struct {
	data []byte
	rng  *rand.Rand
}

func (c *chunkReader) Read(b []byte) (int, error) {
	n := copy(b, c.data[:1+c.rng.Intn(len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

// TestLineLimitEquivalent: postcove's IndexByte version of Read fails exactly where
// the byte loop of v0.25.1 did, for streams read in pieces of any size.
func TestLineLimitEquivalent(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := 0; iter < 50000; iter++ {
		var data []byte
		for i := 0; i < 1+rng.Intn(50); i++ {
			data = append(data, bytes.Repeat([]byte{'x'}, rng.Intn(40))...)
			if rng.Intn(3) > 0 {
				data = append(data, '\n')
			}
		}
		if len(data) == 0 {
			continue
		}
		limit := 1 + rng.Intn(40)
		// The v0.25.1 byte loop over the whole stream.
		cur, refOK := 0, true
		for _, chr := range data {
			if chr == '\n' {
				cur = 0
			}
			if cur++; cur > limit {
				refOK = false
				break
			}
		}
		src := &chunkReader{data: data, rng: rng}
		r := &lineLimitReader{R: src, LineLimit: limit}
		ok := true
		for len(src.data) > 0 {
			if _, err := r.Read(make([]byte, 64)); err == ErrTooLongLine {
				ok = false
				if _, err := r.Read(make([]byte, 64)); err != ErrTooLongLine {
					t.Fatalf("read after ErrTooLongLine: %v", err)
				}
				break
			}
		}
		if ok != refOK {
			t.Fatalf("limit %d data %q: ok=%v, byte loop ok=%v", limit, data, ok, refOK)
		}
	}
}
