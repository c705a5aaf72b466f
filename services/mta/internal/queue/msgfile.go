package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The message file (format 2, ID.msg) holds a whole message in one file,
// so that accepting it costs one file creation (usually not even that: a
// spent file is recycled, see recycle.go), one rename and one file
// fsync (with the directory fsync running at the same time), where the
// two-file format 1 (ID.env and ID.body, plus ID.lock) cost three
// creations, two renames and two journal commits one after the other:
//
//	the body, CRLF lines
//	the envelope as queued: one line of JSON, the format-1 record
//	the trailer, trailerLen bytes:
//	    "\npostcove-queue 2 " BODYLEN(16 hex) " " ENVLEN(8 hex) " " CRC(8 hex) "\n"
//
// CRC is the CRC-32C of the body and the envelope. The trailer comes last,
// so the body starts at offset 0 and a Deliverer reads it in place.
//
// The file is written as ID.msg.tmp, flocked from its creation, and renamed
// to ID.msg before it is fsynced: the file fsync and the directory fsync
// then both wait for the same journal commit instead of two in a row.
// Until both are done no 250 is said, and the lock is held, so nobody
// delivers it. A crash (power loss) in that window may leave an ID.msg
// whose content is not all on disk; the trailer and its CRC tell: such a
// file is never delivered (it was never acknowledged either). kill -9
// cannot produce one: what was written is in the page cache.
//
// The file's own flock(2) is the message's lock (there is no ID.lock).
//
// Per-recipient delivery state is not rewritten into the message file:
// after an attempt that leaves recipients to try again, it goes into
// ID.state (a format-1 envelope record, written and fsynced under a
// temporary name then renamed), which then supersedes the envelope in the
// message file. A message delivered at its first attempt, the common case,
// never has one.
const (
	msgExt   = ".msg"
	stateExt = ".state"

	trailerMagic = "\npostcove-queue 2 "
	trailerLen   = len(trailerMagic) + 16 + 1 + 8 + 1 + 8 + 1
	// maxEnvBytes bounds the envelope a damaged trailer can make us
	// read: 10000 recipients of the longest fields fit.
	maxEnvBytes = 64 << 20
)

// copyBufSize is the size of the pooled buffers of message writes and
// checks: large enough that a 100 KiB message takes two system calls.
const copyBufSize = 64 << 10

// writeBuffers are reused between Enqueues (a 100 KiB message would
// otherwise allocate them every time).
type writeBuffers struct {
	bw  *bufio.Writer
	buf []byte
}

func (q *Queue) getBuffers() *writeBuffers {
	if b, ok := q.bufPool.Get().(*writeBuffers); ok {
		return b
	}
	return &writeBuffers{bw: bufio.NewWriterSize(nil, copyBufSize), buf: make([]byte, copyBufSize)}
}

func (q *Queue) putBuffers(b *writeBuffers) {
	b.bw.Reset(nil)
	q.bufPool.Put(b)
}

// newCRC returns a CRC-32C (Castagnoli) hash, computed by hardware on
// amd64 and arm64. (MakeTable returns the table it made once.)
func newCRC() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }

// hashWriter feeds what it writes to a hash too.
type hashWriter struct {
	w io.Writer
	h hash.Hash32
}

func (hw hashWriter) Write(p []byte) (int, error) {
	hw.h.Write(p)
	return hw.w.Write(p)
}

// store writes message env.ID as one message file, durably, under its
// lock. On error nothing of it remains.
func (q *Queue) store(ctx context.Context, env Envelope, body io.Reader) (err error) {
	envData, err := json.Marshal(record{Version: envelopeVersion, Envelope: env})
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	if len(envData) > maxEnvBytes {
		return fmt.Errorf("envelope of %d bytes, at most %d", len(envData), maxEnvBytes)
	}
	final := q.path(env.ID, msgExt)
	tmp := final + tmpExt
	f := q.free.take(tmp)
	recycled := f != nil
	if !recycled {
		if f, err = createLocked(tmp); err != nil {
			return err
		}
	}
	l := &lease{f: f, msg: true}
	defer l.release()
	name := tmp
	defer func() {
		if err != nil {
			if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				q.log.Error("remove unfinished message file", "id", env.ID, "err", rerr)
			}
		}
	}()

	var w io.Writer = f
	if q.wrapBody != nil {
		w = q.wrapBody(w)
	}
	bufs := q.getBuffers()
	defer q.putBuffers(bufs)
	bufs.bw.Reset(w)
	crc := newCRC()
	hw := hashWriter{w: bufs.bw, h: crc}
	cw := &crlfWriter{w: hw}
	if _, err := io.CopyBuffer(cw, ctxReader{ctx, body}, bufs.buf); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if _, err := hw.Write(envData); err != nil {
		return err
	}
	if err := bufs.bw.Flush(); err != nil {
		return err
	}
	if _, err := w.Write(trailer(cw.n, len(envData), crc.Sum32())); err != nil {
		return err
	}
	if recycled {
		if err := truncateHere(f); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	name = final
	// Both fsyncs at once: the file's content, and the directory entry
	// (the rename, made before the directory fsync started; the dirSyncer
	// shares one directory fsync between concurrent callers).
	fileSynced := make(chan error, 1)
	go func() { fileSynced <- f.Sync() }()
	err = q.dirSync.sync()
	return errors.Join(err, <-fileSynced)
}

