package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// An operator moving off dovecot points postcove at the existing Maildirs.
// So that IMAP clients keep their caches, the first time postcove indexes a
// folder it takes UIDVALIDITY and the UIDs from dovecot's dovecot-uidlist
// (https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/):
//
//	3 V<uidvalidity> N<nextuid> G<guid> [more fields]
//	<uid> [<ext fields>] :<file base name>
//
// or, in the Courier-compatible version 1:
//
//	1 <uidvalidity> <nextuid>
//	<uid> <file base name>
//
// and the keyword letters of file names from dovecot-keywords ("<n>
// <keyword>" lines, n 0 for 'a' up to 25 for 'z').

const (
	uidListFile  = "dovecot-uidlist"
	keywordsFile = "dovecot-keywords"
)

var errBadUIDList = errors.New("invalid dovecot-uidlist")

// uidList is a parsed dovecot-uidlist.
type uidList struct {
	uidValidity uint32
	nextUID     store.UID
	uids        map[string]store.UID // file base name → UID
}

func parseUIDList(data []byte) (uidList, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxRecordLen)
	if !sc.Scan() {
		return uidList{}, fmt.Errorf("%w: no header", errBadUIDList)
	}
	l := uidList{uids: make(map[string]store.UID)}
	hdr := strings.Fields(sc.Text())
	if len(hdr) < 3 {
		return uidList{}, fmt.Errorf("%w: short header", errBadUIDList)
	}
	version := hdr[0]
	switch version {
	case "1":
		uv, err1 := strconv.ParseUint(hdr[1], 10, 32)
		next, err2 := strconv.ParseUint(hdr[2], 10, 32)
		if err1 != nil || err2 != nil {
			return uidList{}, fmt.Errorf("%w: bad header", errBadUIDList)
		}
		l.uidValidity, l.nextUID = uint32(uv), store.UID(next)
	case "3":
		for _, f := range hdr[1:] {
			n, err := strconv.ParseUint(f[1:], 10, 32)
			switch f[0] {
			case 'V':
				if err != nil {
					return uidList{}, fmt.Errorf("%w: bad V", errBadUIDList)
				}
				l.uidValidity = uint32(n)
			case 'N':
				if err != nil {
					return uidList{}, fmt.Errorf("%w: bad N", errBadUIDList)
				}
				l.nextUID = store.UID(n)
			}
		}
	default:
		return uidList{}, fmt.Errorf("%w: version %q", errBadUIDList, version)
	}
	if l.uidValidity == 0 || l.nextUID == 0 {
		return uidList{}, fmt.Errorf("%w: no UIDVALIDITY or next UID", errBadUIDList)
	}
	var last store.UID
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		uidStr, rest, ok := strings.Cut(line, " ")
		if !ok {
			return uidList{}, fmt.Errorf("%w: line %q", errBadUIDList, line)
		}
		uid, err := strconv.ParseUint(uidStr, 10, 32)
		if err != nil || uid == 0 || store.UID(uid) <= last || store.UID(uid) >= l.nextUID {
			return uidList{}, fmt.Errorf("%w: uid %q", errBadUIDList, uidStr)
		}
		last = store.UID(uid)
		name := rest
		if version == "3" {
			i := strings.Index(" "+rest, " :")
			if i < 0 {
				return uidList{}, fmt.Errorf("%w: line %q has no file name", errBadUIDList, line)
			}
			name = rest[i+1:]
		}
		fn, err := parseFileName(name)
		if err != nil {
			return uidList{}, fmt.Errorf("%w: %w", errBadUIDList, err)
		}
		l.uids[fn.base] = last
	}
	if err := sc.Err(); err != nil {
		return uidList{}, fmt.Errorf("%w: %w", errBadUIDList, err)
	}
	return l, nil
}

// parseKeywords parses dovecot-keywords into letter → keyword. Lines it
// cannot use are skipped: keywords are a nicety, not worth refusing a
// folder over.
func parseKeywords(data []byte) map[byte]string {
	kw := make(map[byte]string)
	for _, line := range strings.Split(string(data), "\n") {
		idx, word, ok := strings.Cut(strings.TrimSpace(line), " ")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 || n > 25 {
			continue
		}
		if fl, err := store.NormalizeFlags([]string{word}); err == nil && len(fl) == 1 && !strings.HasPrefix(word, `\`) {
			kw[byte('a'+n)] = word
		}
	}
	return kw
}
