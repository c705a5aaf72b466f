package maildir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Message file names follow the Maildir specification
// (https://cr.yp.to/proto/maildir.html) with dovecot's additions
// (https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/):
//
//	<sec>.M<usec>P<pid>Q<n>R<random>.<host>,S=<size>,W=<vsize>,U=<uid>:2,<flags>
//
// The part before ":" is the base name, unique within the Maildir and
// never changed; ",S=" is the file size and ",W=" its size with CRLF line
// ends (dovecot reads both to avoid a stat); after ":2," come the flags,
// one ASCII letter each in ASCII order. Dovecot maps lower-case letters to
// keywords through the dovecot-keywords file.
//
// ",U=" is postcove's: the UID the message was given when it was stored in
// this folder. It lets the index record of a delivery be written without
// an fsync of its own: after a crash that lost the record, the file in
// cur/ (whose directory was fsynced before the 250) still says its UID,
// and the scan at the next start indexes it under that UID again (see
// reconcile). Dovecot and Maildir MUAs treat the base name as opaque and
// ignore fields they do not know, as the Maildir spec allows.

var errBadFileName = errors.New("invalid maildir file name")

// fileName is a parsed message file name.
type fileName struct {
	base    string    // before ":"; the message's identity
	size    int64     // ",S=", or -1
	vsize   int64     // ",W=", or -1
	uid     store.UID // ",U=", or 0
	hasInfo bool      // ":2," present
	letters string    // flags after ":2,", as found
}

// parseFileName parses a directory entry of cur/ or new/. Unknown info
// (":1,...", fields it does not know) is kept in base or ignored, never an
// error; only names that cannot be message files are.
func parseFileName(name string) (fileName, error) {
	if name == "" || name[0] == '.' || strings.ContainsAny(name, "/\x00") {
		return fileName{}, fmt.Errorf("%w: %q", errBadFileName, name)
	}
	f := fileName{base: name, size: -1, vsize: -1}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		f.base = name[:i]
		if info := name[i+1:]; strings.HasPrefix(info, "2,") {
			f.hasInfo = true
			f.letters = info[2:]
		}
	}
	if f.base == "" {
		return fileName{}, fmt.Errorf("%w: %q", errBadFileName, name)
	}
	_, rest, _ := strings.Cut(f.base, ",")
	for rest != "" {
		var fld string
		fld, rest, _ = strings.Cut(rest, ",")
		key, val, ok := strings.Cut(fld, "=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			continue
		}
		switch key {
		case "S":
			f.size = n
		case "W":
			f.vsize = n
		case "U":
			if n <= int64(^uint32(0)) {
				f.uid = store.UID(n)
			}
		}
	}
	return f, nil
}

// name returns the file name with info letters.
func (f fileName) withLetters(letters string) string {
	return f.base + ":2," + letters
}

// id is the message's store.Message.ID: the unique part of the base name
// (before any ",field"), usable as a POP3 UIDL (1 to 70 characters from
// 0x21 to 0x7E, RFC 1939 section 7). A foreign name that does not fit is
// replaced by a hash of it.
func (f fileName) id() string {
	u, _, _ := strings.Cut(f.base, ",")
	ok := u != "" && len(u) <= 70
	for i := 0; ok && i < len(u); i++ {
		ok = u[i] > 0x20 && u[i] < 0x7f
	}
	if ok {
		return u
	}
	sum := sha256.Sum256([]byte(f.base))
	return "h" + hex.EncodeToString(sum[:16])
}

// uniqueName makes the unique part of a new base name. host is made safe
// per the spec ("/" and ":" octal-escaped, and "," because dovecot splits
// fields on it); random guards against equal pids in containers sharing a
// volume.
func uniqueName(now time.Time, pid int, counter uint64, random, host string) string {
	var b strings.Builder
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case c == '/':
			b.WriteString(`\057`)
		case c == ':':
			b.WriteString(`\072`)
		case c == ',':
			b.WriteString(`\054`)
		case c <= ' ' || c >= 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, pid, counter, random, b.String())
}

// baseName appends dovecot's ",S=" and, when known, ",W=" fields to
// unique, then postcove's ",U=".
func baseName(unique string, size, vsize int64, uid store.UID) string {
	s := unique + ",S=" + strconv.FormatInt(size, 10)
	if vsize >= 0 {
		s += ",W=" + strconv.FormatInt(vsize, 10)
	}
	return s + ",U=" + strconv.FormatUint(uint64(uid), 10)
}

// sortKey orders files for UID assignment during a rebuild: by the
// delivery time in the name (Maildir names start with it), then by name.
func sortKey(base string) (int64, string) {
	sec, _, _ := strings.Cut(base, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		n = 0
	}
	return n, base
}

// The flag letters of the Maildir spec that are IMAP flags. "P" (passed) is
// the $Forwarded keyword, as mutt and dovecot's pop3 tools treat it.
const forwarded = "$Forwarded"

func letterFlag(c byte) (string, bool) {
	switch c {
	case 'D':
		return store.FlagDraft, true
	case 'F':
		return store.FlagFlagged, true
	case 'P':
		return forwarded, true
	case 'R':
		return store.FlagAnswered, true
	case 'S':
		return store.FlagSeen, true
	case 'T':
		return store.FlagDeleted, true
	}
	return "", false
}

// flagsFromLetters maps info letters to flags; kw maps dovecot keyword
// letters ('a'..'z') to keywords and may be nil.
func flagsFromLetters(letters string, kw map[byte]string) []string {
	var flags []string
	for i := 0; i < len(letters); i++ {
		c := letters[i]
		if f, ok := letterFlag(c); ok {
			flags = append(flags, f)
		} else if k, ok := kw[c]; ok {
			flags = append(flags, k)
		}
	}
	flags, err := store.NormalizeFlags(flags)
	if err != nil {
		return nil // a keyword from dovecot-keywords that is not an atom
	}
	return flags
}

// lettersFromFlags is the inverse of flagsFromLetters, letters sorted as
// the spec wants.
func lettersFromFlags(flags []string, kw map[byte]string) string {
	var ls []byte
	for c := byte('A'); c <= 'Z'; c++ {
		if f, ok := letterFlag(c); ok && store.HasFlag(flags, f) {
			ls = append(ls, c)
		}
	}
	for c, k := range kw {
		if store.HasFlag(flags, k) {
			ls = append(ls, c)
		}
	}
	slices.Sort(ls)
	return string(ls)
}
