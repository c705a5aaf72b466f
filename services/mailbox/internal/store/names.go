package store

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Separator is the IMAP hierarchy separator of every mailbox name. On disk
// Maildir++ joins levels with "." instead (".Parent.Child"), which is why
// "." may not appear inside a name: "a.b" and "a/b" would be one folder.
// Dovecot with LAYOUT=maildir++ and a "/" separator refuses it the same way.
const Separator = "/"

// Inbox is the one mailbox every user has; its name is case-insensitive
// (RFC 9051 section 5.1).
const Inbox = "INBOX"

// The special mailboxes created for every new user, with the SPECIAL-USE
// attribute each carries (RFC 6154). Dovecot's stock configuration names
// them the same way.
const (
	Drafts  = "Drafts"
	Sent    = "Sent"
	Junk    = "Junk"
	Trash   = "Trash"
	Archive = "Archive"
)

// MaxNameLen bounds a mailbox name in bytes of UTF-8. The on-disk form
// (modified UTF-7, see store/maildir) must also fit a 255-byte file name;
// implementations check that themselves.
const MaxNameLen = 200

// DefaultMailboxes are the mailboxes a new user starts with, INBOX first.
func DefaultMailboxes() []string {
	return []string{Inbox, Drafts, Sent, Junk, Trash}
}

// SpecialUse returns the SPECIAL-USE attribute (RFC 6154) of a canonical
// mailbox name, or "". It goes by name, like dovecot's "special_use"
// settings in its default namespace.
func SpecialUse(name string) string {
	switch name {
	case Drafts:
		return `\Drafts`
	case Sent:
		return `\Sent`
	case Junk:
		return `\Junk`
	case Trash:
		return `\Trash`
	case Archive:
		return `\Archive`
	}
	return ""
}

// CanonicalName validates a mailbox name and returns its canonical form:
// "INBOX" for any case of it as the first level. A valid name is UTF-8 of at
// most MaxNameLen bytes, levels separated by single "/" with no empty level
// (so no leading or trailing "/": nothing looks like an absolute path), and
// it contains no control character (C0, DEL, C1), no "." (so no "." or ".."
// levels: nothing can climb out of the user's Maildir) and no "%" or "*"
// (LIST wildcards, RFC 9051 section 6.3.9).
func CanonicalName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidName, MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not UTF-8", ErrInvalidName)
	}
	for _, r := range name {
		switch {
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
			return "", fmt.Errorf("%w: control character %U", ErrInvalidName, r)
		case r == '.':
			return "", fmt.Errorf("%w: %q may not contain '.'", ErrInvalidName, name)
		case r == '%', r == '*':
			return "", fmt.Errorf("%w: %q may not contain %q", ErrInvalidName, name, r)
		}
	}
	levels := strings.Split(name, Separator)
	for _, l := range levels {
		if l == "" {
			return "", fmt.Errorf("%w: %q has an empty level", ErrInvalidName, name)
		}
	}
	if strings.EqualFold(levels[0], Inbox) {
		levels[0] = Inbox
	}
	return strings.Join(levels, Separator), nil
}

// Parent returns the name of the parent of a canonical name, or "".
func Parent(name string) string {
	i := strings.LastIndex(name, Separator)
	if i < 0 {
		return ""
	}
	return name[:i]
}

// IsInferior reports whether name is below parent in the hierarchy.
func IsInferior(name, parent string) bool {
	return strings.HasPrefix(name, parent+Separator)
}

// CompareNames orders mailbox names for LIST: INBOX first, then bytewise.
func CompareNames(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == Inbox:
		return -1
	case b == Inbox:
		return 1
	}
	return strings.Compare(a, b)
}

// RenameInbox implements RENAME of INBOX for any Mailboxes (RFC 9051
// section 6.3.6): a new mailbox receives every message of INBOX, which
// stays, empty.
func RenameInbox(ctx context.Context, m Mailboxes, newName string) error {
	if newName == Inbox || IsInferior(newName, Inbox) {
		return fmt.Errorf("%w: rename INBOX to %q", ErrNotAllowed, newName)
	}
	if err := m.Create(ctx, newName); err != nil {
		return err
	}
	inbox, err := m.Select(ctx, Inbox)
	if err != nil {
		return err
	}
	defer inbox.Close()
	_, _, err = inbox.Move(ctx, inbox.UIDs(), newName)
	return err
}
