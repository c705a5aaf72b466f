package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Fetch answers FETCH and UID FETCH. The metadata of every message named
// comes from one store call; a body is opened only when an item needs it,
// BODY[] (whole, or partial) is streamed from the store, and the message
// is read whole and parsed only for items that need its MIME structure.
func (sess *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	defer sess.lock()()
	sel, targets, err := sess.targets(numSet, false)
	if err != nil || len(targets) == 0 {
		return err
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	uids := targetUIDs(targets)
	// Fetching a body section without PEEK sets \Seen (RFC 9051 section
	// 6.4.5); the FETCH responses then carry the new FLAGS.
	var seen map[store.UID]bool // read only when set
	if !sel.readOnly && setsSeen(options) {
		seen = make(map[store.UID]bool)
		res, err := sel.mb.SetFlags(ctx, uids, store.FlagsAdd, []string{store.FlagSeen}, 0)
		if err != nil {
			return sess.storeError("fetch", err, false)
		}
		for _, m := range res.Updated {
			seen[m.UID] = true
		}
	}
	msgs, err := sel.mb.Messages(ctx, uids)
	if err != nil {
		return sess.storeError("fetch", err, false)
	}
	if metadataOnly(options) && plainFlags(msgs) {
		return sess.writeMetadata(targets, msgs, options)
	}
	var scratch fetchScratch
	err = eachMessage(targets, msgs, func(seq uint32, m *store.Message) error {
		return sess.fetchOne(ctx, w, &scratch, seq, m, options, seen[m.UID])
	})
	if scratch.sent > 0 {
		// Once a command: sessions adding to the one counter for each
		// message would contend for it.
		sess.srv.metrics.fetched.Add(float64(scratch.sent))
	}
	return err
}

// fetchScratch holds the buffers one FETCH reuses from message to
// message rather than allocating them for each (10,000 FETCH FLAGS
// responses, or 100 bodies, per command are common). They live as long as
// the command: a session keeps no buffer between commands.
type fetchScratch struct {
	flags []imap.Flag // of one response: the library encodes them at once
	copy  []byte      // BODY[] from the store to the connection, made at the first
	sent  int64       // octets of body sections sent, for the metric
}

// copyBufferSize holds most messages whole: one read of the file each.
const copyBufferSize = 32 << 10

// eachMessage calls f with each of msgs and its sequence number. msgs are
// what store.Mailbox.Messages returned for the UIDs of targets: in their
// order, without the messages expunged meanwhile.
func eachMessage(targets []target, msgs []store.Message, f func(seq uint32, m *store.Message) error) error {
	j := 0
	for i := range msgs {
		m := &msgs[i]
		for j < len(targets) && targets[j].uid != m.UID {
			j++
		}
		if j == len(targets) {
			return fmt.Errorf("imapd: store returned UID %d out of order", m.UID)
		}
		if err := f(targets[j].seq, m); err != nil {
			return err
		}
		j++
	}
	return nil
}

func setsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// fetchOne writes the FETCH response of one message. Everything that can
// fail (opening the body, decoding BINARY) happens before the response is
// begun: a message expunged meanwhile gets no response rather than half
// of one.
func (sess *session) fetchOne(ctx context.Context, w *imapserver.FetchWriter, scratch *fetchScratch, seq uint32, m *store.Message, options *imap.FetchOptions, flagsChanged bool) error {
	c := fetchContent{sess: sess, ctx: ctx, m: m, scratch: scratch}
	defer c.close()
	if err := c.prepare(options); err != nil {
		if errors.Is(err, store.ErrNoSuchMessage) {
			return nil
		}
		return err
	}
	binaries := make([][]byte, len(options.BinarySection))
	for i, item := range options.BinarySection {
		b, err := c.parsed.binarySection(item.Part)
		if errors.Is(err, errUnknownCTE) {
			return no(imap.ResponseCodeUnknownCTE, fmt.Sprintf("unknown Content-Transfer-Encoding in message UID %d", m.UID))
		}
		binaries[i] = partial(b, item.Partial)
	}
	binarySizes := make([]uint32, len(options.BinarySectionSize))
	for i, item := range options.BinarySectionSize {
		b, err := c.parsed.binarySection(item.Part)
		if errors.Is(err, errUnknownCTE) {
			return no(imap.ResponseCodeUnknownCTE, fmt.Sprintf("unknown Content-Transfer-Encoding in message UID %d", m.UID))
		}
		binarySizes[i] = uint32(min(len(b), 1<<32-1))
	}

	resp := w.CreateMessage(seq)
	if options.UID {
		resp.WriteUID(imap.UID(m.UID))
	}
	if options.Flags || flagsChanged {
		scratch.flags = appendFlags(scratch.flags[:0], m.Flags)
		resp.WriteFlags(scratch.flags)
	}
	if options.InternalDate {
		resp.WriteInternalDate(m.InternalDate)
	}
	if options.RFC822Size {
		resp.WriteRFC822Size(m.Size)
	}
	if options.Envelope {
		resp.WriteEnvelope(envelope(c.header.fields))
	}
	if options.BodyStructure != nil {
		resp.WriteBodyStructure(c.parsed.bodyStructure(c.parsed.root))
	}
	var sent int64
	for _, item := range options.BodySection {
		n, err := c.writeBodySection(resp, item)
		sent += n
		if err != nil {
			resp.Close()
			return fmt.Errorf("fetch UID %d: %w", m.UID, err)
		}
	}
	for i, item := range options.BinarySection {
		if err := writeLiteral(resp.WriteBinarySection(item, int64(len(binaries[i]))), binaries[i]); err != nil {
			resp.Close()
			return err
		}
		sent += int64(len(binaries[i]))
	}
	for i, item := range options.BinarySectionSize {
		resp.WriteBinarySectionSize(item, binarySizes[i])
	}
	scratch.sent += sent
	return resp.Close()
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// fetchContent is what one message's FETCH reads from its body, each
// at most once.
type fetchContent struct {
	sess    *session
	ctx     context.Context
	m       *store.Message
	scratch *fetchScratch
	body    store.Body   // open when an item needs the content
	header  *part        // the top-level header, for ENVELOPE and HEADER sections
	parsed  *mimeMessage // the message, or only its header when !whole
	whole   bool         // parsed holds the whole message
}

func (c *fetchContent) close() {
	if c.body != nil {
		c.body.Close()
	}
}

// prepare opens and reads what options need.
func (c *fetchContent) prepare(options *imap.FetchOptions) error {
	needBody, needHeader := false, options.Envelope
	needParse := options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, item := range options.BodySection {
		switch {
		case len(item.Part) == 0 && item.Specifier == imap.PartSpecifierNone:
			needBody = true // streamed
		case len(item.Part) == 0 && item.Specifier == imap.PartSpecifierHeader:
			needHeader = true
		default:
			needParse = true
		}
	}
	if !needBody && !needHeader && !needParse {
		return nil
	}
	body, err := c.sess.sel.mb.Open(c.ctx, c.m.UID)
	if err != nil {
		if errors.Is(err, store.ErrNoSuchMessage) {
			return err
		}
		return c.sess.storeError("fetch open", err, false)
	}
	c.body = body
	if needParse {
		b, err := readAll(io.NewSectionReader(body, 0, c.m.Size), c.m.Size)
		if err != nil {
			return c.sess.storeError("fetch read", err, false)
		}
		c.parsed, c.whole = parseMessage(b), true
		c.header = c.parsed.root
		return nil
	}
	if needHeader {
		h, err := readHeader(io.NewSectionReader(body, 0, c.m.Size))
		if err != nil {
			return c.sess.storeError("fetch read", err, false)
		}
		c.header = headerOnly(h)
		c.parsed = &mimeMessage{b: h, root: c.header}
	}
	return nil
}

// writeBodySection writes one BODY[section]<partial> and returns the
// octets sent.
func (c *fetchContent) writeBodySection(resp *imapserver.FetchResponseWriter, item *imap.FetchItemBodySection) (int64, error) {
	if len(item.Part) == 0 && item.Specifier == imap.PartSpecifierNone && !c.whole {
		// The whole message, from the store.
		off, n := int64(0), c.m.Size
		if p := item.Partial; p != nil {
			off = min(max(p.Offset, 0), c.m.Size)
			n = min(max(p.Size, 0), c.m.Size-off)
		}
		if c.scratch.copy == nil {
			c.scratch.copy = make([]byte, copyBufferSize)
		}
		wc := resp.WriteBodySection(item, n)
		copied, err := io.CopyBuffer(wc, io.NewSectionReader(c.body, off, n), c.scratch.copy)
		if err == nil && copied < n {
			err = io.ErrUnexpectedEOF // the file is shorter than the store said
		}
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		return copied, err
	}
	b := partial(c.parsed.bodySection(item), item.Partial)
	return int64(len(b)), writeLiteral(resp.WriteBodySection(item, int64(len(b))), b)
}
