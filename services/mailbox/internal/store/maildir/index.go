package maildir

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// The index of a folder is one file, postcove-index, in the folder's
// directory: a log of text records, one a line, each with its own checksum:
//
//	<crc32c of payload, 8 hex digits> <payload>\n
//
// payloads:
//
//	H 1 <uidvalidity> <uidnext> <highestmodseq>        first record, only there
//	A <uid> <modseq> <size> <internaldate ms> <flags> <file>   a message is added
//	F <uid> <modseq> <flags> <file>                    its flags (and so file name) change
//	X <uid> <modseq>                                   it is expunged
//
// <flags> is "-" or a comma-separated list; <file> is "cur/<name>" or
// "new/<name>"; both are %-escaped (bytes outside 0x21-0x7E, "%" and ",").
//
// Replaying the records in order gives the folder's state. Writers append
// a batch of records with one write(2), and fsync it before they release
// the folder lock, except for the A records of deliveries and copies: their
// files carry their UIDs (",U=", filename.go), so losing the records costs
// nothing that the next start's scan of cur/ does not restore. So a crash
// can only lose a tail of the log: A records that the Maildir restores,
// then at most one torn batch, a final line without its newline or whose
// checksum fails (also when the file system filled its end with zeros).
// Replay stops there and the next writer truncates it away; a torn batch
// was never acknowledged. A bad record
// with good ones after it cannot come from a crash: the index is corrupt
// and is rebuilt from the Maildir. When the log has grown well past its live
// content it is compacted: the state is written as H and A records to a
// temporary file, fsynced, and renamed over the log (then the directory is
// fsynced), so a reader sees either the old log or the new one.

// maxRecordLen bounds one record line.
const maxRecordLen = 64 << 10

var (
	errCorruptIndex = errors.New("corrupt index")
	errOutOfUIDs    = errors.New("mailbox ran out of UIDs")
)

// maxUID is never given out: UIDNEXT must stay representable.
const maxUID = ^store.UID(0)

// record is one index record; which fields are used depends on kind.
type record struct {
	kind          byte // 'H', 'A', 'F', 'X'
	uidValidity   uint32
	uidNext       store.UID
	highestModSeq uint64
	uid           store.UID
	modSeq        uint64
	size          int64
	date          time.Time
	flags         []string
	file          string
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(payload []byte) uint32 {
	return crc32.Checksum(payload, castagnoli)
}

// appendRecord appends r's line to b. It formats the numbers itself
// rather than with fmt: a rebuild or compaction writes 100,000 of them.
func appendRecord(b []byte, r record) []byte {
	start := len(b)
	b = append(b, "00000000 "...) // the checksum, filled in below
	p := len(b)
	b = append(b, r.kind, ' ')
	switch r.kind {
	case 'H':
		b = append(b, "1 "...)
		b = strconv.AppendUint(b, uint64(r.uidValidity), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(r.uidNext), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, r.highestModSeq, 10)
	case 'A':
		b = strconv.AppendUint(b, uint64(r.uid), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, r.modSeq, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.size, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.date.UnixMilli(), 10)
		b = append(b, ' ')
		b = appendFlagsField(b, r.flags)
		b = append(b, ' ')
		b = appendEscaped(b, r.file)
	case 'F':
		b = strconv.AppendUint(b, uint64(r.uid), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, r.modSeq, 10)
		b = append(b, ' ')
		b = appendFlagsField(b, r.flags)
		b = append(b, ' ')
		b = appendEscaped(b, r.file)
	case 'X':
		b = strconv.AppendUint(b, uint64(r.uid), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, r.modSeq, 10)
	default:
		panic(fmt.Sprintf("maildir: unknown index record kind %q", r.kind))
	}
	const hex = "0123456789abcdef"
	sum := crc(b[p:])
	for i := 7; i >= 0; i-- {
		b[start+i] = hex[sum&0xf]
		sum >>= 4
	}
	return append(b, '\n')
}

// appendFlagsField appends the flags field of a record to b: "-" for
// none, else the flags escaped (escapeField) and joined by commas.
func appendFlagsField(b []byte, flags []string) []byte {
	if len(flags) == 0 {
		return append(b, '-')
	}
	for i, f := range flags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEscaped(b, f)
	}
	return b
}

// appendEscaped appends escapeField(s) to b.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '%' || c == ',' {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return b
}

