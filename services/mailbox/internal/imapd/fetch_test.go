package imapd

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fetchOne fetches one message by sequence number and fails unless there
// is exactly one.
func fetchOne(t testing.TB, c *client, seq uint32, opts *imap.FetchOptions) *imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(imap.SeqSetNum(seq), opts).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH %d = %v, %v; want one message", seq, msgs, err)
	}
	return msgs[0]
}

// TestFetch: every FETCH item on a multipart message, partial and BINARY
// included, and \Seen set by BODY[] but not by BODY.PEEK[].
func TestFetch(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		uids := ts.deliver(t, "INBOX", multipartMsg, plainMsg("second", "short"))
		c := ts.selectInbox(t)
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		r.ok("ENABLE IMAP4rev2")
		if got := strings.Join(r.ok("EXAMINE inbox"), "\n"); !strings.Contains(got, `* LIST () "/" INBOX`) || !strings.Contains(got, "* 2 EXISTS") ||
			!strings.Contains(got, "[PERMANENTFLAGS ()]") || strings.Contains(got, "RECENT") {
			t.Errorf("EXAMINE in IMAP4rev2 = %s, want LIST, EXISTS, no PERMANENTFLAGS, no RECENT", got)
		}

		sec := func(part []int, spec imap.PartSpecifier, partial *imap.SectionPartial, fields ...string) *imap.FetchItemBodySection {
			return &imap.FetchItemBodySection{Part: part, Specifier: spec, Partial: partial, HeaderFields: fields, Peek: true}
		}
		sections := map[string]*imap.FetchItemBodySection{
			"whole":    sec(nil, imap.PartSpecifierNone, nil),
			"header":   sec(nil, imap.PartSpecifierHeader, nil),
			"fields":   sec(nil, imap.PartSpecifierHeader, nil, "Subject", "to"),
			"text":     sec(nil, imap.PartSpecifierText, nil),
			"1":        sec([]int{1}, imap.PartSpecifierNone, nil),
			"2.MIME":   sec([]int{2}, imap.PartSpecifierMIME, nil),
			"3":        sec([]int{3}, imap.PartSpecifierNone, nil),
			"3.HEADER": sec([]int{3}, imap.PartSpecifierHeader, nil),
			"3.1":      sec([]int{3, 1}, imap.PartSpecifierNone, nil),
			"<5.10>":   sec(nil, imap.PartSpecifierNone, &imap.SectionPartial{Offset: 5, Size: 10}),
			"1<6.5>":   sec([]int{1}, imap.PartSpecifierNone, &imap.SectionPartial{Offset: 6, Size: 5}),
			"9":        sec([]int{9}, imap.PartSpecifierNone, nil),
		}
		opts := &imap.FetchOptions{
			UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
			BodyStructure:     &imap.FetchItemBodyStructure{Extended: true},
			BinarySection:     []*imap.FetchItemBinarySection{{Part: []int{2}, Peek: true}, {Part: []int{1}, Partial: &imap.SectionPartial{Offset: 0, Size: 5}, Peek: true}},
			BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}},
		}
		for _, s := range sections {
			opts.BodySection = append(opts.BodySection, s)
		}
		m := fetchOne(t, c, 1, opts)
		if m.UID != imap.UID(uids[0]) || len(m.Flags) != 0 || m.RFC822Size != int64(len(multipartMsg)) || !m.InternalDate.Equal(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)) {
			t.Errorf("FETCH 1 = UID %d, flags %v, size %d, date %v", m.UID, m.Flags, m.RFC822Size, m.InternalDate)
		}
		env := m.Envelope
		if env == nil || env.Subject != "café report" || len(env.From) != 1 || env.From[0].Addr() != "bob@example.net" || env.MessageID != "m1@example.net" || env.Date.IsZero() {
			t.Errorf("ENVELOPE = %+v", env)
		}
		mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
		if !ok || mp.Subtype != "mixed" || len(mp.Children) != 3 {
			t.Fatalf("BODYSTRUCTURE = %#v, want multipart/mixed with 3 parts", m.BodyStructure)
		}
		if p, ok := mp.Children[1].(*imap.BodyStructureSinglePart); !ok || p.Encoding != "base64" || p.Size != 8 ||
			p.Extended == nil || p.Extended.Disposition == nil || p.Extended.Disposition.Value != "attachment" {
			t.Errorf("BODYSTRUCTURE part 2 = %#v", mp.Children[1])
		}
		if p, ok := mp.Children[2].(*imap.BodyStructureSinglePart); !ok || p.MessageRFC822 == nil || p.MessageRFC822.Envelope.Subject != "inner subject" {
			t.Errorf("BODYSTRUCTURE part 3 = %#v, want message/rfc822 with its envelope", mp.Children[2])
		}
		headerEnd := strings.Index(multipartMsg, "\r\n\r\n") + 4
		want := map[string]string{
			"whole":    multipartMsg,
			"header":   multipartMsg[:headerEnd],
			"fields":   "To: Alice <alice@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?= report\r\n\r\n",
			"text":     multipartMsg[headerEnd:],
			"1":        "Hello plain body with needle-plain.",
			"2.MIME":   crlf("Content-Type: application/octet-stream; name=\"data.bin\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"data.bin\"\n\n"),
			"3":        crlf("From: Carol <carol@example.com>\nSubject: inner subject\n\ninner body"),
			"3.HEADER": crlf("From: Carol <carol@example.com>\nSubject: inner subject\n\n"),
			"3.1":      "inner body",
			"<5.10>":   multipartMsg[5:15],
			"1<6.5>":   "plain",
			"9":        "",
		}
		for name, s := range sections {
			if got := string(m.FindBodySection(s)); got != want[name] {
				t.Errorf("BODY[%s] = %q, want %q", name, got, want[name])
			}
		}
		if got := m.FindBinarySection(opts.BinarySection[0]); !bytes.Equal(got, []byte{0, 1, 2, 3, 4, 5}) {
			t.Errorf("BINARY[2] = %v, want 0..5", got)
		}
		if got := string(m.FindBinarySection(opts.BinarySection[1])); got != "Hello" {
			t.Errorf("BINARY[1]<0.5> = %q, want Hello", got)
		}
		if got, ok := m.FindBinarySectionSize([]int{2}); !ok || got != 6 {
			t.Errorf("BINARY.SIZE[2] = %d, want 6", got)
		}

		// PEEK left \Seen alone; BODY[] sets it and says so.
		seen := fetchOne(t, c, 2, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
		if !slices.Contains(seen.Flags, imap.FlagSeen) {
			t.Errorf("FETCH 2 BODY[] flags = %v, want \\Seen in the response", seen.Flags)
		}
		if f := fetchOne(t, c, 1, &imap.FetchOptions{Flags: true}).Flags; len(f) != 0 {
			t.Errorf("flags of message 1 after PEEKs = %v, want none", f)
		}
		all, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true, UID: true}).Collect()
		if err != nil || len(all) != 2 {
			t.Errorf("FETCH 1:2 FLAGS = %v, %v", all, err)
		}
		if got := testutil.ToFloat64(ts.srv.metrics.fetched); got == 0 {
			t.Errorf("fetched_bytes_total = 0 after FETCH BODY[]")
		}
	})
}

