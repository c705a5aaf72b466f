package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
)

// TestRealClients runs the mailbox binary with the real auth service and
// drives it with mail clients nobody on this team wrote: curl (IMAP and POP3
// URLs), Python's imaplib and poplib, and mbsync (isync) syncing a mailbox
// both ways. scripts/install-deps.sh installs them for CI; elsewhere a
// missing tool skips its part.
func TestRealClients(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the mailbox and auth binaries")
	}
	bin := buildMailbox(t)
	a := testlib.StartAuth(t)
	a.Domain(t, "example.org")
	certs := testlib.NewCerts(t)

	s := newService(t, bin, a.Addr)
	s.env = append(s.env,
		"POSTCOVE_MAILBOX_LISTEN_IMAP="+testlib.FreeAddr(t),
		"POSTCOVE_MAILBOX_LISTEN_IMAPS="+testlib.FreeAddr(t),
		"POSTCOVE_MAILBOX_LISTEN_POP3="+testlib.FreeAddr(t),
		"POSTCOVE_MAILBOX_LISTEN_POP3S="+testlib.FreeAddr(t),
		"POSTCOVE_MAILBOX_TLS_CERT_FILE="+certs.ServerCert,
		"POSTCOVE_MAILBOX_TLS_KEY_FILE="+certs.ServerKey,
	)
	s.start()
	c := &clients{
		t: t, svc: s, ca: certs.CA, auth: a,
		root: s.get("POSTCOVE_MAILBOX_STORE_ROOT"),
	}

	t.Run("curl", c.curl)
	t.Run("imaplib", c.imaplib)
	t.Run("poplib", c.poplib)
	t.Run("mbsync", c.mbsync)
}

// clients is what each real-client test needs of the running system.
type clients struct {
	t    *testing.T
	svc  *service
	ca   string // CA file the clients verify the server with
	auth *testlib.Auth
	root string // the service's store.root
}

// user creates a mailbox user for one client's test and delivers the
// given subjects to its INBOX over LMTP, in that order.
func (c *clients) user(t *testing.T, address, password string, subjects ...string) {
	t.Helper()
	c.auth.User(t, address, password, 0)
	lc := dialLMTP(t, c.svc.get("POSTCOVE_MAILBOX_LISTEN_LMTP"))
	for _, subj := range subjects {
		fmt.Fprintf(lc.Conn, "MAIL FROM:<sender@remote.example>\r\nRCPT TO:<%s>\r\nDATA\r\n%s.\r\n", address, testMessage(subj))
		lc.Expect(250, "")
		lc.Expect(250, "")
		lc.Expect(354, "")
		lc.Expect(250, "")
	}
}

// testMessage is a small message whose body names its subject, so a test
// can tell which message a client fetched.
func testMessage(subject string) string {
	return fmt.Sprintf("From: Sender <sender@remote.example>\r\nTo: user@example.org\r\nSubject: %s\r\n"+
		"Message-ID: <%s@remote.example>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbody of %s\r\n",
		subject, strings.ReplaceAll(subject, " ", "-"), subject)
}

// hostPort turns a listen key's address into the host and port a client
// dials ("localhost", as the test certificate names it).
func (c *clients) hostPort(key string) (host, port string) {
	_, port, err := net.SplitHostPort(c.svc.get(key))
	if err != nil {
		c.t.Fatalf("%s: %v", key, err)
	}
	return "localhost", port
}

func (c *clients) url(scheme, key, path string) string {
	host, port := c.hostPort(key)
	return fmt.Sprintf("%s://%s:%s/%s", scheme, host, port, path)
}

