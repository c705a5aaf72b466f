// Package store is the mailbox service's mail store contract: what LMTP
// delivery, the IMAP server and the POP3 server need from the place mail is
// kept, and nothing about how it is kept.
//
// Two implementations pass one test suite (storetest): store/maildir, the
// dovecot-compatible Maildir++ store used in production, and store/memstore,
// an in-memory reference that doubles as a test double (the role go-imap's
// imapmemserver plays for its server).
//
// The rules the interface encodes come from IMAP:
//
//   - UIDs are strictly ascending within a mailbox and never reused while its
//     UIDVALIDITY stays the same; a store that loses the UID of a message must
//     change UIDVALIDITY (RFC 3501 section 2.3.1.1, RFC 9051 section
//     2.3.1.1). A mailbox deleted and created again gets a new UIDVALIDITY.
//   - MODSEQ grows with every change to a message and with every expunge, and
//     HIGHESTMODSEQ is the largest one given out (RFC 7162 section 3.1).
//   - A session sees expunges only when it asks (Poll with allowExpunge), so
//     message sequence numbers stay valid during FETCH, STORE and SEARCH (RFC
//     9051 section 7.5.1); the View type keeps that per-session state.
//
// Mailbox names are UTF-8 (IMAP4rev2 and the UTF8=ACCEPT world; the IMAP
// layer decodes modified UTF-7 from IMAP4rev1 clients) with "/" as the
// hierarchy separator; CanonicalName says which names are valid.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors with a definite meaning. Callers test them with errors.Is; any
// other error is an I/O failure (disk full, permission, a lost volume) that
// the protocols answer as temporary (LMTP 451/452, IMAP NO).
var (
	// ErrNoSuchMailbox: the mailbox does not exist (IMAP NO [NONEXISTENT]).
	ErrNoSuchMailbox = errors.New("no such mailbox")
	// ErrMailboxExists: CREATE or RENAME to a name already taken
	// (IMAP NO [ALREADYEXISTS]).
	ErrMailboxExists = errors.New("mailbox already exists")
	// ErrInvalidName: the name is not a valid mailbox name, or the address
	// is not a valid user (IMAP NO [CANNOT]).
	ErrInvalidName = errors.New("invalid mailbox name")
	// ErrNotAllowed: the operation is never allowed on that mailbox, such as
	// deleting INBOX (IMAP NO [CANNOT]).
	ErrNotAllowed = errors.New("operation not allowed on this mailbox")
	// ErrInvalidFlag: a flag is neither a settable system flag nor a valid
	// keyword atom (IMAP BAD).
	ErrInvalidFlag = errors.New("invalid flag")
	// ErrQuotaExceeded: storing the message would take the user over quota
	// (LMTP 552 5.2.2, IMAP NO [OVERQUOTA]).
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrTooBig: the message is larger than the store accepts
	// (LMTP 552 5.3.4, IMAP NO [TOOBIG]).
	ErrTooBig = errors.New("message too big")
	// ErrNoSuchMessage: the message has been expunged (by this or another
	// session) or never existed (IMAP NO [EXPUNGEISSUED] or nothing).
	ErrNoSuchMessage = errors.New("no such message")
	// ErrUIDValidityChanged: the mailbox was recreated or its index rebuilt
	// while a session had it selected. The IMAP session must end
	// (BYE) so that the client resynchronises from scratch.
	ErrUIDValidityChanged = errors.New("mailbox UIDVALIDITY changed")
	// ErrClosed: the handle or store was closed.
	ErrClosed = errors.New("store closed")
)

// UID is an IMAP unique identifier: 1 or more, ascending within a mailbox.
type UID uint32

// System flags (RFC 9051 section 2.3.2). \Recent is not stored: IMAP4rev2
// dropped it and a store shared by several processes cannot say which
// session is the first to see a message.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Message is what a store knows about one message, without its body.
// Slices in a Message are shared and must not be modified.
type Message struct {
	UID UID
	// ID is unique within the mailbox and stable for the life of the
	// message, also across index rebuilds (in Maildir it is the file's base
	// name, which is what dovecot calls the maildir GUID). It suits a POP3
	// UIDL (RFC 1939 section 7) and never contains spaces or control
	// characters. A copied message gets a new ID.
	ID string
	// Flags are sorted; system flags in their canonical spelling, keywords
	// as first given.
	Flags        []string
	ModSeq       uint64
	Size         int64     // octets, as stored (RFC 822 size, CRLF or not)
	InternalDate time.Time // IMAP INTERNALDATE; delivery time unless APPEND set one
}