// TestSearch: flag, date, size, header, body, text, UID and sequence
// criteria with NOT and OR, and ESEARCH return options.
func TestSearch(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		ts.deliver(t, "INBOX", multipartMsg, plainMsg("second", "lorem ipsum"), plainMsg("third with caf\xc3\xa9", strings.Repeat("big ", 500)))
		c := ts.selectInbox(t)
		if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
		for _, tc := range []struct {
			name string
			c    imap.SearchCriteria
			want []uint32
		}{
			{"all", imap.SearchCriteria{}, []uint32{1, 2, 3}},
			{"flagged", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{2}},
			{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$work"}}, []uint32{2}},
			{"unflagged", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagFlagged}}, []uint32{1, 3}},
			{"recent", imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil},
			{"larger", imap.SearchCriteria{Larger: 1000}, []uint32{3}},
			{"smaller", imap.SearchCriteria{Smaller: 200}, []uint32{2}},
			{"since", imap.SearchCriteria{Since: day(2024, 5, 6)}, []uint32{1, 2, 3}},
			{"before", imap.SearchCriteria{Before: day(2024, 5, 6)}, nil},
			{"sentbefore", imap.SearchCriteria{SentBefore: day(2006, 1, 3)}, []uint32{1}},
			{"senton", imap.SearchCriteria{SentSince: day(2006, 1, 3), SentBefore: day(2006, 1, 4)}, []uint32{2, 3}},
			{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "CAFÉ"}}}, []uint32{1, 3}},
			{"header exists", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID"}}}, []uint32{1}},
			{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob@"}}}, []uint32{1, 2, 3}},
			{"body", imap.SearchCriteria{Body: []string{"NEEDLE-plain"}}, []uint32{1}},
			{"body in attached message", imap.SearchCriteria{Body: []string{"inner body"}}, []uint32{1}},
			{"body not header", imap.SearchCriteria{Body: []string{"second"}}, nil},
			{"text in header", imap.SearchCriteria{Text: []string{"second"}}, []uint32{2}},
			{"text in body", imap.SearchCriteria{Text: []string{"ipsum"}}, []uint32{2}},
			{"uid", imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(2, 3)}}, []uint32{2, 3}},
			{"seq star", imap.SearchCriteria{SeqNum: []imap.SeqSet{{imap.SeqRange{Start: 2, Stop: 0}}}}, []uint32{2, 3}},
			{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"ipsum"}}}}, []uint32{1, 3}},
			{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Larger: 1000}, {Flag: []imap.Flag{imap.FlagFlagged}}}}}, []uint32{2, 3}},
			{"and", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}, Body: []string{"needle"}}, nil},
		} {
			data, err := c.Search(&tc.c, nil).Wait()
			if err != nil {
				t.Errorf("SEARCH %s = %v", tc.name, err)
				continue
			}
			if got := data.AllSeqNums(); !slices.Equal(got, tc.want) {
				t.Errorf("SEARCH %s = %v, want %v", tc.name, got, tc.want)
			}
		}
		data, err := c.UIDSearch(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
		if err != nil || data.Min != 1 || data.Max != 3 || data.Count != 3 {
			t.Errorf("UID SEARCH RETURN (MIN MAX COUNT) = %+v, %v", data, err)
		}
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		r.ok("SELECT INBOX")
		if got := r.ok(`SEARCH CHARSET UTF-8 SUBJECT "third"`); got[0] != "* SEARCH 3" {
			t.Errorf("SEARCH SUBJECT third = %q", got)
		}
		r.ok("SEARCH RETURN (SAVE) LARGER 1000")
		if got := r.ok("FETCH $ (UID)"); !strings.HasPrefix(got[0], "* 3 FETCH (UID 3") {
			t.Errorf("FETCH $ after SEARCH RETURN (SAVE) = %q", got)
		}

		// Text in another charset and transfer encoding is decoded.
		ts.deliver(t, "Drafts", crlf("Subject: latin\nContent-Type: text/plain; charset=iso-8859-1\n"+
			"Content-Transfer-Encoding: quoted-printable\n\nun caf=E9 cr=E8me\n"))
		if _, err := c.Select("Drafts", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if data, err := c.Search(&imap.SearchCriteria{Body: []string{"CAFÉ CRÈME"}}, nil).Wait(); err != nil || !slices.Equal(data.AllSeqNums(), []uint32{1}) {
			t.Errorf("SEARCH BODY in ISO-8859-1 = %v, %v; want 1", data, err)
		}
	})
}