// createLocked creates path, a new message file, and flocks it. A scan
// (of this process or another sharing the spool) takes an unlocked
// ID.msg.tmp for the leftover of a killed Enqueue and removes it: should
// one come between the creation and the lock, the file is created again.
func createLocked(path string) (*os.File, error) {
	for attempt := 1; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create message file: %w", err)
		}
		// Blocking: a scan that took the lock first holds it only
		// while it looks.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("lock new message: %w", err)
		}
		if sameFile(f, path) {
			return f, nil
		}
		f.Close()
		if attempt == 3 {
			return nil, errors.New("create message file: removed while being created")
		}
	}
}

// trailer formats the trailer of a message file.
func trailer(bodyLen int64, envLen int, crc uint32) []byte {
	b := make([]byte, 0, trailerLen)
	b = append(b, trailerMagic...)
	b = appendHex(b, uint64(bodyLen), 16)
	b = append(b, ' ')
	b = appendHex(b, uint64(envLen), 8)
	b = append(b, ' ')
	b = appendHex(b, uint64(crc), 8)
	return append(b, '\n')
}

func appendHex(b []byte, v uint64, width int) []byte {
	s := strconv.FormatUint(v, 16)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// msgLayout is where the parts of a message file are, from its trailer.
type msgLayout struct {
	bodyLen int64
	envLen  int64
	crc     uint32
}

// parseTrailer reads the trailer of a message file of size bytes.
func parseTrailer(t []byte, size int64) (msgLayout, error) {
	bad := func(why string) (msgLayout, error) {
		return msgLayout{}, fmt.Errorf("message file: %s (an unfinished write?)", why)
	}
	if len(t) != trailerLen || string(t[:len(trailerMagic)]) != trailerMagic || t[trailerLen-1] != '\n' {
		return bad("no trailer")
	}
	f := t[len(trailerMagic) : trailerLen-1]
	if f[16] != ' ' || f[25] != ' ' {
		return bad("malformed trailer")
	}
	bodyLen, err1 := strconv.ParseUint(string(f[:16]), 16, 63)
	envLen, err2 := strconv.ParseUint(string(f[17:25]), 16, 32)
	crc, err3 := strconv.ParseUint(string(f[26:34]), 16, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return bad("malformed trailer")
	}
	if envLen > maxEnvBytes || int64(bodyLen) > size || int64(bodyLen)+int64(envLen)+int64(trailerLen) != size {
		return bad("trailer does not match the file size")
	}
	return msgLayout{bodyLen: int64(bodyLen), envLen: int64(envLen), crc: uint32(crc)}, nil
}

// readMsgFile checks message file f (its trailer and CRC) and returns the
// envelope it was queued with and the size of its body. buf is scratch
// space; nil allocates.
func readMsgFile(f *os.File, buf []byte) (Envelope, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return Envelope{}, 0, err
	}
	size := fi.Size()
	if size < int64(trailerLen) {
		return Envelope{}, 0, errors.New("message file: shorter than its trailer (an unfinished write?)")
	}
	t := make([]byte, trailerLen)
	if _, err := f.ReadAt(t, size-int64(trailerLen)); err != nil {
		return Envelope{}, 0, fmt.Errorf("read trailer: %w", err)
	}
	lay, err := parseTrailer(t, size)
	if err != nil {
		return Envelope{}, 0, err
	}
	if len(buf) == 0 {
		buf = make([]byte, copyBufSize)
	}
	crc := newCRC()
	if _, err := io.CopyBuffer(crc, io.NewSectionReader(f, 0, lay.bodyLen+lay.envLen), buf); err != nil {
		return Envelope{}, 0, fmt.Errorf("read message file: %w", err)
	}
	if crc.Sum32() != lay.crc {
		return Envelope{}, 0, errors.New("message file: CRC mismatch (an unfinished write, or damage)")
	}
	envData := make([]byte, lay.envLen)
	if _, err := f.ReadAt(envData, lay.bodyLen); err != nil {
		return Envelope{}, 0, fmt.Errorf("read envelope: %w", err)
	}
	env, err := parseEnvelope(envData)
	if err != nil {
		return Envelope{}, 0, err
	}
	return env, lay.bodyLen, nil
}

// msgEnvelope returns the current envelope of format-2 message id, whose
// file is f: ID.state when there is one, else the one in the file. It
// also returns the body's size.
func (q *Queue) msgEnvelope(id string, f *os.File, buf []byte) (Envelope, int64, error) {
	env, bodyLen, err := readMsgFile(f, buf)
	if err != nil {
		return Envelope{}, 0, err
	}
	if env.ID != id {
		return Envelope{}, 0, fmt.Errorf("message file %s holds message ID %q", id+msgExt, env.ID)
	}
	state, err := q.readEnvelopeFile(id, stateExt)
	switch {
	case errors.Is(err, errGone):
		return env, bodyLen, nil
	case err != nil:
		return Envelope{}, 0, err
	}
	return state, bodyLen, nil
}