func escapeField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '%' || c == ',' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unescapeField(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errCorruptIndex
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errCorruptIndex
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

// numbers parses decimal fields, remembering the first failure. It reads
// the bytes of the line itself: converting them to strings for strconv
// would allocate for every field of every record of a large index.
type numbers struct{ err error }

// parse parses an unsigned decimal of at most bits bits, as
// strconv.ParseUint(s, 10, bits) does.
func (n *numbers) parse(b []byte, bits int) uint64 {
	v, ok := parseDecimal(b, bits)
	if !ok && n.err == nil {
		n.err = errCorruptIndex
	}
	return v
}

// parseInt parses a signed decimal int64, as strconv.ParseInt(s, 10, 64).
func (n *numbers) parseInt(b []byte) int64 {
	neg := len(b) > 0 && b[0] == '-'
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		b = b[1:]
	}
	v, ok := parseDecimal(b, 64)
	switch {
	case ok && !neg && v <= math.MaxInt64:
		return int64(v)
	case ok && neg && v <= 1<<63:
		return -int64(v) // wraps to MinInt64 for 1<<63, as it should
	}
	if n.err == nil {
		n.err = errCorruptIndex
	}
	return 0
}

// parseDecimal parses one or more decimal digits as a value below 1<<bits.
func parseDecimal(b []byte, bits int) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	limit := uint64(1)<<bits - 1 // bits is below 64 or 64: 1<<64-1 wraps to MaxUint64
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (limit-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseRecord parses one payload.
func parseRecord(p string) (record, error) {
	return (&decoder{}).record([]byte(p))
}

// decoder parses the records of one log. Most messages share a few flag
// lists ("-", `\Seen`, ...), so it decodes each distinct list once and
// gives the records the same slice (store.Message's slices are shared and
// never modified): a 100,000-message index then costs little more than
// one allocation per record.
type decoder struct {
	flags map[string][]string
}

// maxInternedFlagLists bounds the decoder's memory on an index where every
// message has its own keywords.
const maxInternedFlagLists = 1024

func (d *decoder) decodeFlags(b []byte) ([]string, error) {
	if len(b) == 1 && b[0] == '-' {
		return nil, nil
	}
	if fl, ok := d.flags[string(b)]; ok { // no allocation for the lookup
		return fl, nil
	}
	s := string(b)
	fl, err := decodeFlags(s)
	if err != nil {
		return nil, err
	}
	if d.flags == nil {
		d.flags = make(map[string][]string)
	}
	if len(d.flags) < maxInternedFlagLists {
		d.flags[s] = fl
	}
	return fl, nil
}

// splitFields cuts p at single spaces into f and returns how many fields
// there were (up to len(f)+1: more than len(f) means too many).
func splitFields(p []byte, f *[7][]byte) int {
	n := 0
	for {
		i := bytes.IndexByte(p, ' ')
		if n == len(f) {
			return n + 1
		}
		if i < 0 {
			f[n] = p
			return n + 1
		}
		f[n], p = p[:i], p[i+1:]
		n++
	}
}

func (d *decoder) record(p []byte) (record, error) {
	var fa [7][]byte
	nf := splitFields(p, &fa)
	f := fa[:min(nf, len(fa))]
	var r record
	var n numbers
	var err error
	switch {
	case nf > len(fa):
		return record{}, errCorruptIndex
	case isField(f[0], "H") && len(f) == 5 && isField(f[1], "1"):
		r = record{kind: 'H', uidValidity: uint32(n.parse(f[2], 32)), uidNext: store.UID(n.parse(f[3], 32)), highestModSeq: n.parse(f[4], 63)}
		if r.uidValidity == 0 || r.uidNext == 0 {
			return record{}, errCorruptIndex
		}
		return r, n.err
	case isField(f[0], "A") && len(f) == 7:
		r = record{kind: 'A', uid: store.UID(n.parse(f[1], 32)), modSeq: n.parse(f[2], 63), size: int64(n.parse(f[3], 63))}
		r.date = time.UnixMilli(n.parseInt(f[4]))
		r.flags, err = d.decodeFlags(f[5])
		if err == nil {
			r.file, err = decodeFile(string(f[6]))
		}
	case isField(f[0], "F") && len(f) == 5:
		r = record{kind: 'F', uid: store.UID(n.parse(f[1], 32)), modSeq: n.parse(f[2], 63)}
		r.flags, err = d.decodeFlags(f[3])
		if err == nil {
			r.file, err = decodeFile(string(f[4]))
		}
	case isField(f[0], "X") && len(f) == 3:
		r = record{kind: 'X', uid: store.UID(n.parse(f[1], 32)), modSeq: n.parse(f[2], 63)}
	default:
		return record{}, errCorruptIndex
	}
	if err != nil {
		return record{}, err
	}
	if n.err != nil || r.uid == 0 {
		return record{}, errCorruptIndex
	}
	return r, nil
}

func decodeFlags(s string) ([]string, error) {
	if s == "-" {
		return nil, nil
	}
	var flags []string
	for _, part := range strings.Split(s, ",") {
		f, err := unescapeField(part)
		if err != nil {
			return nil, err
		}
		flags = append(flags, f)
	}
	flags, err := store.NormalizeFlags(flags)
	if err != nil {
		return nil, errCorruptIndex
	}
	return flags, nil
}

// decodeFile unescapes a file field and checks that it names a message
// file inside the folder: "cur/" or "new/" and one valid file name. An
// index edited by hand cannot point a read outside the Maildir.
func decodeFile(s string) (string, error) {
	file, err := unescapeField(s)
	if err != nil {
		return "", err
	}
	dir, name, ok := strings.Cut(file, "/")
	if !ok || (dir != "cur" && dir != "new") {
		return "", errCorruptIndex
	}
	if _, err := parseFileName(name); err != nil {
		return "", errCorruptIndex
	}
	return file, nil
}

// parseLog parses an index log. good is the length of the prefix made of
// whole, valid records; when good < len(data) and err is nil the rest is a
// torn tail to truncate. A bad record followed by more data is
// errCorruptIndex.
func parseLog(data []byte) (recs []record, good int, err error) {
	// About 100 bytes a record: one allocation for the slice, mostly.
	recs = make([]record, 0, len(data)/90+1)
	var d decoder
	for off := 0; off < len(data); {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			return recs, off, nil // torn: no newline yet
		}
		line := data[off : off+nl]
		next := off + nl + 1
		r, ok := d.line(line)
		if !ok {
			if isTail(data[next:]) {
				return recs, off, nil
			}
			return nil, 0, fmt.Errorf("%w: bad record at offset %d", errCorruptIndex, off)
		}
		recs = append(recs, r)
		off = next
	}
	return recs, len(data), nil
}

