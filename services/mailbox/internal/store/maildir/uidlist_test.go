package maildir

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

func TestParseUIDList(t *testing.T) {
	tests := []struct {
		in      string
		want    uidList
		wantErr bool
	}{
		{"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394\n25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n",
			uidList{uidValidity: 1275660208, nextUID: 25022, uids: map[string]store.UID{"1276528487.M364837P9451.kurkku,S=1355,W=1394": 25006, "1276533073.M242911P3632.kurkku": 25017}}, false},
		{"1 1000 5\n1 a\n4 b:2,S\n", uidList{uidValidity: 1000, nextUID: 5, uids: map[string]store.UID{"a": 1, "b": 4}}, false},
		{"", uidList{}, true},
		{"2 V1 N2\n", uidList{}, true},
		{"3 V0 N2\n", uidList{}, true},
		{"3 V1 N2\n2 :x\n", uidList{}, true},         // UID not below next
		{"3 V1 N9\n3 :x\n2 :y\n", uidList{}, true},   // not ascending
		{"3 V1 N9\n3 x\n", uidList{}, true},          // no " :"
		{"3 V1 N9\n3 :../../etc\n", uidList{}, true}, // not a file name
	}
	for _, tt := range tests {
		got, err := parseUIDList([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("parseUIDList(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (got.uidValidity != tt.want.uidValidity || got.nextUID != tt.want.nextUID || fmt.Sprint(got.uids) != fmt.Sprint(tt.want.uids)) {
			t.Errorf("parseUIDList(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestImportHandWritten imports a Maildir laid out the way dovecot leaves
// it, written by hand from dovecot's documented formats.
func TestImportHandWritten(t *testing.T) {
	root := testlib.TempDir(t)
	md := filepath.Join(root, "example.org", "alice", "Maildir")
	for _, d := range []string{"cur", "new", "tmp", ".Archive.2023/cur", ".Archive.2023/new", ".Archive.2023/tmp"} {
		if err := os.MkdirAll(filepath.Join(md, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"cur/1600000000.M1P1.old,S=7:2,Sb": "first\r\n",
		"cur/1600000001.M2P1.old,S=8:2,RS": "second\r\n",
		"new/1600000002.M3P1.old,S=7":      "third\r\n",
		"new/1600000003.M4P1.old":          "fourth\r\n", // not in the uidlist: a later delivery
		"dovecot-uidlist":                  "3 V1234567 N40 Gaa\n7 :1600000000.M1P1.old,S=7\n12 W9 :1600000001.M2P1.old,S=8\n30 :1600000002.M3P1.old,S=7\n",
		"dovecot-keywords":                 "0 $Work\n1 Later\n",
		"subscriptions":                    "V\t2\n\nArchive\t2023\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(md, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, msgs, bodies := reopen(t, root)
	if st.UIDValidity != 1234567 || st.UIDNext != 41 {
		t.Errorf("Status = %+v, want UIDVALIDITY 1234567, UIDNEXT 41", st)
	}
	var uids []store.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []store.UID{7, 12, 30, 40}) || !slices.Equal(bodies, []string{"first\r\n", "second\r\n", "third\r\n", "fourth\r\n"}) {
		t.Errorf("UIDs %v bodies %q, want dovecot's UIDs 7 12 30 and 40 for the new one", uids, bodies)
	}
	if !slices.Equal(msgs[0].Flags, []string{"Later", `\Seen`}) || !slices.Equal(msgs[1].Flags, []string{`\Answered`, `\Seen`}) {
		t.Errorf("flags %v, %v: want keyword letters and system flags imported", msgs[0].Flags, msgs[1].Flags)
	}
	s := openStore(t, root, Options{})
	m, _ := s.User(t.Context(), "alice@example.org")
	subs, err := m.Subscriptions(t.Context())
	if err != nil || !slices.Equal(subs, []string{"Archive/2023"}) {
		t.Errorf("Subscriptions() = %v, %v, want [Archive/2023]", subs, err)
	}
	// Once imported, a lost index is not rebuilt from the stale uidlist.
	os.Remove(filepath.Join(md, indexName))
	st2, _, _ := reopen(t, root)
	if st2.UIDValidity == 1234567 {
		t.Errorf("rebuild re-imported the dovecot-uidlist (UIDVALIDITY %d)", st2.UIDValidity)
	}
}

// TestImportFromDovecot lets dovecot itself (doveadm) make the Maildir.
func TestImportFromDovecot(t *testing.T) {
	doveadm := testlib.RequireTool(t, "doveadm")
	root := testlib.TempDir(t)
	home := filepath.Join(root, "example.org", "alice")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := home; d != filepath.Dir(root); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	// dovecot refuses to run mail commands as root: use nobody.
	if err := exec.Command("chown", "-R", "nobody:nogroup", home).Run(); err != nil {
		t.Skipf("chown: %v", err)
	}
	conf := filepath.Join(root, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
mail_location = maildir:%[2]s/Maildir
mail_uid = 65534
mail_gid = 65534
namespace inbox {
  inbox = yes
  separator = /
}
`, root, home)), 0o644)
	run := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(doveadm, append([]string{"-c", conf}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "USER=nobody")
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("doveadm %v: %v\n%s", args, err, out)
		}
	}
	run(storetest.Msg(1), "save")
	run(storetest.Msg(2), "save")
	run(storetest.Msg(3), "save")
	run("", "flags", "add", `\Seen $Work`, "mailbox", "INBOX", "uid", "2")
	run("", "expunge", "mailbox", "INBOX", "uid", "1")
	run("", "mailbox", "create", "-s", "Archive/2023")
	data, err := os.ReadFile(filepath.Join(home, "Maildir", uidListFile))
	if err != nil {
		t.Fatal(err)
	}
	ul, err := parseUIDList(data)
	if err != nil {
		t.Fatalf("parseUIDList(dovecot's) = %v\n%s", err, data)
	}
	st, msgs, bodies := reopen(t, root)
	if st.UIDValidity != ul.uidValidity || st.UIDNext != ul.nextUID {
		t.Errorf("Status = %+v, want dovecot's UIDVALIDITY %d and UIDNEXT %d", st, ul.uidValidity, ul.nextUID)
	}
	// dovecot stores messages with LF line ends.
	lf := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	if len(msgs) != 2 || msgs[0].UID != 2 || msgs[1].UID != 3 || bodies[0] != lf(storetest.Msg(2)) || bodies[1] != lf(storetest.Msg(3)) {
		t.Fatalf("messages %+v %q, want dovecot's UIDs 2 and 3", msgs, bodies)
	}
	if !slices.Equal(msgs[0].Flags, []string{"$Work", `\Seen`}) {
		t.Errorf("flags of UID 2 = %v, want [$Work \\Seen]", msgs[0].Flags)
	}
	s := openStore(t, root, Options{})
	m, _ := s.User(t.Context(), "alice@example.org")
	infos, err := m.List(t.Context())
	if err != nil || !slices.ContainsFunc(infos, func(i store.MailboxInfo) bool { return i.Name == "Archive/2023" && i.Subscribed }) {
		t.Errorf("List() = %v, %v, want Archive/2023 subscribed", infos, err)
	}
}