// TestStore: STORE variants answer FETCH FLAGS, and a keyword new to the
// mailbox is announced with FLAGS before the FETCH that uses it.
func TestStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		ts.deliver(t, "INBOX", plainMsg("a", "a"), plainMsg("b", "b"))
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		r.ok("SELECT INBOX")
		r.ok("NOOP")
		got := r.ok(`STORE 1 +FLAGS (\Seen $NewLabel)`)
		if len(got) < 3 || !strings.HasPrefix(got[0], "* FLAGS (") || !strings.Contains(got[0], "$NewLabel") ||
			!strings.HasPrefix(got[1], "* 1 FETCH (FLAGS (") || !strings.Contains(got[1], "$NewLabel") {
			t.Errorf("STORE of a new keyword = %q, want FLAGS then FETCH", got)
		}
		got = r.ok(`UID STORE 1:* FLAGS.SILENT (\Deleted)`)
		if len(got) != 1 {
			t.Errorf("STORE .SILENT = %q, want only the tagged OK", got)
		}
		got = r.ok(`UID STORE 2 -FLAGS (\Deleted)`)
		if len(got) != 2 || !strings.Contains(got[0], "UID 2") || strings.Contains(got[0], `\Deleted`) {
			t.Errorf("UID STORE -FLAGS = %q, want FETCH with UID and no \\Deleted", got)
		}
		if got := r.cmd(`STORE 1 +FLAGS (\Bogus)`); !strings.Contains(got[len(got)-1], "BAD") {
			t.Errorf("STORE \\Bogus = %q, want BAD", got)
		}
		// IMAP4rev1: the first unseen message, and RECENT 0.
		r.ok(`STORE 1 +FLAGS.SILENT (\Seen)`)
		if got := strings.Join(r.ok("EXAMINE INBOX"), "\n"); !strings.Contains(got, "[UNSEEN 2]") || !strings.Contains(got, "* 0 RECENT") {
			t.Errorf("EXAMINE = %s, want [UNSEEN 2] and 0 RECENT", got)
		}
		if got := r.cmd(`STORE 1 +FLAGS (\Flagged)`); !strings.Contains(got[len(got)-1], "NO") {
			t.Errorf("STORE in EXAMINE = %q, want NO", got)
		}
	})
}