// logBatch is how many records readLog applies at a time.
const logBatch = 1024

// readLog applies the index log in f, size bytes long, to st, which holds
// nothing yet, and returns the length of its whole records, as parseLog
// and apply would; bufSize (at least maxRecordLen+1) is its read buffer.
// The log is read a buffer at a time, never whole: a 100,000-message
// index is 12 MB of text, and holding it next to the state being made
// from it would double the garbage collector's goal for that moment.
// st.msgs is allocated once, for a message a line (a first pass counts
// them), instead of growing step by step.
func (st *indexState) readLog(f io.ReaderAt, size int64, bufSize int) (good int64, err error) {
	bufSize = max(bufSize, maxRecordLen+1)
	lines := 0
	counted := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), bufSize)
	for {
		b, err := counted.ReadSlice('\n')
		if len(b) > 0 && b[len(b)-1] == '\n' {
			lines++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, fmt.Errorf("read index: %w", err)
		}
	}
	st.msgs = make([]rec, 0, lines)

	batch := make([]record, 0, logBatch)
	flush := func() error {
		err := st.apply(batch)
		batch = batch[:0]
		return err
	}
	var d decoder
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), bufSize)
	for {
		line, rerr := r.ReadSlice('\n')
		if errors.Is(rerr, io.EOF) {
			break // the rest, if any, has no newline yet: torn
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			return 0, fmt.Errorf("read index: %w", rerr)
		}
		rec, ok := record{}, false
		if rerr == nil {
			rec, ok = d.line(line[:len(line)-1])
		}
		if !ok {
			// A bad record (or a line too long to be one) is a torn
			// tail if only zeros and newlines follow it.
			tail, err := restIsTail(r, rerr != nil)
			if err != nil {
				return 0, err
			}
			if !tail {
				return 0, fmt.Errorf("%w: bad record at offset %d", errCorruptIndex, good)
			}
			break
		}
		batch = append(batch, rec)
		good += int64(len(line))
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return 0, err
		}
	}
	if unused := cap(st.msgs) - len(st.msgs); unused > len(st.msgs)/4 {
		// A log with many flag changes since its last compaction: do not
		// keep room for a message per record.
		st.msgs = slices.Clone(st.msgs)
	}
	return good, nil
}

