package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// TestSTARTTLS: before STARTTLS the server offers STARTTLS and
// LOGINDISABLED and refuses LOGIN; after it, AUTH=PLAIN and LOGIN work;
// implicit TLS works from the first byte.
func TestSTARTTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := tlsPair(t)
	ts := startServer(t, "memstore", func(o *Options) {
		o.TLS, o.AllowPlaintextAuth = serverTLS, false
	})
	ts.clientTLS = clientTLS
	plain := ts.raw(t)
	caps := plain.ok("CAPABILITY")[0]
	for _, want := range []string{"STARTTLS", "LOGINDISABLED", "IMAP4rev2", "IMAP4rev1"} {
		if !strings.Contains(caps, " "+want) {
			t.Errorf("capabilities before TLS = %q, want %s", caps, want)
		}
	}
	if strings.Contains(caps, "AUTH=PLAIN") {
		t.Errorf("capabilities before TLS = %q offer AUTH=PLAIN", caps)
	}
	if got := plain.cmd("LOGIN " + testUser + ` "` + testPass + `"`); !strings.Contains(got[len(got)-1], "NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN before TLS = %q, want NO [PRIVACYREQUIRED]", got)
	}
	if got := plain.cmd("AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2U="); !strings.Contains(got[len(got)-1], "NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE before TLS = %q, want NO [PRIVACYREQUIRED]", got)
	}

	c := ts.dial(t) // STARTTLS
	after, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !after.Has(imap.AuthCap("PLAIN")) || after.Has(imap.CapLoginDisabled) || after.Has(imap.CapStartTLS) {
		t.Errorf("capabilities after STARTTLS = %v, want AUTH=PLAIN without LOGINDISABLED and STARTTLS", after)
	}
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS = %v", err)
	}
	authed, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev2, imap.CapMove, imap.CapUIDPlus, imap.CapIdle, imap.CapListStatus, imap.CapSpecialUse, imap.CapESearch, "APPENDLIMIT=65536"} {
		if !authed.Has(want) {
			t.Errorf("capabilities after login = %v, want %s", authed, want)
		}
	}

	implicit := startServer(t, "memstore", func(o *Options) {
		o.TLS, o.ImplicitTLS, o.AllowPlaintextAuth = serverTLS, true, false
	})
	implicit.clientTLS = clientTLS
	ic := implicit.login(t)
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("SELECT over implicit TLS = %v", err)
	}
}

// TestLogin: good, bad, locked-out and auth-down logins, and a login that
// works again once auth is back, over LOGIN and AUTHENTICATE PLAIN.
func TestLogin(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "maildir", nil)
	c := ts.dial(t)
	wantCode(t, "LOGIN with a bad password", c.Login(testUser, "wrong").Wait(), imap.StatusResponseTypeNo, imap.ResponseCodeAuthenticationFailed)

	ts.auth.failWith(&authclient.LockedError{RetryAfter: 90 * time.Second})
	err := c.Login(testUser, testPass).Wait()
	wantCode(t, "LOGIN while locked out", err, imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable)
	if err == nil || !strings.Contains(err.Error(), "90 seconds") {
		t.Errorf("LOGIN while locked out = %v, want the delay in the text", err)
	}
	ts.auth.failWith(fmt.Errorf("%w: connection refused", authclient.ErrUnavailable))
	wantCode(t, "LOGIN with auth down", c.Login(testUser, testPass).Wait(), imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable)
	ts.auth.failWith(nil)
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("LOGIN once auth is back = %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("SELECT after login = %v", err)
	}

	c2 := ts.dial(t)
	if err := c2.Authenticate(sasl.NewPlainClient("", testUser, "wrong")); err == nil {
		t.Errorf("AUTHENTICATE PLAIN with a bad password succeeded")
	}
	if err := c2.Authenticate(sasl.NewPlainClient("", testUser, testPass)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN = %v", err)
	}
	if _, err := c2.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		t.Errorf("STATUS after AUTHENTICATE = %v", err)
	}
	for result, want := range map[string]float64{"ok": 2, "failed": 2, "locked": 1, "unavailable": 1} {
		if got := testutil.ToFloat64(ts.srv.metrics.logins.WithLabelValues(result)); got != want {
			t.Errorf("logins{result=%s} = %v, want %v", result, got, want)
		}
	}
}

