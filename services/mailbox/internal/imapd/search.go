package imapd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/charset"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// criteria is an imap.SearchCriteria with its sequence and UID sets
// resolved against the view ("*" and "$" made concrete): sets[k][i]
// says whether message i+1 is in the k-th set.
type criteria struct {
	*imap.SearchCriteria
	sets []([]bool)
	not  []*criteria
	or   [][2]*criteria
	// body and text are c.Body and c.Text lower-cased.
	body, text [][]byte
}

func (sel *selected) compile(c *imap.SearchCriteria, n int) *criteria {
	out := &criteria{SearchCriteria: c, body: lowerAll(c.Body), text: lowerAll(c.Text)}
	add := func(set imap.NumSet) {
		in := make([]bool, n)
		for _, t := range sel.resolve(set) {
			in[t.seq-1] = true
		}
		out.sets = append(out.sets, in)
	}
	for _, s := range c.SeqNum {
		add(s)
	}
	for _, s := range c.UID {
		add(s)
	}
	for i := range c.Not {
		out.not = append(out.not, sel.compile(&c.Not[i], n))
	}
	for i := range c.Or {
		out.or = append(out.or, [2]*criteria{sel.compile(&c.Or[i][0], n), sel.compile(&c.Or[i][1], n)})
	}
	return out
}

func lowerAll(list []string) [][]byte {
	out := make([][]byte, len(list))
	for i, s := range list {
		out[i] = []byte(strings.ToLower(s))
	}
	return out
}

// Search answers SEARCH and UID SEARCH with every criterion the library
// parses (RFC 9051 section 6.4.4) and the ESEARCH return options. Flags,
// sizes, dates and UIDs come from one metadata call; a header or body is
// read only when a criterion needs it, one message at a time.
func (sess *session) Search(kind imapserver.NumKind, c *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	defer sess.lock()()
	sel := sess.sel
	if sel == nil {
		return nil, errNotSelected
	}
	uids := sel.mb.UIDs()
	compiled := sel.compile(c, len(uids))
	ctx, cancel := sess.ctx()
	defer cancel()
	msgs, err := sel.mb.Messages(ctx, uids)
	if err != nil {
		return nil, sess.storeError("search", err, false)
	}
	var (
		data       imap.SearchData
		seqSet     imap.SeqSet
		uidSet     imap.UIDSet
		matched    []store.UID
		minU, maxU store.UID
	)
	var scratch searchScratch
	j := 0 // msgs is the view minus expunged messages, in order
	for i, uid := range uids {
		if j >= len(msgs) || msgs[j].UID != uid {
			continue
		}
		sm := &searchMessage{sess: sess, ctx: ctx, seq: uint32(i + 1), m: &msgs[j], scratch: &scratch}
		j++
		ok, err := sm.match(compiled)
		sm.close()
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		num := sm.seq
		if kind == imapserver.NumKindUID {
			num = uint32(uid)
		}
		seqSet.AddNum(sm.seq)
		uidSet.AddNum(imap.UID(uid))
		matched = append(matched, uid)
		if data.Min == 0 {
			data.Min, minU = num, uid
		}
		data.Max, maxU = num, uid
		data.Count++
	}
	data.All = seqSet
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	}
	if options.ReturnSave {
		// RFC 5182 section 2.1: with only MIN and/or MAX, only those are
		// saved.
		if !options.ReturnAll && !options.ReturnCount && (options.ReturnMin || options.ReturnMax) {
			matched = nil
			if options.ReturnMin && minU != 0 {
				matched = append(matched, minU)
			}
			if options.ReturnMax && maxU != 0 && maxU != minU {
				matched = append(matched, maxU)
			}
		}
		sel.searchRes = matched
	}
	return &data, nil
}

// searchScratch holds the buffers one SEARCH reuses from message to
// message: what is read of a message and its text are needed only while
// it is evaluated, and allocating them for each of 10,000 messages made
// the garbage collector a good part of a TEXT search. They live as long
// as the command.
type searchScratch struct {
	message []byte // the message as stored
	text    []byte // decoded text before lower-casing
	lower   []byte // headerText and bodyText
}

// searchMessage is one message under evaluation, with what was read of
// it so far.
type searchMessage struct {
	sess    *session
	ctx     context.Context
	seq     uint32
	m       *store.Message
	scratch *searchScratch

	body       store.Body
	header     *part
	parsed     *mimeMessage
	headerText []byte // lower-cased decoded header, for TEXT
	bodyText   []byte // lower-cased decoded text parts, for BODY and TEXT
	gone       bool   // expunged meanwhile: matches nothing more
}

func (sm *searchMessage) close() {
	if sm.body != nil {
		sm.body.Close()
	}
}