// restIsTail reads what r holds after the current line (of which the
// rest is still to skip when inLine) and reports whether it is all isTail.
func restIsTail(r *bufio.Reader, inLine bool) (bool, error) {
	for inLine {
		_, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, io.EOF):
			return true, nil
		case err == nil:
			inLine = false
		case !errors.Is(err, bufio.ErrBufferFull):
			return false, fmt.Errorf("read index: %w", err)
		}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if !isTail(buf[:n]) {
			return false, nil
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("read index: %w", err)
		}
	}
}

// isTail reports whether rest can be what follows a torn last record:
// nothing, or zeros a crash left in the file's last block.
func isTail(rest []byte) bool {
	for _, c := range rest {
		if c != 0 && c != '\n' {
			return false
		}
	}
	return true
}

func (d *decoder) line(line []byte) (record, bool) {
	if len(line) < 10 || len(line) > maxRecordLen || line[8] != ' ' {
		return record{}, false
	}
	want, ok := parseHex32(line[:8])
	if !ok || want != crc(line[9:]) {
		return record{}, false
	}
	r, err := d.record(line[9:])
	return r, err == nil
}

// isField reports whether field b is s (without converting b).
func isField(b []byte, s string) bool { return string(b) == s }

// parseHex32 parses 8 lower-case hex digits, as appendRecord writes them.
func parseHex32(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}

// indexState is a folder's state as the index describes it.
type indexState struct {
	uidValidity   uint32
	uidNext       store.UID
	highestModSeq uint64
	msgs          []rec     // in UID order
	keywords      []string  // every keyword seen, sorted
	maxUID        store.UID // highest UID of an A record replayed
	// counts sums up msgs for STATUS and SELECT; apply keeps it up to
	// date, so that a SELECT of 100,000 messages does not look at each.
	counts msgCounts
	// viewUIDs and viewModSeqs are the UIDs and MODSEQs of msgs for the
	// views of the sessions that select this state, made once for all of
	// them (store.NewSharedView) and never modified; nil until needed,
	// and apply drops them.
	viewUIDs    []store.UID
	viewModSeqs []uint64
	// flagLists holds each distinct flag list of msgs once (a folder's
	// messages share a handful); rec.flags indexes it. flagIndex finds a
	// list by its flags, each followed by a space; flagListsKept is how
	// many lists compactFlags last kept.
	flagLists     [][]string
	flagIndex     map[string]flagsRef
	flagListsKept int
}

// viewSlices returns viewUIDs and viewModSeqs, made if need be.
func (st *indexState) viewSlices() ([]store.UID, []uint64) {
	if st.viewUIDs == nil {
		uids, mods := make([]store.UID, len(st.msgs)), make([]uint64, len(st.msgs))
		for i := range st.msgs {
			uids[i], mods[i] = st.msgs[i].uid, st.msgs[i].modSeq
		}
		st.viewUIDs, st.viewModSeqs = uids, mods
	}
	return st.viewUIDs, st.viewModSeqs
}

// msgCounts is what a Status says about a folder's messages.
type msgCounts struct {
	unseen, deleted uint32 // messages without \Seen, with \Deleted
	size            int64  // sum of the sizes
}

// count counts msgs[i] in (sign 1) or out (sign -1).
func (st *indexState) count(i int, sign int) {
	flags := st.flags(i)
	if !store.HasFlag(flags, store.FlagSeen) {
		st.counts.unseen += uint32(sign)
	}
	if store.HasFlag(flags, store.FlagDeleted) {
		st.counts.deleted += uint32(sign)
	}
	st.counts.size += int64(sign) * st.msgs[i].size
}

// recount computes counts from msgs, for a state built without apply.
func (st *indexState) recount() {
	st.counts = msgCounts{}
	for i := range st.msgs {
		st.count(i, 1)
	}
}

// rec is one message as a loaded state keeps it, for as long as the
// folder stays loaded: 56 bytes besides its file name, which is the one
// pointer in it for the collector to follow. (A store.Message with the
// file name beside it took 104 bytes and four pointers: 5 MB more for a
// folder of 100,000 messages, and twice that in heap the runtime keeps.)
// indexState.Message makes the store.Message.
type rec struct {
	file   string // relative to the folder: "cur/<name>"
	modSeq uint64
	size   int64
	date   int64 // INTERNALDATE, Unix ms (what the log records)
	uid    store.UID
	flags  flagsRef // in the state's flagLists
	// idLen is the length of the message's ID as a prefix of the file's
	// name; 0 when the ID is not one (a hash of a foreign name).
	idLen uint8
}