// TestCopyMoveExpunge: COPY and MOVE answer COPYUID, MOVE and EXPUNGE
// announce expunges, UID EXPUNGE removes only what it names.
func TestCopyMoveExpunge(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		uids := ts.deliver(t, "INBOX", plainMsg("1", "1"), plainMsg("2", "2"), plainMsg("3", "3"), plainMsg("4", "4"))
		c := ts.selectInbox(t)
		cp, err := c.Copy(imap.SeqSetNum(1, 2), "Trash").Wait()
		if err != nil || cp.UIDValidity == 0 || cp.SourceUIDs.String() != "1:2" || cp.DestUIDs.String() != "1:2" {
			t.Errorf("COPY = %+v, %v; want COPYUID 1:2 1:2", cp, err)
		}
		wantCode(t, "COPY to a missing mailbox", errOf(c.Copy(imap.SeqSetNum(1), "Nope").Wait()), imap.StatusResponseTypeNo, imap.ResponseCodeTryCreate)

		mv, err := c.Move(imap.UIDSetNum(imap.UID(uids[1])), "Junk").Wait()
		if err != nil || mv.SourceUIDs.String() != "2" {
			t.Errorf("UID MOVE = %+v, %v", mv, err)
		}
		c.updates.wait(t, "EXPUNGE 2")

		// Now 1, 3, 4 as seq 1..3: delete all, UID EXPUNGE only UID 3.
		if err := c.Store(imap.SeqSetNum(1, 2, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		exp, err := c.UIDExpunge(imap.UIDSetNum(imap.UID(uids[2]))).Collect()
		if err != nil || !slices.Equal(exp, []uint32{2}) {
			t.Errorf("UID EXPUNGE 3 = %v, %v; want seq 2", exp, err)
		}
		exp, err = c.Expunge().Collect()
		if err != nil || !slices.Equal(exp, []uint32{2, 1}) {
			t.Errorf("EXPUNGE = %v, %v; want 2 then 1", exp, err)
		}
		st, err := c.Status("Trash", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != 2 {
			t.Errorf("STATUS Trash = %+v, %v; want 2", st, err)
		}
		if err := c.Unselect().Wait(); err != nil {
			t.Errorf("UNSELECT = %v", err)
		}
	})
}

// TestFirstUnseen: IMAP4rev1's [UNSEEN n] is the first unseen message
// wherever the unseen ones are (SELECT reads the metadata of a few
// messages at both ends of the mailbox, then of more), and is left out
// when every message is seen.
func TestFirstUnseen(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		msgs := make([]string, 600)
		for i := range msgs {
			msgs[i] = plainMsg(fmt.Sprintf("m%d", i), "x")
		}
		ts.deliver(t, "INBOX", msgs...)
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		for _, tc := range []struct {
			unseen string // sequence set, "" for none
			want   string // the UNSEEN code, "" for none
		}{
			{"1", "[UNSEEN 1]"},
			{"590", "[UNSEEN 590]"},
			{"500:*", "[UNSEEN 500]"},     // the newest unread
			{"300,500:*", "[UNSEEN 300]"}, // and one in the middle
			{"100,599:*", "[UNSEEN 100]"}, // found from the start
			{"320", "[UNSEEN 320]"},       // in neither end's first look
			{"", ""},
		} {
			r.ok("SELECT INBOX")
			r.ok(`STORE 1:* +FLAGS.SILENT (\Seen)`)
			if tc.unseen != "" {
				r.ok(`STORE ` + tc.unseen + ` -FLAGS.SILENT (\Seen)`)
			}
			got := strings.Join(r.ok("EXAMINE INBOX"), "\n")
			switch {
			case !strings.Contains(got, "* 600 EXISTS"):
				t.Errorf("EXAMINE with %q unseen = %s, want 600 EXISTS", tc.unseen, got)
			case tc.want == "" && strings.Contains(got, "UNSEEN"):
				t.Errorf("EXAMINE with every message seen = %s, want no UNSEEN", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("EXAMINE with %q unseen = %s, want %s", tc.unseen, got, tc.want)
			}
		}
	})
}
