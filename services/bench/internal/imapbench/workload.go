package imapbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/postcove/postcove/services/bench/internal/imapclient"
)

// An op is one measured IMAP operation. Those with a session run on a
// connection per worker that is logged in (and has the mailbox selected)
// before the measurement; the others make their own connection.
type op struct {
	label string
	// user logs in; mailbox is selected first (session ops) or by the op.
	user    string
	session bool
	do      func(ctx context.Context, s *side, c *imapclient.Client, rng *rand.Rand) error
}

// Mailbox users: one with the --messages mailbox, one with the
// --select-messages one.
const (
	fetchUser = "fetch@" + domain
	bigUser   = "big@" + domain
)

// bodiesPerFetch is the number of messages one UID FETCH BODY[] asks for.
const bodiesPerFetch = 100

// ops are the rows of the table, in order.
func (b *bench) ops() []op {
	return []op{
		{label: "login+select", user: fetchUser, do: b.loginSelect},
		{label: "FETCH 1:* (FLAGS)", user: fetchUser, session: true, do: b.fetchFlags},
		{label: fmt.Sprintf("UID FETCH %d × BODY.PEEK[]", bodiesPerFetch), user: fetchUser, session: true, do: b.fetchBodies},
		{label: "SEARCH TEXT", user: fetchUser, session: true, do: b.searchText},
		{label: fmt.Sprintf("SELECT %s msgs, warm", count(b.opts.SelectMessages)), user: bigUser, session: true, do: b.selectBig},
	}
}