// flagsRef is a flag list's place in indexState.flagLists.
type flagsRef uint32

// makeRec returns a message's rec, its flags already interned; fn is its
// file's name, parsed (parseFile).
func makeRec(uid store.UID, modSeq uint64, size int64, date time.Time, flags flagsRef, file string, fn fileName) rec {
	r := rec{modSeq: modSeq, size: size, date: date.UnixMilli(), uid: uid, flags: flags}
	r.setFile(file, fn)
	return r
}

// parseFile parses the name of file, a path relative to the folder; a
// name that does not parse gives the zero fileName, whose id is a hash.
func parseFile(file string) fileName {
	fn, _ := parseFileName(file[len("cur/"):])
	return fn
}

// setFile records the message's file, renamed; fn is its name, parsed.
func (r *rec) setFile(file string, fn fileName) {
	r.file, r.idLen = file, 0
	if id := fn.id(); strings.HasPrefix(file[len("cur/"):], id) {
		r.idLen = uint8(len(id)) // at most 70 (fileName.id)
	}
}

// id is the message's store.Message.ID (fileName.id).
func (r *rec) id() string {
	name := r.file[len("cur/"):]
	if r.idLen > 0 {
		return name[:r.idLen]
	}
	return parseFile(r.file).id()
}

// internalDate is the message's INTERNALDATE.
func (r *rec) internalDate() time.Time { return time.UnixMilli(r.date) }

// intern returns flags's place in flagLists, adding it if it is new. The
// list is kept, not copied: flag lists are never modified once made.
func (st *indexState) intern(flags []string) flagsRef {
	var buf [256]byte
	key := buf[:0]
	for _, f := range flags {
		key = append(append(key, f...), ' ') // flags are atoms: no spaces
	}
	if ref, ok := st.flagIndex[string(key)]; ok { // no allocation for the lookup
		return ref
	}
	if st.flagIndex == nil {
		st.flagIndex = make(map[string]flagsRef)
	}
	ref := flagsRef(len(st.flagLists))
	st.flagLists = append(st.flagLists, flags)
	st.flagIndex[string(key)] = ref
	return ref
}

// compactFlags drops the flag lists no message has any more, once the
// table has grown well past its size at the last compaction: flag changes
// leave lists behind, and a client could make endless new ones.
func (st *indexState) compactFlags() {
	if len(st.flagLists) <= 2*st.flagListsKept+64 {
		return
	}
	old := st.flagLists
	st.flagLists, st.flagIndex = nil, nil
	for i := range st.msgs {
		st.msgs[i].flags = st.intern(old[st.msgs[i].flags])
	}
	st.flagListsKept = len(st.flagLists)
}

// flags returns msgs[i]'s flags; the slice must not be modified.
func (st *indexState) flags(i int) []string { return st.flagLists[st.msgs[i].flags] }

// Len, UID, ModSeq and Message make the state a store.Listing.
func (st *indexState) Len() int            { return len(st.msgs) }
func (st *indexState) UID(i int) store.UID { return st.msgs[i].uid }
func (st *indexState) ModSeq(i int) uint64 { return st.msgs[i].modSeq }
func (st *indexState) Message(i int) store.Message {
	r := &st.msgs[i]
	return store.Message{
		UID: r.uid, ID: r.id(), Flags: st.flagLists[r.flags], ModSeq: r.modSeq, Size: r.size, InternalDate: r.internalDate(),
	}
}

// nextUID is the UID the next message gets.
func (st *indexState) nextUID() (store.UID, error) {
	if st.uidNext == maxUID {
		return 0, errOutOfUIDs
	}
	return st.uidNext, nil
}

func (st *indexState) find(uid store.UID) (int, bool) {
	return slices.BinarySearchFunc(st.msgs, uid, func(r rec, uid store.UID) int {
		return cmp.Compare(r.uid, uid)
	})
}