// runClient runs a client program and returns its standard output, failing the
// test with its standard error when it exits non-zero.
func runClient(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

// folder is one mailbox of a user as the store holds it: subject -> flags,
// never nil for a message that is there (so m[subject] == nil means absent).
func (c *clients) folder(t *testing.T, address, name string) map[string][]string {
	t.Helper()
	st, err := maildir.Open(maildir.Options{Root: c.root})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	user, err := st.User(ctx, address)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := user.Select(ctx, name)
	if err != nil {
		t.Fatalf("select %s of %s: %v", name, address, err)
	}
	defer mb.Close()
	msgs, err := mb.Messages(ctx, mb.UIDs())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range msgs {
		body, err := mb.Open(ctx, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		subj := subjectOf(body)
		body.Close()
		if _, dup := out[subj]; dup {
			t.Errorf("%s of %s holds %q twice", name, address, subj)
		}
		out[subj] = append([]string{}, m.Flags...)
	}
	return out
}

// curl: IMAP over STARTTLS and implicit TLS (LIST, FETCH by UID, SEARCH,
// APPEND by upload) and POP3 over STLS and implicit TLS (LIST, RETR).
func (c *clients) curl(t *testing.T) {
	testlib.RequireTool(t, "curl")
	const user, pass = "curl@example.org", "curl-secret"
	c.user(t, user, pass, "curl one", "curl two")
	curl := func(url string, extra ...string) string {
		args := append([]string{"-sS", "--max-time", "30", "--cacert", c.ca, "--ssl-reqd", "-u", user + ":" + pass, url}, extra...)
		return runClient(t, "curl", args...)
	}

	list := curl(c.url("imap", "POSTCOVE_MAILBOX_LISTEN_IMAP", ""))
	for _, want := range []string{`INBOX`, `\Sent`, `\Drafts`, `\Junk`, `\Trash`} {
		if !strings.Contains(list, want) {
			t.Errorf("curl imap LIST = %q, want it to contain %s", list, want)
		}
	}
	if got := curl(c.url("imaps", "POSTCOVE_MAILBOX_LISTEN_IMAPS", "INBOX;UID=2")); !strings.Contains(got, "body of curl two") {
		t.Errorf("curl imaps FETCH UID 2 = %q, want the body of the second message", got)
	}
	if got := curl(c.url("imap", "POSTCOVE_MAILBOX_LISTEN_IMAP", "INBOX?SUBJECT%20one")); strings.TrimSpace(got) != "* SEARCH 1" {
		t.Errorf("curl imap SEARCH SUBJECT one = %q, want * SEARCH 1", got)
	}
	upload := filepath.Join(testlib.TempDir(t), "upload.eml")
	if err := os.WriteFile(upload, []byte(testMessage("curl upload")), 0o600); err != nil {
		t.Fatal(err)
	}
	curl(c.url("imap", "POSTCOVE_MAILBOX_LISTEN_IMAP", "Drafts"), "-T", upload)
	if got := c.folder(t, user, "Drafts"); len(got) != 1 || got["curl upload"] == nil {
		t.Errorf("after curl's APPEND to Drafts, Drafts holds %v, want the uploaded message", got)
	}

	if got := curl(c.url("pop3", "POSTCOVE_MAILBOX_LISTEN_POP3", "")); len(strings.Fields(got)) != 4 {
		t.Errorf("curl pop3 LIST = %q, want two messages", got)
	}
	if got := curl(c.url("pop3s", "POSTCOVE_MAILBOX_LISTEN_POP3S", "1")); !strings.Contains(got, "body of curl one") {
		t.Errorf("curl pop3s RETR 1 = %q, want the first message", got)
	}
	// A wrong password is refused, and curl says so (exit 67: login denied).
	cmd := exec.Command("curl", "-sS", "--max-time", "30", "--cacert", c.ca, "--ssl-reqd", "-u", user+":wrong",
		c.url("imap", "POSTCOVE_MAILBOX_LISTEN_IMAP", ""))
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 67 {
		t.Errorf("curl imap with a wrong password: %v, want exit 67 (login denied)", err)
	}
}

// imaplibScript is an IMAP session in Python's imaplib, over STARTTLS. It
// prints what the server answered as JSON for the Go side to check.
// Arguments: host, port, user, password, CA file.
const imaplibScript = `
import imaplib, json, ssl, sys

host, port, user, password, cafile = sys.argv[1:6]
out = {}
m = imaplib.IMAP4(host, int(port), timeout=30)
out["caps_before"] = sorted(m.capabilities)
try:
    m.login(user, password)
    out["login_before_tls"] = "accepted"
except imaplib.IMAP4.error as e:
    out["login_before_tls"] = "refused: " + str(e)
m.starttls(ssl.create_default_context(cafile=cafile))
m.login(user, password)
out["caps"] = sorted(m.capabilities)
typ, data = m.list()
out["list"] = [d.decode() for d in data]
for bad in ("../evil", "/etc", "a/../../b", "x\x01y"):
    try:
        typ, data = m.create(bad)
        out.setdefault("bad_create", []).append(typ)
    except imaplib.IMAP4.error as e:
        out.setdefault("bad_create", []).append("error")
typ, data = m.create("Archive/2026")
out["create"] = typ
typ, data = m.select("INBOX")
out["exists"] = int(data[0])
typ, data = m.search(None, "SUBJECT", '"py two"')
out["search"] = data[0].decode()
typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
out["fetch_flags"] = [d.decode() for d in data]
typ, data = m.fetch("2", "(BODY.PEEK[])")
out["body2"] = data[0][1].decode()
typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
out["envelope"] = data[0].decode()
typ, data = m.store("1", "+FLAGS", "(\\Flagged $Important)")
out["store"] = [d.decode() for d in data]
typ, data = m.copy("1", "Archive/2026")
out["copy"] = typ
m.store("3", "+FLAGS", "\\Deleted")
typ, data = m.expunge()
out["expunge"] = [d.decode() for d in data]
typ, data = m.append("INBOX", "(\\Seen)", None, b"Subject: py appended\r\n\r\nbody of py appended\r\n")
out["append"] = typ + " " + data[0].decode()
typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)")
out["status"] = data[0].decode()
m.close()
out["logout"] = m.logout()[0]
print(json.dumps(out))
`

// imaplib: STARTTLS, LOGIN refused before TLS, LIST, CREATE (and bad
// names refused), SELECT, SEARCH, FETCH, STORE with a new keyword, COPY,
// EXPUNGE, APPEND, STATUS.
func (c *clients) imaplib(t *testing.T) {
	testlib.RequireTool(t, "python3")
	const user, pass = "py@example.org", "py-secret"
	c.user(t, user, pass, "py one", "py two", "py three")
	host, port := c.hostPort("POSTCOVE_MAILBOX_LISTEN_IMAP")
	var out struct {
		CapsBefore     []string `json:"caps_before"`
		LoginBeforeTLS string   `json:"login_before_tls"`
		Caps           []string
		List           []string
		BadCreate      []string `json:"bad_create"`
		Create         string
		Exists         int
		Search         string
		FetchFlags     []string `json:"fetch_flags"`
		Body2          string
		Envelope       string
		Store          []string
		Copy           string
		Expunge        []string
		Append         string
		Status         string
		Logout         string
	}
	raw := runClient(t, "python3", "-c", imaplibScript, host, port, user, pass, c.ca)
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("imaplib output %q: %v", raw, err)
	}
	t.Logf("imaplib: %+v", out)
	if !slices.Contains(out.CapsBefore, "STARTTLS") || !slices.Contains(out.CapsBefore, "LOGINDISABLED") {
		t.Errorf("capabilities before TLS = %v, want STARTTLS and LOGINDISABLED", out.CapsBefore)
	}
	if !strings.HasPrefix(out.LoginBeforeTLS, "refused") {
		t.Errorf("LOGIN before STARTTLS %s, want refused", out.LoginBeforeTLS)
	}
	if slices.Contains(out.Caps, "LOGINDISABLED") || !slices.Contains(out.Caps, "IMAP4REV1") {
		t.Errorf("capabilities after TLS = %v, want IMAP4REV1 and no LOGINDISABLED", out.Caps)
	}
	if !slices.ContainsFunc(out.List, func(l string) bool { return strings.Contains(l, `\Trash`) && strings.Contains(l, "Trash") }) {
		t.Errorf("LIST = %q, want Trash with \\Trash", out.List)
	}
	for i, typ := range out.BadCreate {
		if typ == "OK" {
			t.Errorf("CREATE of bad name #%d answered OK", i)
		}
	}
	if out.Create != "OK" || out.Exists != 3 || out.Search != "2" {
		t.Errorf("CREATE %s, SELECT EXISTS %d, SEARCH SUBJECT %q; want OK, 3, 2", out.Create, out.Exists, out.Search)
	}
	if len(out.FetchFlags) != 3 || !strings.Contains(out.FetchFlags[0], "UID 1") {
		t.Errorf("FETCH 1:* (UID FLAGS RFC822.SIZE) = %q, want 3 messages from UID 1", out.FetchFlags)
	}
	if !strings.Contains(out.Body2, "body of py two") {
		t.Errorf("FETCH 2 BODY.PEEK[] = %q, want the second message", out.Body2)
	}
	if !strings.Contains(out.Envelope, `"py one"`) || !strings.Contains(strings.ToUpper(out.Envelope), `"TEXT" "PLAIN"`) {
		t.Errorf("FETCH 1 (ENVELOPE BODYSTRUCTURE) = %q, want the subject and text/plain", out.Envelope)
	}
	if len(out.Store) != 1 || !strings.Contains(out.Store[0], `\Flagged`) || !strings.Contains(out.Store[0], `$Important`) {
		t.Errorf("STORE +FLAGS = %q, want \\Flagged and $Important", out.Store)
	}
	if out.Copy != "OK" || !slices.Equal(out.Expunge, []string{"3"}) {
		t.Errorf("COPY %s, EXPUNGE %q; want OK, [3]", out.Copy, out.Expunge)
	}
	if !strings.Contains(out.Append, "APPENDUID") {
		t.Errorf("APPEND = %q, want OK [APPENDUID ...]", out.Append)
	}
	if !strings.Contains(out.Status, "MESSAGES 3") || !strings.Contains(out.Status, "UNSEEN 2") {
		t.Errorf("STATUS = %q, want MESSAGES 3 and UNSEEN 2", out.Status)
	}
	if out.Logout != "BYE" {
		t.Errorf("LOGOUT = %q, want BYE", out.Logout)
	}
	inbox := c.folder(t, user, store.Inbox)
	if len(inbox) != 3 || !slices.Contains(inbox["py appended"], store.FlagSeen) || !slices.Contains(inbox["py one"], "$Important") {
		t.Errorf("INBOX in the store = %v, want py one ($Important), py two, py appended (\\Seen)", inbox)
	}
	if got := c.folder(t, user, "Archive/2026"); len(got) != 1 || got["py one"] == nil {
		t.Errorf("Archive/2026 in the store = %v, want the copy of py one", got)
	}
}

// poplibScript reads a maildrop with Python's poplib over implicit TLS and
// deletes the first message. Arguments: host, port, user, password, CA.
const poplibScript = `
import json, poplib, ssl, sys

host, port, user, password, cafile = sys.argv[1:6]
p = poplib.POP3_SSL(host, int(port), context=ssl.create_default_context(cafile=cafile), timeout=30)
p.user(user)
p.pass_(password)
out = {"stat": list(p.stat())}
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["retr"] = b"\r\n".join(p.retr(2)[1]).decode()
p.dele(1)
out["quit"] = p.quit().decode()
print(json.dumps(out))
`

func (c *clients) poplib(t *testing.T) {
	testlib.RequireTool(t, "python3")
	const user, pass = "pop@example.org", "pop-secret"
	c.user(t, user, pass, "pop one", "pop two")
	host, port := c.hostPort("POSTCOVE_MAILBOX_LISTEN_POP3S")
	var out struct {
		Stat []int
		UIDL []string
		Retr string
		Quit string
	}
	raw := runClient(t, "python3", "-c", poplibScript, host, port, user, pass, c.ca)
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("poplib output %q: %v", raw, err)
	}
	if len(out.Stat) != 2 || out.Stat[0] != 2 || len(out.UIDL) != 2 || out.UIDL[0] == out.UIDL[1] {
		t.Errorf("poplib STAT %v, UIDL %q; want 2 messages with distinct ids", out.Stat, out.UIDL)
	}
	if !strings.Contains(out.Retr, "body of pop two") || !strings.HasPrefix(out.Quit, "+OK") {
		t.Errorf("poplib RETR 2 = %q, QUIT %q", out.Retr, out.Quit)
	}
	if got := c.folder(t, user, store.Inbox); len(got) != 1 || got["pop two"] == nil {
		t.Errorf("after DELE 1 and QUIT, INBOX holds %v, want only pop two", got)
	}
}