// match evaluates c: cheap criteria first, then those that read the
// header, then those that read the body.
func (sm *searchMessage) match(c *criteria) (bool, error) {
	m := sm.m
	for _, in := range c.sets {
		if !in[sm.seq-1] {
			return false, nil
		}
	}
	for _, f := range c.Flag {
		if !store.HasFlag(m.Flags, string(f)) {
			return false, nil // \Recent included: it is never set
		}
	}
	for _, f := range c.NotFlag {
		if store.HasFlag(m.Flags, string(f)) {
			return false, nil
		}
	}
	if c.Larger > 0 && m.Size <= c.Larger || c.Smaller > 0 && m.Size >= c.Smaller {
		return false, nil
	}
	if !matchDate(m.InternalDate, c.Since, c.Before) {
		return false, nil
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		if err := sm.loadHeader(); err != nil || sm.gone {
			return false, err
		}
		for _, h := range c.Header {
			if !matchHeader(sm.header.fields, h.Key, h.Value) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			sent, err := mail.ParseDate(sm.header.get("Date"))
			if err != nil || !matchDate(sent, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
	}
	if len(c.Body) > 0 || len(c.Text) > 0 {
		if err := sm.loadText(); err != nil || sm.gone {
			return false, err
		}
		for _, s := range c.body {
			if !bytes.Contains(sm.bodyText, s) {
				return false, nil
			}
		}
		for _, s := range c.text {
			if !bytes.Contains(sm.headerText, s) && !bytes.Contains(sm.bodyText, s) {
				return false, nil
			}
		}
	}
	for _, n := range c.not {
		ok, err := sm.match(n)
		if err != nil || ok {
			return false, err
		}
	}
	for _, or := range c.or {
		ok, err := sm.match(or[0])
		if err == nil && !ok {
			ok, err = sm.match(or[1])
		}
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// matchDate compares the date of t, in its own zone, with SINCE and
// BEFORE dates: RFC 9051 section 6.4.4 disregards time and timezone.
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	y, mo, d := t.Date()
	day := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && day.Before(since) {
		return false
	}
	return before.IsZero() || day.Before(before)
}

// matchHeader: a field named key contains value, case-insensitively,
// after RFC 2047 decoding; an empty value matches any such field.
func matchHeader(fields []field, key, value string) bool {
	value = strings.ToLower(value)
	for _, f := range fields {
		if strings.EqualFold(f.name, key) && (value == "" || strings.Contains(strings.ToLower(decodeHeader(f.value)), value)) {
			return true
		}
	}
	return false
}

var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

func decodeHeader(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// read reads the message with f, opening it the first time; ok is false
// when it was expunged meanwhile.
func (sm *searchMessage) read(f func(io.Reader) ([]byte, error)) (b []byte, ok bool, err error) {
	if sm.gone {
		return nil, false, nil
	}
	if sm.body == nil {
		body, err := sm.sess.sel.mb.Open(sm.ctx, sm.m.UID)
		if errors.Is(err, store.ErrNoSuchMessage) {
			sm.gone = true
			return nil, false, nil
		}
		if err != nil {
			return nil, false, sm.sess.storeError("search open", err, false)
		}
		sm.body = body
	}
	if b, err = f(io.NewSectionReader(sm.body, 0, sm.m.Size)); err != nil {
		return nil, false, sm.sess.storeError("search read", err, false)
	}
	return b, true, nil
}

func (sm *searchMessage) loadHeader() error {
	if sm.header != nil {
		return nil
	}
	h, ok, err := sm.read(readHeader)
	if ok {
		sm.header = headerOnly(h)
	}
	return err
}

// loadText reads and parses the whole message and extracts its text,
// into the scratch buffers: nothing of it is kept once the message is
// evaluated.
func (sm *searchMessage) loadText() error {
	if sm.parsed != nil {
		return nil
	}
	sc := sm.scratch
	b, ok, err := sm.read(func(r io.Reader) ([]byte, error) {
		var err error
		sc.message, err = readAllInto(sc.message[:0], r, sm.m.Size)
		return sc.message, err
	})
	if !ok {
		return err
	}
	sm.parsed = parseMessage(b)
	sm.header = sm.parsed.root
	sc.text = appendHeaderText(sc.text[:0], sm.header.fields)
	headerEnd := len(sc.text)
	sc.text = sm.parsed.appendText(sc.text, sm.parsed.root)
	// Lowered separately: the two must not match across their border.
	sc.lower = appendLower(sc.lower[:0], sc.text[:headerEnd])
	n := len(sc.lower)
	sc.lower = appendLower(sc.lower, sc.text[headerEnd:])
	sm.headerText, sm.bodyText = sc.lower[:n:n], sc.lower[n:]
	return nil
}

// appendHeaderText appends a header's fields, decoded (not yet
// lower-cased).
func appendHeaderText(dst []byte, fields []field) []byte {
	for _, f := range fields {
		dst = append(dst, f.name...)
		dst = append(dst, ": "...)
		dst = append(dst, decodeHeader(f.value)...)
		dst = append(dst, '\n')
	}
	return dst
}

// appendLower appends s lower-cased as bytes.ToLower (and strings.ToLower)
// would, without their allocation when s is ASCII, as most mail text is.
func appendLower(dst, s []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(s))[:n+len(s)]
	out := dst[n:]
	for i, c := range s {
		if c >= utf8.RuneSelf {
			return append(dst[:n], bytes.ToLower(s)...)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return dst
}

// appendText appends the text of p's body: text parts decoded (transfer
// encoding and charset), and the header and text of attached messages.
// Other parts (images, archives) hold no searchable text.
func (m *mimeMessage) appendText(out []byte, p *part) []byte {
	switch {
	case p.multipart:
		for _, c := range p.children {
			out = m.appendText(out, c)
		}
	case p.msg != nil:
		out = appendHeaderText(out, p.msg.fields)
		out = m.appendText(out, p.msg)
	case p.mediaType == "text":
		body, err := decodeCTE(p.get("Content-Transfer-Encoding"), m.b[p.bodyStart:p.end])
		if err != nil {
			body = m.b[p.bodyStart:p.end]
		}
		if cs := strings.ToLower(p.params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
			if r, err := charset.Reader(cs, bytes.NewReader(body)); err == nil {
				if dec, err := io.ReadAll(r); err == nil {
					body = dec
				}
			}
		}
		out = append(out, body...)
		out = append(out, '\n')
	}
	return out
}
