package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
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
}

// spoolBody reads the rest of the message from r.
func spoolBody(r io.Reader, dir string, memLimit int64) (*body, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, memLimit+1))
	if err != nil {
		return nil, err
	}
	if n <= memLimit {
		return &body{mem: buf.Bytes(), size: n}, nil
	}
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

// Close releases the temporary file.
func (b *body) Close() error {
	if b.file == nil {
		return nil
	}
	return b.file.Close()
}