// mbsync syncs a mailbox both ways: down (the server's messages and
// folders appear in a local Maildir), then up (a local flag change, a
// local deletion, a new local message and a new local folder reach the
// server).
func (c *clients) mbsync(t *testing.T) {
	testlib.RequireTool(t, "mbsync")
	const user, pass = "sync@example.org", "sync-secret"
	c.user(t, user, pass, "sync one", "sync two", "sync three")
	dir := testlib.TempDir(t)
	local := filepath.Join(dir, "mail")
	if err := os.Mkdir(local, 0o700); err != nil { // mbsync creates folders, not its store
		t.Fatal(err)
	}
	host, port := c.hostPort("POSTCOVE_MAILBOX_LISTEN_IMAPS")
	conf := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `IMAPAccount postcove
Host %s
Port %s
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account postcove

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, user, pass, c.ca, local, local), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func() { runClient(t, "mbsync", "-c", conf, "-a") }

	sync()
	files := localFiles(t, filepath.Join(local, "INBOX"))
	if len(files) != 3 {
		t.Fatalf("after the first sync the local INBOX holds %v, want 3 messages", files)
	}
	for _, folder := range []string{"Sent", "Drafts", "Junk", "Trash"} {
		if fi, err := os.Stat(filepath.Join(local, folder, "cur")); err != nil || !fi.IsDir() {
			t.Errorf("after the first sync, local folder %s: %v", folder, err)
		}
	}

	// Local changes: "sync one" read, "sync two" deleted (trashed, then
	// expunged by the sync), a new message, a new folder with a message.
	for path, subj := range files {
		switch subj {
		case "sync one":
			setMaildirFlags(t, path, "S")
		case "sync two":
			setMaildirFlags(t, path, "T")
		}
	}
	writeLocal := func(folder, name, subj string) {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(local, folder, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(local, folder, "new", name), []byte(testMessage(subj)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeLocal("INBOX", "1700000000.local1.host", "sync local")
	writeLocal("Projects", "1700000000.local2.host", "sync project")
	sync()

	inbox := c.folder(t, user, store.Inbox)
	if len(inbox) != 3 || inbox["sync two"] != nil || inbox["sync local"] == nil {
		t.Errorf("after syncing up, INBOX on the server = %v, want sync one, sync three, sync local", inbox)
	}
	if !slices.Contains(inbox["sync one"], store.FlagSeen) || slices.Contains(inbox["sync three"], store.FlagSeen) {
		t.Errorf("after syncing up, INBOX flags = %v, want \\Seen on sync one only", inbox)
	}
	if got := c.folder(t, user, "Projects"); len(got) != 1 || got["sync project"] == nil {
		t.Errorf("after syncing up, Projects on the server = %v, want sync project", got)
	}
	// A third sync has nothing to do and changes nothing.
	sync()
	if got := localFiles(t, filepath.Join(local, "INBOX")); len(got) != 3 {
		t.Errorf("after a third sync the local INBOX holds %v, want 3 messages", got)
	}
}

// localFiles maps the message files of a local Maildir folder to their
// subjects.
func localFiles(t *testing.T, folder string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(folder, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			path := filepath.Join(folder, sub, e.Name())
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			out[path] = subjectOf(f)
			f.Close()
		}
	}
	return out
}

// setMaildirFlags gives a local message the Maildir info flags (":2,"
// followed by letters), moving it into cur/ as a Maildir reader would.
func setMaildirFlags(t *testing.T, path, flags string) {
	t.Helper()
	base, _, _ := strings.Cut(filepath.Base(path), ":2,")
	dst := filepath.Join(filepath.Dir(filepath.Dir(path)), "cur", base+":2,"+flags)
	if err := os.Rename(path, dst); err != nil {
		t.Fatal(err)
	}
}

// subjectOf reads a message's Subject header.
func subjectOf(r io.Reader) string {
	h, _ := textproto.NewReader(bufio.NewReader(r)).ReadMIMEHeader()
	return h.Get("Subject")
}