// TestMaxSessions: a connection over the limit is told BYE, and a new one
// is accepted once a slot is free.
func TestMaxSessions(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "memstore", func(o *Options) { o.MaxSessions = 1 })
	first := ts.dial(t)
	c, err := imapclient.DialInsecure(ts.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitGreeting(); err == nil {
		t.Errorf("greeting over max_sessions succeeded, want BYE")
	}
	if got := testutil.ToFloat64(ts.srv.metrics.refused); got != 1 {
		t.Errorf("refused_total = %v, want 1", got)
	}
	first.Logout().Wait()
	first.Close()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(ts.srv.metrics.active) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ts.login(t)
}

// TestList: LIST with special-use attributes, LIST-STATUS, subscriptions,
// a parent that exists only through its child, and LIST "" "".
func TestList(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		c := ts.login(t)
		ts.deliver(t, "INBOX", plainMsg("one", "x"), plainMsg("two", "y"))
		if err := c.Create("Projects/2024", nil).Wait(); err != nil {
			t.Fatalf("CREATE Projects/2024 = %v", err)
		}
		list, err := c.List("", "*", &imap.ListOptions{
			ReturnStatus:     &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true, Size: true},
			ReturnSubscribed: true,
		}).Collect()
		if err != nil {
			t.Fatalf("LIST = %v", err)
		}
		got := map[string]*imap.ListData{}
		var names []string
		for _, d := range list {
			got[d.Mailbox] = d
			names = append(names, d.Mailbox)
		}
		if want := []string{"INBOX", "Drafts", "Junk", "Projects", "Projects/2024", "Sent", "Trash"}; !slices.Equal(names, want) {
			t.Errorf("LIST * = %v, want %v", names, want)
		}
		if d := got["Sent"]; d == nil || !slices.Contains(d.Attrs, imap.MailboxAttrSent) || !slices.Contains(d.Attrs, imap.MailboxAttrSubscribed) {
			t.Errorf("LIST Sent = %+v, want \\Sent \\Subscribed", d)
		}
		if d := got["Projects"]; d == nil || !slices.Contains(d.Attrs, imap.MailboxAttrNoSelect) || !slices.Contains(d.Attrs, imap.MailboxAttrHasChildren) {
			t.Errorf("LIST Projects = %+v, want \\Noselect \\HasChildren", d)
		}
		if d := got["INBOX"]; d == nil || d.Status == nil || *d.Status.NumMessages != 2 || *d.Status.NumUnseen != 2 || *d.Status.Size == 0 {
			t.Errorf("LIST-STATUS INBOX = %+v, want 2 messages, 2 unseen", d)
		}

		special, err := c.List("", "*", &imap.ListOptions{SelectSpecialUse: true}).Collect()
		if err != nil || len(special) != 4 {
			t.Errorf("LIST (SPECIAL-USE) = %d mailboxes, %v; want 4", len(special), err)
		}
		if top, err := c.List("", "%", nil).Collect(); err != nil || len(top) != 6 {
			t.Errorf("LIST %% = %d mailboxes, %v; want 6", len(top), err)
		}
		if lower, err := c.List("", "inbox", nil).Collect(); err != nil || len(lower) != 1 || lower[0].Mailbox != "INBOX" {
			t.Errorf("LIST inbox = %v, %v; want INBOX", lower, err)
		}
		root, err := c.List("", "", nil).Collect()
		if err != nil || len(root) != 1 || root[0].Delim != '/' {
			t.Errorf(`LIST "" "" = %v, %v; want the "/" delimiter`, root, err)
		}

		if err := c.Subscribe("Projects/2024").Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete("Projects/2024").Wait(); err != nil {
			t.Fatal(err)
		}
		subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var gone *imap.ListData
		for _, d := range subs {
			if d.Mailbox == "Projects/2024" {
				gone = d
			}
		}
		if gone == nil || !slices.Contains(gone.Attrs, imap.MailboxAttrNonExistent) {
			t.Errorf("LIST (SUBSCRIBED) = %v, want Projects/2024 \\NonExistent", subs)
		}
		if err := c.Unsubscribe("Projects/2024").Wait(); err != nil {
			t.Fatal(err)
		}
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		if got := strings.Join(r.ok(`LSUB "" *`), "\n"); !strings.Contains(got, `"/" "Sent"`) || strings.Contains(got, "Projects") {
			t.Errorf("LSUB after UNSUBSCRIBE = %s, want the special mailboxes only", got)
		}
		st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDValidity: true, NumDeleted: true}).Wait()
		if err != nil || *st.NumMessages != 2 || st.UIDValidity == 0 || *st.NumDeleted != 0 {
			t.Errorf("STATUS INBOX = %+v, %v", st, err)
		}
		wantCode(t, "STATUS of a missing mailbox", errOf(c.Status("Nope", &imap.StatusOptions{NumMessages: true}).Wait()),
			imap.StatusResponseTypeNo, imap.ResponseCodeNonExistent)
		ns, err := c.Namespace().Wait()
		if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
			t.Errorf("NAMESPACE = %+v, %v", ns, err)
		}
	})
}