// loginSelect is a client's session start on a new connection: greeting,
// LOGIN, SELECT INBOX (checked), LOGOUT.
func (b *bench) loginSelect(ctx context.Context, s *side, _ *imapclient.Client, _ *rand.Rand) error {
	c, err := imapclient.Dial(ctx, s.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(ctx, fetchUser, b.password); err != nil {
		return err
	}
	n, err := c.Select(ctx, "INBOX")
	if err != nil {
		return err
	}
	if n != b.small.messages {
		return fmt.Errorf("SELECT INBOX: %d EXISTS, want %d", n, b.small.messages)
	}
	return c.Logout(ctx)
}

// fetchFlags asks for every message's flags and checks the counts of
// each system flag against the file names' (\Recent, which dovecot gives
// a first session, is not counted).
func (b *bench) fetchFlags(ctx context.Context, _ *side, c *imapclient.Client, _ *rand.Rand) error {
	var got expected
	err := c.Command(ctx, "FETCH 1:* (FLAGS)", func(u imapclient.Untagged) error {
		flags, ok := fetchFlags(u.Line)
		if !ok {
			return nil // not a FETCH: EXISTS, a status
		}
		got.messages++
		for _, f := range bytes.Fields(flags) {
			switch string(bytes.ToLower(f)) {
			case `\seen`:
				got.seen++
			case `\flagged`:
				got.flagged++
			case `\answered`:
				got.answered++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	want := b.small
	want.withWord = 0
	if got != want {
		return fmt.Errorf("FETCH 1:* (FLAGS): %d messages, %d \\Seen, %d \\Flagged, %d \\Answered; want %d, %d, %d, %d",
			got.messages, got.seen, got.flagged, got.answered, want.messages, want.seen, want.flagged, want.answered)
	}
	return nil
}

// fetchFlags returns the inside of FLAGS (...) of a "n FETCH (...)"
// response.
func fetchFlags(line []byte) ([]byte, bool) {
	if !bytes.Contains(line, []byte(" FETCH (")) {
		return nil, false
	}
	i := bytes.Index(line, []byte("FLAGS ("))
	if i < 0 {
		return nil, false
	}
	rest := line[i+len("FLAGS ("):]
	j := bytes.IndexByte(rest, ')')
	if j < 0 {
		return nil, false
	}
	return rest[:j], true
}

// fetchBodies fetches the whole of bodiesPerFetch messages with
// consecutive UIDs from a random place (one command: one op) and checks
// each body byte for byte. BODY.PEEK, as mail clients fetch: BODY[] would
// set \Seen, a flag write that would change what FETCH FLAGS checks.
func (b *bench) fetchBodies(ctx context.Context, s *side, c *imapclient.Client, rng *rand.Rand) error {
	n := min(bodiesPerFetch, len(s.uids))
	first := rng.IntN(len(s.uids) - n + 1)
	set := fmt.Sprintf("%d:%d", s.uids[first], s.uids[first+n-1])
	got := 0
	err := c.Command(ctx, "UID FETCH "+set+" (BODY.PEEK[])", func(u imapclient.Untagged) error {
		if !bytes.Contains(u.Line, []byte(" FETCH (")) {
			return nil
		}
		if len(u.Literals) != 1 {
			return fmt.Errorf("UID FETCH %s: a response with %d literals, want the body: %.100q", set, len(u.Literals), u.Line)
		}
		got++
		return b.corpus.checkBody(u.Literals[0])
	})
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("UID FETCH %s (BODY.PEEK[]): %d bodies, want %d", set, got, n)
	}
	return nil
}

// searchText searches every message's header and text for searchWord.
func (b *bench) searchText(ctx context.Context, _ *side, c *imapclient.Client, _ *rand.Rand) error {
	found := -1
	err := c.Command(ctx, "SEARCH TEXT "+imapclient.Quote(searchWord), func(u imapclient.Untagged) error {
		if rest, ok := bytes.CutPrefix(u.Line, []byte("SEARCH")); ok {
			found = len(bytes.Fields(rest))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if found != b.small.withWord {
		return fmt.Errorf("SEARCH TEXT %q: %d messages, want %d", searchWord, found, b.small.withWord)
	}
	return nil
}

// selectBig selects the big mailbox again on a session that has it
// selected already: the warm SELECT.
func (b *bench) selectBig(ctx context.Context, _ *side, c *imapclient.Client, _ *rand.Rand) error {
	n, err := c.Select(ctx, "INBOX")
	if err != nil {
		return err
	}
	if n != b.opts.SelectMessages {
		return fmt.Errorf("SELECT INBOX: %d EXISTS, want %d", n, b.opts.SelectMessages)
	}
	return nil
}

// session opens a connection as user, logged in, with INBOX
// selected (its EXISTS checked).
func (b *bench) session(ctx context.Context, s *side, user string) (*imapclient.Client, error) {
	c, err := imapclient.Dial(ctx, s.addr)
	if err != nil {
		return nil, err
	}
	n, err := 0, c.Login(ctx, user, b.password)
	if err == nil {
		n, err = c.Select(ctx, "INBOX")
	}
	if want := b.mailboxSize(user); err == nil && n != want {
		err = fmt.Errorf("SELECT INBOX of %s: %d EXISTS, want %d", user, n, want)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (b *bench) mailboxSize(user string) int {
	if user == bigUser {
		return b.opts.SelectMessages
	}
	return b.opts.Messages
}

// listUIDs returns the UIDs of the fetch mailbox, ascending.
func (b *bench) listUIDs(ctx context.Context, s *side) ([]uint32, error) {
	c, err := b.session(ctx, s, fetchUser)
	if err != nil {
		return nil, err
	}
	defer c.Logout(ctx) //nolint:errcheck // the answer is checked below
	var uids []uint32
	err = c.Command(ctx, "UID SEARCH ALL", func(u imapclient.Untagged) error {
		rest, ok := bytes.CutPrefix(u.Line, []byte("SEARCH"))
		if !ok {
			return nil
		}
		for _, f := range bytes.Fields(rest) {
			n, err := strconv.ParseUint(string(f), 10, 32)
			if err != nil {
				return fmt.Errorf("UID SEARCH ALL: bad UID %q", f)
			}
			uids = append(uids, uint32(n))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(uids) != b.opts.Messages {
		return nil, fmt.Errorf("UID SEARCH ALL: %d UIDs, want %d", len(uids), b.opts.Messages)
	}
	for i := 1; i < len(uids); i++ {
		if uids[i] <= uids[i-1] {
			return nil, errors.New("UID SEARCH ALL: UIDs not ascending")
		}
	}
	return uids, nil
}

// count formats a message count: 10k, 100k, 2500.
func count(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}
