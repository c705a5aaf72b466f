package maildir

import (
	"fmt"
	"strings"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// maxFileName is the longest file name Linux file systems take.
const maxFileName = 255

// diskName maps a canonical mailbox name (store.CanonicalName) to the name
// of its folder directory inside the user's Maildir, Maildir++ style: "" for
// INBOX (the Maildir itself), ".Sent" for Sent, ".Parent.Child" for
// Parent/Child, each level in modified UTF-7. Because a canonical name has
// no "." and no empty level, the result is one directory entry that starts
// with "." and is neither "." nor "..": it cannot leave the Maildir.
func diskName(name string) (string, error) {
	if name == store.Inbox {
		return "", nil
	}
	levels := strings.Split(name, store.Separator)
	for i, l := range levels {
		levels[i] = encodeMUTF7(l)
	}
	d := "." + strings.Join(levels, ".")
	if len(d) > maxFileName {
		return "", fmt.Errorf("%w: %q is too long on disk", store.ErrInvalidName, name)
	}
	return d, nil
}

// nameFromDisk is the inverse of diskName for a directory entry of a
// Maildir: ok is false for entries that are not folders we would have made
// (cur, tmp, dovecot's files, names in another encoding).
func nameFromDisk(entry string) (string, bool) {
	if len(entry) < 2 || entry[0] != '.' {
		return "", false
	}
	levels := strings.Split(entry[1:], ".")
	for i, l := range levels {
		d, err := decodeMUTF7(l)
		if err != nil {
			return "", false
		}
		levels[i] = d
	}
	name, err := store.CanonicalName(strings.Join(levels, store.Separator))
	if err != nil || name == store.Inbox {
		return "", false
	}
	if d, err := diskName(name); err != nil || d != entry {
		return "", false
	}
	return name, true
}