// Status is a mailbox's state for SELECT, STATUS and LIST-STATUS.
type Status struct {
	Name          string
	UIDValidity   uint32
	UIDNext       UID
	HighestModSeq uint64
	Messages      uint32
	Unseen        uint32 // messages without \Seen
	Deleted       uint32 // messages with \Deleted
	Size          int64  // sum of message sizes (STATUS SIZE, RFC 8438)
	// Keywords in use in the mailbox, sorted: the FLAGS and PERMANENTFLAGS
	// responses list them next to the system flags.
	Keywords []string
}

// MailboxInfo is one LIST entry.
type MailboxInfo struct {
	Name       string
	SpecialUse string // `\Sent`, `\Drafts`, `\Junk`, `\Trash`, `\Archive` or ""
	Subscribed bool
}

// Quota is a user's storage use (RFC 9208 STORAGE and MESSAGE resources).
type Quota struct {
	UsedBytes    int64
	UsedMessages int64
	LimitBytes   int64 // 0: unlimited
}

// AppendOptions are the optional parts of APPEND and delivery.
type AppendOptions struct {
	Flags        []string
	InternalDate time.Time // zero: now
}

// AppendResult is the UIDPLUS answer to an APPEND (RFC 4315 APPENDUID).
type AppendResult struct {
	UIDValidity uint32
	UID         UID
	Size        int64
}

// FlagOp says how SetFlags combines flags with a message's current ones.
type FlagOp int

const (
	FlagsReplace FlagOp = iota // STORE FLAGS
	FlagsAdd                   // STORE +FLAGS
	FlagsRemove                // STORE -FLAGS
)

// StoreResult is the outcome of SetFlags.
type StoreResult struct {
	// Updated are the messages whose flags changed, with their new flags
	// and MODSEQ, in UID order. Messages whose flags were already as asked
	// are not in it and keep their MODSEQ.
	Updated []Message
	// Modified are the UIDs refused because their MODSEQ was above
	// unchangedSince (CONDSTORE, RFC 7162 section 3.1.3).
	Modified []UID
}

// CopyResult is the UIDPLUS answer to COPY and MOVE (RFC 4315 COPYUID):
// SourceUIDs[i] was copied to DestUIDs[i]. Messages expunged in the
// meantime are left out of both.
type CopyResult struct {
	UIDValidity uint32 // of the destination
	SourceUIDs  []UID
	DestUIDs    []UID
}

// Store is a mail store for many users. It is safe for concurrent use.
type Store interface {
	// User opens the mail of address ("local@domain", already canonical:
	// the auth service vouches for it). The first call for a user creates
	// INBOX and the special mailboxes (DefaultMailboxes), subscribed.
	User(ctx context.Context, address string) (Mailboxes, error)
	Close() error
}

// Mailboxes is one user's set of mailboxes: the IMAP authenticated state,
// POP3's maildrop (INBOX) and LMTP's delivery target. It is safe for
// concurrent use; other handles for the same user, in this process or in
// another one, see its changes.
type Mailboxes interface {
	// List returns every mailbox, INBOX first then sorted by name.
	List(ctx context.Context) ([]MailboxInfo, error)
	// Subscriptions returns the subscribed names, sorted; they may name
	// mailboxes that no longer exist (LIST (SUBSCRIBED) shows those as
	// \NonExistent).
	Subscriptions(ctx context.Context) ([]string, error)
	Create(ctx context.Context, name string) error
	// Delete removes a mailbox and its messages; its children stay.
	// Deleting INBOX is ErrNotAllowed.
	Delete(ctx context.Context, name string) error
	// Rename renames a mailbox and its children. Renaming INBOX moves its
	// messages into a new mailbox and leaves INBOX empty (RFC 9051 section
	// 6.3.6).
	Rename(ctx context.Context, oldName, newName string) error
	SetSubscribed(ctx context.Context, name string, subscribed bool) error
	Status(ctx context.Context, name string) (Status, error)

	// Append stores a message: it returns only once the message is durable
	// (file and directory synced), so LMTP may answer 250 and IMAP OK.
	Append(ctx context.Context, name string, r io.Reader, opts AppendOptions) (AppendResult, error)

	// Select opens a mailbox for a session (IMAP SELECT/EXAMINE, POP3
	// maildrop). The handle's view holds the messages present now.
	Select(ctx context.Context, name string) (Mailbox, error)

	Quota(ctx context.Context) (Quota, error)
	// SetQuotaLimit records the user's limit (from auth); 0 is unlimited.
	SetQuotaLimit(ctx context.Context, limitBytes int64) error

	Close() error
}

