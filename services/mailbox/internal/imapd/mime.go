package imapd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// Limits of the MIME parser. A message may nest multiparts and
// message/rfc822 parts arbitrarily deep and hold any number of parts; past
// these bounds the rest is one opaque application/octet-stream part, so a
// hostile message costs bounded time, memory and stack.
const (
	maxMIMEDepth = 100
	maxMIMEParts = 10000
)

// field is one header field.
type field struct {
	name  string
	raw   []byte // the field as stored, continuation lines and line ends included
	value string // unfolded, trimmed
}

// part is one MIME entity of a message held in memory: its header is
// msg[start:bodyStart] (blank line included), its body msg[bodyStart:end]
// (RFC 2045, RFC 2046; a multipart body part ends before the line break
// that precedes the next boundary).
type part struct {
	start, bodyStart, end int
	fields                []field
	mediaType, subtype    string // lower case
	params                map[string]string
	multipart             bool
	children              []*part
	msg                   *part // the message inside message/rfc822 or message/global
}

// mimeMessage is a message read whole and parsed.
type mimeMessage struct {
	b    []byte
	root *part
}

func parseMessage(b []byte) *mimeMessage {
	n := 0
	return &mimeMessage{b: b, root: parseEntity(b, 0, len(b), 0, false, &n)}
}

// lineEnd returns the index just past the line starting at i within
// b[:end] (past its LF, or end).
func lineEnd(b []byte, i, end int) int {
	if j := bytes.IndexByte(b[i:end], '\n'); j >= 0 {
		return i + j + 1
	}
	return end
}

// isBlankLine reports whether b[i:j] is an empty line.
func isBlankLine(b []byte, i, j int) bool {
	l := b[i:j]
	return len(l) == 0 || string(l) == "\n" || string(l) == "\r\n" || string(l) == "\r"
}

// headerEnd returns where the body of the entity at b[start:end] begins:
// after the first blank line, or end when there is none.
func headerEnd(b []byte, start, end int) int {
	for i := start; i < end; {
		j := lineEnd(b, i, end)
		if isBlankLine(b, i, j) {
			return j
		}
		i = j
	}
	return end
}

// parseFields splits a header into fields. Lines that are neither a field
// nor a continuation (8-bit garbage, a missing colon) are skipped.
func parseFields(h []byte) []field {
	var fields []field
	fieldStart, fieldEnd := 0, -1 // the last field's extent in h
	for i := 0; i < len(h); {
		j := lineEnd(h, i, len(h))
		line := h[i:j]
		switch {
		case isBlankLine(h, i, j):
		case line[0] == ' ' || line[0] == '\t':
			if fieldEnd == i { // continues the field just before
				fields[len(fields)-1].raw = h[fieldStart:j]
				fieldEnd = j
			}
		default:
			if c := bytes.IndexByte(line, ':'); c > 0 {
				fields = append(fields, field{name: string(bytes.TrimSpace(line[:c])), raw: line})
				fieldStart, fieldEnd = i, j
			}
		}
		i = j
	}
	for k := range fields {
		f := &fields[k]
		v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
		// Unfold. Most fields are one line, whose line end TrimSpace
		// removes without a copy of the value.
		if bytes.ContainsAny(bytes.TrimRight(v, "\r\n"), "\r\n") {
			v = bytes.ReplaceAll(v, []byte("\r"), nil)
			v = bytes.ReplaceAll(v, []byte("\n"), nil)
		}
		f.value = string(bytes.TrimSpace(v))
	}
	return fields
}