func errOf[T any](_ T, err error) error { return err }

// TestMailboxNames: CREATE, RENAME and DELETE of valid names, and every
// name that could leave the user's Maildir refused, with nothing created
// outside it on disk.
func TestMailboxNames(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "maildir", nil)
	c := ts.login(t)
	r := ts.raw(t)
	r.ok("LOGIN " + testUser + ` "` + testPass + `"`)

	for _, cmd := range []string{"CREATE Work", "CREATE Work/Clients/", "CREATE Entw&APw-rfe", "RENAME Work/Clients Work/Customers"} {
		r.ok(cmd)
	}
	// A modified UTF-7 name is stored as UTF-8 and listed back encoded.
	if got := r.ok(`LIST "" Entw*`); len(got) != 2 || !strings.HasSuffix(got[0], `"/" "Entw&APw-rfe"`) {
		t.Errorf("LIST Entw* = %q, want Entw&APw-rfe", got)
	}
	if list, err := c.List("", "Entw*", nil).Collect(); err != nil || len(list) != 1 || list[0].Mailbox != "Entwürfe" {
		t.Errorf("LIST Entw* decoded = %v, %v; want Entwürfe", list, err)
	}
	for _, cmd := range []string{"SUBSCRIBE Entw&APw-rfe", "RENAME Entw&APw-rfe Archive", "DELETE Archive"} {
		r.ok(cmd)
	}
	wantCode(t, "CREATE Work again", c.Create("Work", nil).Wait(), imap.StatusResponseTypeNo, imap.ResponseCodeAlreadyExists)
	wantCode(t, "DELETE INBOX", c.Delete("INBOX").Wait(), imap.StatusResponseTypeNo, imap.ResponseCodeCannot)
	wantCode(t, "DELETE of a missing mailbox", c.Delete("Nope").Wait(), imap.StatusResponseTypeNo, imap.ResponseCodeNonExistent)

	for _, name := range []string{`"../x"`, `"/etc"`, `"a/../../b"`, `".."`, `"a/./b"`, `"."`, `"a//b"`, `".hidden"`,
		`"&AC4ALg-/x"`, `"&AC8-etc"`, `"a%b"`, "{3}\r\na\x00b", "{4}\r\nx\x01\r\n", `"` + strings.Repeat("n", 300) + `"`} {
		for _, cmd := range []string{"CREATE " + name, "RENAME Work " + name, "SUBSCRIBE " + name, "SELECT " + name, "STATUS " + name + " (MESSAGES)"} {
			// go-imap closes the connection after some malformed names
			// (an invalid literal): that is a refusal too.
			last, closed := r.try(cmd)
			if closed {
				r = ts.raw(t)
				r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
			} else if !strings.Contains(last, " NO ") && !strings.Contains(last, " BAD ") {
				t.Errorf("%q = %q, want NO or BAD", cmd, last)
			}
		}
	}
	for _, name := range []string{"../x", "/etc", "a/../../b", "Work/../../../tmp"} {
		if res := appendMsg(t, c, name, plainMsg("x", "x"), nil); res.err == nil {
			t.Errorf("APPEND to %q succeeded", name)
		}
	}

	// On disk: only the user's Maildir, with the folders made above.
	var outside []string
	userDir := filepath.Join(ts.root, "example.org", "alice", "Maildir")
	filepath.WalkDir(ts.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != ts.root && !strings.HasPrefix(path, userDir) && !strings.HasPrefix(userDir, path) {
			outside = append(outside, path)
		}
		return nil
	})
	if len(outside) > 0 {
		t.Errorf("files outside the user's Maildir: %v", outside)
	}
	entries, err := os.ReadDir(userDir)
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") {
			folders = append(folders, e.Name())
		}
	}
	want := []string{".Drafts", ".Junk", ".Sent", ".Trash", ".Work", ".Work.Customers"}
	if !slices.Equal(folders, want) {
		t.Errorf("Maildir folders = %v, want %v", folders, want)
	}
	if _, err := os.Stat(filepath.Join(ts.root, "etc")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s/etc = %v, want it absent", ts.root, err)
	}
}

