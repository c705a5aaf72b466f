package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// errSpoolWrite marks a failure to hold the body (the temporary file),
// as opposed to a failure to read it from the client.
var errSpoolWrite = errors.New("cannot hold the message body")

// body is a message body held between DATA and the queue, so that it can
// be read more than once (the Verifier, then Enqueue). Up to the memory
// limit it is a byte slice; beyond, an unlinked temporary file, which a
// crash cannot leave behind.
type body struct {
	mem  []byte
	file *os.File
	size int64

	buf  *bytes.Buffer // holds mem; back to pool on Close
	pool *sync.Pool
}

// maxPooledBody is the largest buffer kept for the next message: the
// common sizes are reused, a rare big one is left to the GC.
const maxPooledBody = 2 << 20

// spoolBody reads the rest of the message from r. Its memory buffer comes
// from pool (of *bytes.Buffer), so that a 100 KiB message does not grow a
// new one, copying it at each doubling, every time.
func spoolBody(r io.Reader, dir string, memLimit int64, pool *sync.Pool) (*body, error) {
	buf, _ := pool.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r, memLimit+1))
	if err != nil {
		putBody(pool, buf)
		return nil, err
	}
	if n <= memLimit {
		return &body{mem: buf.Bytes(), size: n, buf: buf, pool: pool}, nil
	}
	defer putBody(pool, buf) // copied into the file below
	f, err := os.CreateTemp(dir, "smtpd-body-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	b := &body{file: f}
	if err := os.Remove(f.Name()); err != nil {
		b.Close()
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		b.Close()
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	// Read and write separately: io.Copy would not say which failed.
	chunk := make([]byte, 64<<10)
	for {
		m, rerr := r.Read(chunk)
		if m > 0 {
			if _, err := f.Write(chunk[:m]); err != nil {
				b.Close()
				return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			b.Close()
			return nil, rerr
		}
	}
	b.size = n
	return b, nil
}

// reader returns a reader of the whole body, from its start.
func (b *body) reader() io.Reader {
	if b.file == nil {
		return bytes.NewReader(b.mem)
	}
	return io.NewSectionReader(b.file, 0, b.size)
}

// Close releases the memory buffer or the temporary file. The readers
// from reader must not be used any more.
func (b *body) Close() error {
	if b.buf != nil {
		putBody(b.pool, b.buf)
		b.buf, b.mem = nil, nil
	}
	if b.file == nil {
		return nil
	}
	return b.file.Close()
}

// putBody returns buf to pool unless it grew too big to keep.
func putBody(pool *sync.Pool, buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		pool.Put(buf)
	}
}