// Mailbox is one session's handle on a selected mailbox. It has a view: the
// UIDs the session has been told about, which changes only through Poll
// and through this handle's own Expunge and Move. A Mailbox is used by one
// session; Updates may be read from another goroutine.
type Mailbox interface {
	Name() string
	// Status is the mailbox's current state in the store, which may be
	// ahead of the view.
	Status(ctx context.Context) (Status, error)
	// Selected is the mailbox's state when Select took the view: the
	// state its UIDs describe (UIDNEXT above all of them and no message
	// the view lacks), taken without another look at the store.
	Selected() Status
	// UIDs is the view: message sequence number n is UIDs()[n-1]. The slice
	// is valid until the next Poll, Expunge or Move and must not be
	// modified.
	UIDs() []UID
	// Messages returns the current metadata of uids, in the order given,
	// leaving out those that are expunged. It also brings the view's record
	// of their flags up to date, so a later Poll does not report them again.
	Messages(ctx context.Context, uids []UID) ([]Message, error)
	// Open returns the body of a message (ErrNoSuchMessage when expunged).
	Open(ctx context.Context, uid UID) (Body, error)

	// SetFlags changes the flags of uids (keywords included) and gives
	// each changed message a new MODSEQ. unchangedSince 0 means no
	// CONDSTORE condition.
	SetFlags(ctx context.Context, uids []UID, op FlagOp, flags []string, unchangedSince uint64) (StoreResult, error)
	// Copy copies uids to dest with their flags and internal dates.
	Copy(ctx context.Context, uids []UID, dest string) (CopyResult, error)
	// Move copies uids to dest, then expunges them here. The returned
	// expunges are already removed from the view; announce them.
	Move(ctx context.Context, uids []UID, dest string) (CopyResult, []Expunged, error)
	// Expunge removes the messages flagged \Deleted, among uids or all of
	// them when uids is nil (UID EXPUNGE / EXPUNGE). The returned expunges
	// are already removed from the view; announce them in order.
	Expunge(ctx context.Context, uids []UID) ([]Expunged, error)

	// Poll brings the view up to date with the store (changes by this
	// handle, other sessions and other processes) and says what changed.
	// With allowExpunge false, expunged messages stay in the view (their
	// sequence numbers must not shift) and are reported by a later Poll.
	// ErrUIDValidityChanged and ErrNoSuchMailbox end the session.
	Poll(ctx context.Context, allowExpunge bool) (Changes, error)
	// Updates receives a value, coalesced, whenever the mailbox may have
	// changed (within about a second when the change was made by another
	// process); the receiver then calls Poll. For IMAP IDLE.
	Updates() <-chan struct{}

	Close() error
}

// Body is a message's content, readable in order or at offsets (FETCH
// BODY[]<partial>).
type Body interface {
	io.ReadSeekCloser
	io.ReaderAt
}

// Expunged is one EXPUNGE response: SeqNum is valid at the moment it is
// sent, given that the ones before it in the slice were sent first.
type Expunged struct {
	UID    UID
	SeqNum uint32
}

// Updated is one FETCH (FLAGS MODSEQ) response after Poll.
type Updated struct {
	SeqNum uint32
	Message
}

// Changes is what Poll found, in the order to announce it: Expunged (EXPUNGE
// responses), then NumMessages (EXISTS, when New is not empty), then Updated
// (FETCH FLAGS), whose sequence numbers are those after the expunges and the
// new messages.
type Changes struct {
	Expunged    []Expunged
	New         []Message
	NumMessages uint32
	Updated     []Updated
	// Keywords is the mailbox's keyword list when it gained a keyword the
	// session has not seen (send FLAGS first), else nil.
	Keywords []string
}

// Empty reports whether there is nothing to announce.
func (c Changes) Empty() bool {
	return len(c.Expunged) == 0 && len(c.New) == 0 && len(c.Updated) == 0 && c.Keywords == nil
}