// get returns the value of the first field named name, or "".
func (p *part) get(name string) string {
	for _, f := range p.fields {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// parseEntity parses the entity at b[start:end]. inDigest says its parent
// is multipart/digest, where the default type is message/rfc822 (RFC 2046
// section 5.1.5).
func parseEntity(b []byte, start, end, depth int, inDigest bool, count *int) *part {
	*count++
	p := &part{start: start, bodyStart: headerEnd(b, start, end), end: end}
	p.fields = parseFields(b[start:p.bodyStart])
	p.mediaType, p.subtype, p.params = "text", "plain", map[string]string{"charset": "us-ascii"}
	if inDigest {
		p.mediaType, p.subtype, p.params = "message", "rfc822", nil
	}
	if ct := p.get("Content-Type"); ct != "" {
		// A type that does not parse is text/plain (RFC 2045 section 5.2).
		if mt, params, err := mime.ParseMediaType(ct); err == nil {
			if typ, sub, ok := strings.Cut(mt, "/"); ok && typ != "" && sub != "" {
				p.mediaType, p.subtype, p.params = typ, sub, params
			}
		}
	}
	composite := p.mediaType == "multipart" || p.mediaType == "message" && (p.subtype == "rfc822" || p.subtype == "global")
	if composite && (depth >= maxMIMEDepth || *count >= maxMIMEParts) {
		p.mediaType, p.subtype, p.params = "application", "octet-stream", nil
		return p
	}
	switch {
	case p.mediaType == "multipart":
		p.children = parseMultipart(b, p.bodyStart, end, p.params["boundary"], depth, p.subtype == "digest", count)
		if len(p.children) == 0 {
			// No boundary or no part: BODYSTRUCTURE cannot describe an
			// empty multipart, so it is plain text.
			p.mediaType, p.subtype, p.params = "text", "plain", map[string]string{"charset": "us-ascii"}
			return p
		}
		p.multipart = true
	case p.mediaType == "message" && (p.subtype == "rfc822" || p.subtype == "global"):
		switch strings.ToLower(p.get("Content-Transfer-Encoding")) {
		case "base64", "quoted-printable":
			// Not allowed for message/rfc822 (RFC 2046 section 5.2.1):
			// an encoded message is opaque data, and described so,
			// since BODYSTRUCTURE would need its envelope.
			p.mediaType, p.subtype, p.params = "application", "octet-stream", nil
		default:
			p.msg = parseEntity(b, p.bodyStart, end, depth+1, false, count)
		}
	}
	return p
}

// parseMultipart splits a multipart body at its boundary delimiter lines
// (RFC 2046 section 5.1.1). A missing close delimiter ends the last part
// at the end of the body.
func parseMultipart(b []byte, start, end int, boundary string, depth int, digest bool, count *int) []*part {
	if boundary == "" {
		return nil
	}
	delim := []byte("--" + boundary)
	var parts []*part
	open := -1 // start of the part being read, or -1
	for i := start; i < end; {
		k := bytes.Index(b[i:end], delim)
		if k < 0 {
			break
		}
		ls := i + k
		le := lineEnd(b, ls, end)
		if ls != start && b[ls-1] != '\n' {
			i = ls + len(delim) // not at a line start
			continue
		}
		rest := bytes.TrimRight(b[ls+len(delim):le], " \t\r\n")
		closing := string(rest) == "--"
		if len(rest) > 0 && !closing {
			i = le // a longer boundary that begins with this one
			continue
		}
		if open >= 0 {
			pe := ls
			if pe > open && b[pe-1] == '\n' {
				pe--
				if pe > open && b[pe-1] == '\r' {
					pe--
				}
			}
			parts = append(parts, parseEntity(b, open, max(pe, open), depth+1, digest, count))
			if *count >= maxMIMEParts {
				return parts
			}
		}
		if closing {
			return parts
		}
		open = le
		i = le
	}
	if open >= 0 {
		parts = append(parts, parseEntity(b, open, end, depth+1, digest, count))
	}
	return parts
}

// find returns the part a section's part numbers name (RFC 9051 section
// 6.4.5): within a message, a non-multipart body is part 1; the parts of a
// message/rfc822 part are those of the message it holds. nil: no such
// part.
func (m *mimeMessage) find(path []int) *part {
	cur, isMessage := m.root, true
	for _, n := range path {
		var list []*part
		switch {
		case cur.multipart:
			list = cur.children
		case isMessage:
			list = []*part{cur}
		case cur.msg != nil:
			if cur.msg.multipart {
				list = cur.msg.children
			} else {
				list = []*part{cur.msg}
			}
		}
		if n < 1 || n > len(list) {
			return nil
		}
		cur, isMessage = list[n-1], false
	}
	return cur
}

// bodySection returns a FETCH BODY[section] (without partial): nil when
// the part does not exist, which is sent as an empty string.
func (m *mimeMessage) bodySection(item *imap.FetchItemBodySection) []byte {
	p := m.find(item.Part)
	if p == nil {
		return nil
	}
	switch item.Specifier {
	case imap.PartSpecifierNone:
		if len(item.Part) == 0 {
			return m.b
		}
		return m.b[p.bodyStart:p.end]
	case imap.PartSpecifierMIME:
		return m.b[p.start:p.bodyStart]
	}
	// HEADER and TEXT are of a message: the whole one, or the one inside
	// a message/rfc822 part.
	if len(item.Part) > 0 {
		if p = p.msg; p == nil {
			return nil
		}
	}
	if item.Specifier == imap.PartSpecifierText {
		return m.b[p.bodyStart:p.end]
	}
	return headerSection(m.b[p.start:p.bodyStart], p.fields, item)
}

// headerSection returns a header, or for HEADER.FIELDS (.NOT) the fields
// asked for as stored, followed by a blank line.
func headerSection(header []byte, fields []field, item *imap.FetchItemBodySection) []byte {
	if len(item.HeaderFields) == 0 && len(item.HeaderFieldsNot) == 0 {
		return header
	}
	var out []byte
	for _, f := range fields {
		listed := containsFold(item.HeaderFields, f.name) || containsFold(item.HeaderFieldsNot, f.name)
		if listed == (len(item.HeaderFields) > 0) {
			out = append(out, f.raw...)
			if !bytes.HasSuffix(f.raw, []byte("\n")) {
				out = append(out, '\r', '\n')
			}
		}
	}
	return append(out, '\r', '\n')
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// errUnknownCTE is a part whose Content-Transfer-Encoding BINARY cannot
// decode (RFC 3516 section 4.3: NO [UNKNOWN-CTE]).
var errUnknownCTE = errors.New("unknown content transfer encoding")

// binarySection returns FETCH BINARY[part] (without partial): the part's
// body with its transfer encoding undone. For the whole message (no part
// numbers) of a single-part message, that is its header and decoded body.
func (m *mimeMessage) binarySection(path []int) ([]byte, error) {
	p := m.find(path)
	if p == nil {
		return nil, nil
	}
	if len(path) == 0 && p.multipart {
		return m.b, nil
	}
	body, err := decodeCTE(p.get("Content-Transfer-Encoding"), m.b[p.bodyStart:p.end])
	if err != nil || len(path) > 0 {
		return body, err
	}
	return append(bytes.Clone(m.b[p.start:p.bodyStart]), body...), nil
}

// decodeCTE undoes a Content-Transfer-Encoding. Damaged base64 or
// quoted-printable yields what decodes; an unknown encoding is
// errUnknownCTE.
func decodeCTE(cte string, body []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return body, nil
	case "base64":
		return decodeBase64(body), nil
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		return out, nil
	}
	return nil, errUnknownCTE
}

// decodeBase64 decodes base64 leniently: characters outside the alphabet
// (line ends, garbage) are skipped and decoding stops at padding.
func decodeBase64(body []byte) []byte {
	clean := make([]byte, 0, len(body))
	for _, c := range body {
		switch {
		case c == '=':
			goto done
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		}
	}
done:
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean)
	return out[:n]
}

// textprotoHeader converts fields for go-imap's ExtractEnvelope; Get
// returns the last value added, so fields go in backwards.
func textprotoHeader(fields []field) textproto.Header {
	var h textproto.Header
	for i := len(fields) - 1; i >= 0; i-- {
		h.Add(fields[i].name, fields[i].value)
	}
	return h
}

func envelope(fields []field) *imap.Envelope {
	return imapserver.ExtractEnvelope(textprotoHeader(fields))
}

// bodyStructure describes p for BODYSTRUCTURE, extension data included
// (BODY is written from the same value without it).
func (m *mimeMessage) bodyStructure(p *part) imap.BodyStructure {
	disposition, language, location := partDisposition(p), partLanguage(p), p.get("Content-Location")
	if p.multipart {
		bs := &imap.BodyStructureMultiPart{Subtype: p.subtype, Extended: &imap.BodyStructureMultiPartExt{
			Params: p.params, Disposition: disposition, Language: language, Location: location,
		}}
		for _, c := range p.children {
			bs.Children = append(bs.Children, m.bodyStructure(c))
		}
		return bs
	}
	body := m.b[p.bodyStart:p.end]
	lines := int64(bytes.Count(body, []byte("\n")))
	bs := &imap.BodyStructureSinglePart{
		Type:        p.mediaType,
		Subtype:     p.subtype,
		Params:      p.params,
		ID:          p.get("Content-Id"),
		Description: p.get("Content-Description"),
		Encoding:    p.get("Content-Transfer-Encoding"),
		Size:        uint32(min(len(body), 1<<32-1)),
		Extended:    &imap.BodyStructureSinglePartExt{Disposition: disposition, Language: language, Location: location},
	}
	switch {
	case p.msg != nil:
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope: envelope(p.msg.fields), BodyStructure: m.bodyStructure(p.msg), NumLines: lines,
		}
	case p.mediaType == "text":
		bs.Text = &imap.BodyStructureText{NumLines: lines}
	}
	return bs
}