// TestAppend: flags and date are kept and APPENDUID returned; a message
// over the limit is NO [TOOBIG] and a missing mailbox NO [TRYCREATE].
func TestAppend(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		c := ts.login(t)
		date := time.Date(2023, 2, 3, 4, 5, 6, 0, time.FixedZone("", 3600))
		msg := plainMsg("appended", "body")
		data := appendMsg(t, c, "Drafts", msg, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, "$Label1"}, Time: date})
		if data.err != nil || data.UID == 0 || data.UIDValidity == 0 {
			t.Fatalf("APPEND = %+v, %v; want APPENDUID", data.AppendData, data.err)
		}
		if _, err := c.Select("Drafts", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.UIDSetNum(data.UID), &imap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("UID FETCH = %v, %v", msgs, err)
		}
		m := msgs[0]
		if !slices.Contains(m.Flags, imap.FlagDraft) || !slices.Contains(m.Flags, "$Label1") || !m.InternalDate.Equal(date) || m.RFC822Size != int64(len(msg)) {
			t.Errorf("appended message = flags %v, date %v, size %d; want \\Draft $Label1, %v, %d", m.Flags, m.InternalDate, m.RFC822Size, date, len(msg))
		}

		missing := appendMsg(t, c, "Nope", msg, nil)
		wantCode(t, "APPEND to a missing mailbox", missing.err, imap.StatusResponseTypeNo, imap.ResponseCodeTryCreate)
		bad := appendMsg(t, c, "INBOX", msg, &imap.AppendOptions{Flags: []imap.Flag{`\Bogus`}})
		if bad.err == nil {
			t.Errorf("APPEND with flag \\Bogus succeeded")
		}
		if st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || *st.NumMessages != 0 {
			t.Errorf("INBOX after refused APPENDs = %+v, %v; want empty", st, err)
		}
		if got := testutil.ToFloat64(ts.srv.metrics.appended); got != float64(len(msg)) {
			t.Errorf("appended_bytes_total = %v, want %d", got, len(msg))
		}
		// imapclient gives up its connection when a literal is refused;
		// the server keeps it.
		big := appendMsg(t, ts.login(t), "INBOX", strings.Repeat("x", 70<<10), nil)
		wantCode(t, "APPEND over APPENDLIMIT", big.err, imap.StatusResponseTypeNo, imap.ResponseCodeTooBig)
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		if got := r.cmd("APPEND INBOX {71680}"); !strings.Contains(got[0], "NO [TOOBIG]") {
			t.Errorf("APPEND {71680} = %q, want NO [TOOBIG]", got)
		}
		r.ok("NOOP")
	})
}

// TestAppendFailures: the quota auth reports is enforced (NO
// [OVERQUOTA]) and a store failure such as a full disk is a temporary NO
// with nothing stored.
func TestAppendFailures(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "maildir", nil)
	ts.auth.quota.Store(1000)
	c := ts.login(t)
	big := appendMsg(t, c, "INBOX", plainMsg("big", strings.Repeat("x", 2000)), nil)
	wantCode(t, "APPEND over quota", big.err, imap.StatusResponseTypeNo, imap.ResponseCodeOverQuota)
	if small := appendMsg(t, c, "INBOX", plainMsg("small", "x"), nil); small.err != nil {
		t.Errorf("APPEND under quota = %v", small.err)
	}

	failing := startServer(t, "memstore", func(o *Options) { o.Store = diskFull{o.Store} })
	fc := failing.login(t)
	res := appendMsg(t, fc, "INBOX", plainMsg("x", "x"), nil)
	wantCode(t, "APPEND with the disk full", res.err, imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable)
	if st, err := fc.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || *st.NumMessages != 0 {
		t.Errorf("STATUS INBOX after a failed APPEND = %+v, %v; want no message", st, err)
	}
	if got := testutil.ToFloat64(failing.srv.metrics.errors.WithLabelValues("io")); got != 1 {
		t.Errorf(`store_errors_total{kind="io"} = %v, want 1`, got)
	}
}

// diskFull is a store whose appends fail as on a full disk.
type diskFull struct{ store.Store }

func (d diskFull) User(ctx context.Context, address string) (store.Mailboxes, error) {
	mbs, err := d.Store.User(ctx, address)
	return diskFullUser{mbs}, err
}

type diskFullUser struct{ store.Mailboxes }

func (diskFullUser) Append(context.Context, string, io.Reader, store.AppendOptions) (store.AppendResult, error) {
	return store.AppendResult{}, fmt.Errorf("write tmp/123: %w", syscall.ENOSPC)
}

type appendResult struct {
	*imap.AppendData
	err error
}

func appendMsg(t testing.TB, c *client, mailbox, msg string, opts *imap.AppendOptions) appendResult {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(msg)), opts)
	cmd.Write([]byte(msg)) // fails when the server refuses the literal
	cmd.Close()
	data, err := cmd.Wait()
	return appendResult{data, err}
}
