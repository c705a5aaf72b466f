package imapd

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestIdle: IDLE is woken by a delivery from another store handle (as
// LMTP delivers) and by another session's STORE and EXPUNGE.
func TestIdle(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		c := ts.selectInbox(t)
		idle, err := c.Idle()
		if err != nil {
			t.Fatalf("IDLE = %v", err)
		}
		start := time.Now()
		ts.deliver(t, "INBOX", plainMsg("new", "mail"))
		c.updates.wait(t, "EXISTS 1")
		t.Logf("IDLE saw the delivery after %v", time.Since(start))

		other := ts.selectInbox(t)
		if err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		c.updates.wait(t, `FETCH 1 [\Deleted]`)
		if _, err := other.Expunge().Collect(); err != nil {
			t.Fatal(err)
		}
		c.updates.wait(t, "EXPUNGE 1")
		if err := idle.Close(); err != nil {
			t.Fatalf("DONE = %v", err)
		}
		if err := idle.Wait(); err != nil {
			t.Errorf("IDLE ended with %v", err)
		}
		if err := c.Noop().Wait(); err != nil {
			t.Errorf("NOOP after IDLE = %v", err)
		}
	})
}

// TestConcurrentSessions: an expunge by one session reaches another only
// when sequence numbers may shift; FETCH in between leaves them as they
// were, and both agree on UIDs and flags afterwards.
func TestConcurrentSessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		uids := ts.deliver(t, "INBOX", plainMsg("1", "1"), plainMsg("2", "2"), plainMsg("3", "3"))
		a, b := ts.selectInbox(t), ts.selectInbox(t)
		if err := b.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Expunge().Collect(); err != nil {
			t.Fatal(err)
		}
		msgs, err := a.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range msgs {
			got = append(got, imapUIDString(m.SeqNum, m.UID))
		}
		if want := []string{imapUIDString(1, imap.UID(uids[0])), imapUIDString(3, imap.UID(uids[2]))}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("FETCH before the expunge is announced = %v, want %v (sequence numbers unchanged)", got, want)
		}
		if err := a.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		a.updates.wait(t, "EXPUNGE 2")
		ts.deliver(t, "INBOX", plainMsg("4", "4"))
		if err := a.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		a.updates.wait(t, "EXISTS 3")
		msgs, err = a.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil || len(msgs) != 3 || msgs[1].UID != imap.UID(uids[2]) {
			t.Errorf("FETCH 1:* after NOOP = %v, %v; want UIDs 1, 3, 4", msgs, err)
		}
	})
}

func imapUIDString(seq uint32, uid imap.UID) string {
	return imap.SeqSetNum(seq).String() + "=" + imap.UIDSetNum(uid).String()
}

// TestMailboxRecreated: a selected mailbox deleted and created again by
// someone else has a new UIDVALIDITY: the session is ended with BYE.
func TestMailboxRecreated(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		mbs := ts.user(t)
		ctx := context.Background()
		if err := mbs.Create(ctx, "Work"); err != nil {
			t.Fatal(err)
		}
		ts.deliver(t, "Work", plainMsg("w", "w"))
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		r.ok("SELECT Work")
		if err := mbs.Delete(ctx, "Work"); err != nil {
			t.Fatal(err)
		}
		if err := mbs.Create(ctx, "Work"); err != nil {
			t.Fatal(err)
		}
		io.WriteString(r.conn, "t9 NOOP\r\n")
		rest, _ := io.ReadAll(r.r)
		if !strings.Contains(string(rest), "* BYE ") {
			t.Errorf("NOOP after the mailbox was recreated = %q, want BYE and the connection closed", rest)
		}
	})
}

// TestShutdown: a session in IDLE is told BYE, one between commands is
// closed, and Shutdown returns once both are gone.
func TestShutdown(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "maildir", nil)
	idler, waiter := ts.raw(t), ts.raw(t)
	for _, r := range []*raw{idler, waiter} {
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		r.ok("SELECT INBOX")
	}
	io.WriteString(idler.conn, "i1 IDLE\r\n")
	if l := idler.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE = %q, want a continuation", l)
	}
	// A delivery seen in IDLE: the server is idling, not about to.
	ts.deliver(t, "INBOX", plainMsg("x", "x"))
	if l := idler.line(); l != "* 1 EXISTS" {
		t.Fatalf("IDLE got %q, want * 1 EXISTS", l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	if rest, err := io.ReadAll(idler.r); err != nil || !strings.HasPrefix(string(rest), "* BYE ") {
		t.Errorf("IDLE session at shutdown got %q, %v; want BYE and EOF", rest, err)
	}
	if rest, err := io.ReadAll(waiter.r); err != nil || len(rest) != 0 {
		t.Errorf("waiting session at shutdown got %q, %v; want EOF", rest, err)
	}
	if got := testutil.ToFloat64(ts.srv.metrics.active); got != 0 {
		t.Errorf("sessions_active = %v after Shutdown, want 0", got)
	}
}