func partDisposition(p *part) *imap.BodyStructureDisposition {
	v := p.get("Content-Disposition")
	if v == "" {
		return nil
	}
	disp, params, err := mime.ParseMediaType(v)
	if err != nil {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func partLanguage(p *part) []string {
	v := p.get("Content-Language")
	if v == "" {
		return nil
	}
	var out []string
	for _, l := range strings.Split(v, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// readHeader reads a message's header, through its blank line, without
// reading the body.
func readHeader(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(r)
	var h []byte
	for {
		line, err := br.ReadSlice('\n')
		h = append(h, line...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return h, nil
		case err != nil:
			return nil, err
		}
		if string(line) == "\n" || string(line) == "\r\n" {
			return h, nil
		}
	}
}

// headerOnly is the top-level part of a message of which only the header
// was read.
func headerOnly(h []byte) *part {
	return &part{bodyStart: len(h), end: len(h), fields: parseFields(h)}
}

// partial applies a FETCH <offset.size> to a section (RFC 9051 section
// 6.4.5): the octets from offset, at most size of them.
func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset < 0 || p.Offset >= int64(len(b)) || p.Size <= 0 {
		return nil
	}
	n := min(int64(len(b))-p.Offset, p.Size)
	return b[p.Offset : p.Offset+n]
}