// findFrom is find among msgs[from:]: what a walk over ascending UIDs
// uses, at the cost of one comparison when the UIDs are consecutive
// messages. It returns the index where uid is or would be.
func (st *indexState) findFrom(from int, uid store.UID) (int, bool) {
	if from < len(st.msgs) && st.msgs[from].uid == uid {
		return from, true
	}
	if from > 0 && (from > len(st.msgs) || st.msgs[from-1].uid >= uid) {
		return st.find(uid) // not ascending: search everything
	}
	i, ok := slices.BinarySearchFunc(st.msgs[from:], uid, func(r rec, uid store.UID) int {
		return cmp.Compare(r.uid, uid)
	})
	return from + i, ok
}

// apply replays records onto st. The first record of a log must be H and
// only the first; UIDs of A records must ascend from UIDNEXT. Flag changes
// and expunges of messages not in the state are ignored (they change
// nothing).
func (st *indexState) apply(recs []record) error {
	// Views made from now on must see the change.
	st.viewUIDs, st.viewModSeqs = nil, nil
	var dead []int // indexes into st.msgs of expunged messages
	var isDead map[int]bool
	adds := 0
	for _, r := range recs {
		if r.kind == 'A' {
			adds++
		}
	}
	st.msgs = slices.Grow(st.msgs, adds)
	for _, r := range recs {
		if r.kind == 'H' {
			if st.uidValidity != 0 {
				return fmt.Errorf("%w: second header", errCorruptIndex)
			}
			st.uidValidity, st.uidNext, st.highestModSeq = r.uidValidity, r.uidNext, r.highestModSeq
			continue
		}
		if st.uidValidity == 0 {
			return fmt.Errorf("%w: no header", errCorruptIndex)
		}
		st.highestModSeq = max(st.highestModSeq, r.modSeq)
		switch r.kind {
		case 'A':
			// UIDs ascend through the log; the header's UIDNEXT is a
			// floor for the appends after it, not for the messages a
			// compacted log lists.
			if r.uid <= st.maxUID || r.uid == ^store.UID(0) {
				return fmt.Errorf("%w: uid %d not above %d", errCorruptIndex, r.uid, st.maxUID)
			}
			st.maxUID = r.uid
			st.msgs = append(st.msgs, makeRec(r.uid, r.modSeq, r.size, r.date, st.intern(r.flags), r.file, parseFile(r.file)))
			st.count(len(st.msgs)-1, 1)
			st.uidNext = max(st.uidNext, r.uid+1)
			st.addKeywords(r.flags)
		case 'F':
			if i, ok := st.find(r.uid); ok && !isDead[i] {
				st.count(i, -1)
				m := &st.msgs[i]
				m.flags, m.modSeq = st.intern(r.flags), r.modSeq
				m.setFile(r.file, parseFile(r.file))
				st.count(i, 1)
				st.addKeywords(r.flags)
			}
		case 'X':
			if i, ok := st.find(r.uid); ok && !isDead[i] {
				if isDead == nil {
					isDead = make(map[int]bool)
				}
				isDead[i] = true
				dead = append(dead, i)
				st.count(i, -1)
			}
		}
	}
	if len(dead) > 0 {
		slices.Sort(dead)
		kept := st.msgs[:0]
		for i, m := range st.msgs {
			if _, ok := slices.BinarySearch(dead, i); !ok {
				kept = append(kept, m)
			}
		}
		clear(st.msgs[len(kept):])
		st.msgs = kept
	}
	st.compactFlags()
	return nil
}

// addKeywords adds the keywords among flags to st.keywords; it allocates
// only when there is a new one, which is rare.
func (st *indexState) addKeywords(flags []string) {
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) && !store.HasFlag(st.keywords, f) {
			st.keywords = store.AddKeywords(st.keywords, flags)
			return
		}
	}
}

// snapshot encodes st as a compacted log.
func (st *indexState) snapshot() []byte {
	size := 64
	for i := range st.msgs {
		size += 80 + len(st.msgs[i].file) + 16*len(st.flags(i)) // a little more than a record's line
	}
	b := appendRecord(make([]byte, 0, size), record{kind: 'H', uidValidity: st.uidValidity, uidNext: st.uidNext, highestModSeq: st.highestModSeq})
	for i := range st.msgs {
		b = appendRecord(b, st.addRecord(i))
	}
	return b
}

// addRecord is the A record that adds msgs[i] to a log.
func (st *indexState) addRecord(i int) record {
	m := &st.msgs[i]
	return record{kind: 'A', uid: m.uid, modSeq: m.modSeq, size: m.size, date: m.internalDate(), flags: st.flags(i), file: m.file}
}
