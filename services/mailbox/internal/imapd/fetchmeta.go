package imapd

import (
	"strconv"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// FETCH of metadata only (FLAGS, UID, INTERNALDATE, RFC822.SIZE: what a
// client resynchronising a mailbox asks for every message) is answered by
// writing the responses here rather than through imapserver's
// FetchWriter. The library spends more on each response (an encoder and
// two writers allocated, a lock, two write deadlines, a flush, a string
// for every parenthesis) than on the rest of the command, and FETCH 1:*
// FLAGS is 10,000 responses or more.
//
// Writing beside the library is safe because it keeps nothing buffered
// between responses (each ends with a flush) and the session's goroutine
// is the only writer while a command runs; the bytes go to the
// connection the library writes to (the TLS one after STARTTLS).

// metaWriteTimeout is the library's own bound for writing a response.
const metaWriteTimeout = 30 * time.Second

// metaFlushSize is how much output is gathered before it is written.
const metaFlushSize = 32 << 10

// dateTimeLayout is IMAP's date-time (RFC 9051 section 9), as imapserver
// writes INTERNALDATE.
const dateTimeLayout = "_2-Jan-2006 15:04:05 -0700"

// metadataOnly reports whether options ask only for what
// appendFetchMetadata writes.
func metadataOnly(o *imap.FetchOptions) bool {
	return o.BodyStructure == nil && !o.Envelope && len(o.BodySection) == 0 && len(o.BinarySection) == 0 &&
		len(o.BinarySectionSize) == 0 && !o.ModSeq && o.ChangedSince == 0
}

// plainFlags reports whether every flag of every message is an atom that
// can be written as it is (always, for flags the store accepted); the
// library path handles anything else.
func plainFlags(msgs []store.Message) bool {
	var last []string // flag lists are mostly shared: check each once
	for i := range msgs {
		fl := msgs[i].Flags
		if len(fl) == 0 || len(last) == len(fl) && &last[0] == &fl[0] {
			continue
		}
		for _, f := range fl {
			if !isPlainFlag(f) {
				return false
			}
		}
		last = fl
	}
	return true
}

// isPlainFlag reports whether f is a flag atom (RFC 9051 section 9, flag):
// an optional leading backslash, then ASCII atom characters.
func isPlainFlag(f string) bool {
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		switch c := f[i]; {
		case c == '\\' && i == 0:
		case c <= ' ' || c >= 0x7f:
			return false
		case c == '(' || c == ')' || c == '{' || c == '%' || c == '*' || c == '"' || c == '\\' || c == ']':
			return false
		}
	}
	return len(f) > 1 || f[0] != '\\'
}

// appendFetchMetadata appends one FETCH response, items in the order
// fetchOne writes them.
func appendFetchMetadata(b []byte, seq uint32, m *store.Message, o *imap.FetchOptions) []byte {
	b = append(b, "* "...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	b = append(b, " FETCH ("...)
	sep := false
	item := func(name string) {
		if sep {
			b = append(b, ' ')
		}
		sep = true
		b = append(b, name...)
	}
	if o.UID {
		item("UID ")
		b = strconv.AppendUint(b, uint64(m.UID), 10)
	}
	if o.Flags {
		item("FLAGS (")
		for i, f := range m.Flags {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, f...)
		}
		b = append(b, ')')
	}
	if o.InternalDate {
		item(`INTERNALDATE "`)
		b = m.InternalDate.AppendFormat(b, dateTimeLayout)
		b = append(b, '"')
	}
	if o.RFC822Size {
		item("RFC822.SIZE ")
		b = strconv.AppendInt(b, m.Size, 10)
	}
	return append(b, ")\r\n"...)
}

// writeMetadata writes the FETCH responses of msgs (store.Mailbox.Messages
// of targets' UIDs) straight to the connection.
func (sess *session) writeMetadata(targets []target, msgs []store.Message, options *imap.FetchOptions) error {
	conn := sess.conn.NetConn()
	buf := make([]byte, 0, metaFlushSize+512)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		conn.SetWriteDeadline(time.Now().Add(metaWriteTimeout))
		_, err := conn.Write(buf)
		conn.SetWriteDeadline(time.Time{})
		buf = buf[:0]
		return err
	}
	err := eachMessage(targets, msgs, func(seq uint32, m *store.Message) error {
		buf = appendFetchMetadata(buf, seq, m, options)
		if len(buf) >= metaFlushSize {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
