package resolve_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/postcove/postcove/services/auth/internal/resolve"
	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/sqlite"
	"github.com/postcove/postcove/services/internal/address"
)

// fixture is a real SQLite store with a few domains, users and aliases.
func fixture(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "auth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"example.org", "catch.example", "xn--bcher-kva.example"} {
		_, err := st.CreateDomain(ctx, d)
		must(err)
	}
	for _, u := range []string{"alice@example.org", "bob@example.org", "carol@catch.example", "jörg@xn--bcher-kva.example"} {
		a, err := address.Parse(u)
		must(err)
		_, err = st.CreateUser(ctx, store.User{Address: a.String(), Domain: a.Domain, PasswordHash: "{PLAIN}x", Enabled: true})
		must(err)
	}
	aliases := map[string][]string{
		"team@example.org":       {"alice@example.org", "bob@example.org", "friend@remote.example"},
		"both@example.org":       {"team@example.org", "alice@example.org"},
		"bob@example.org":        {"bob@example.org", "bob@remote.example"}, // keep a copy and forward
		"ping@example.org":       {"pong@example.org"},
		"pong@example.org":       {"ping@example.org"},
		"ghost@example.org":      {"nobody@example.org"},
		"@catch.example":         {"carol@catch.example"},
		"sales@catch.example":    {"carol@catch.example", "boss@remote.example"},
		"deep0@example.org":      {"deep1@example.org"},
		"forward@example.org":    {"someone@remote.example"},
		"self@example.org":       {"self@example.org"},
		"postmaster@example.org": {"alice@example.org"},
	}
	for i := 1; i <= resolve.MaxDepth+1; i++ {
		aliases[fmt.Sprintf("deep%d@example.org", i)] = []string{fmt.Sprintf("deep%d@example.org", i+1)}
	}
	aliases[fmt.Sprintf("deep%d@example.org", resolve.MaxDepth+2)] = []string{"alice@example.org"}
	aliases["shallow0@example.org"] = []string{"shallow1@example.org"}
	aliases["shallow1@example.org"] = []string{"alice@example.org"}
	for src, dests := range aliases {
		a, err := address.ParseSource(src)
		must(err)
		_, err = st.AddAliasDestinations(ctx, a.String(), a.Domain, dests)
		must(err)
	}
	return st
}

func mailboxes(r resolve.Result) []string {
	var out []string
	for _, m := range r.Mailboxes {
		out = append(out, m.Address)
	}
	return out
}

func TestResolve(t *testing.T) {
	st := fixture(t)
	r := resolve.New(st, resolve.Options{TagSeparator: "+"})
	tests := []struct {
		in        string
		kind      resolve.Kind
		mailboxes []string
		forwards  []string
	}{
		{"alice@example.org", resolve.Deliver, []string{"alice@example.org"}, nil},
		{"ALICE@Example.ORG", resolve.Deliver, []string{"alice@example.org"}, nil},
		{"alice+news@example.org", resolve.Deliver, []string{"alice@example.org"}, nil},
		{"nobody@example.org", resolve.UnknownUser, nil, nil},
		{"alice@elsewhere.example", resolve.NotLocalDomain, nil, nil},
		{"team@example.org", resolve.Deliver, []string{"alice@example.org", "bob@example.org"}, []string{"bob@remote.example", "friend@remote.example"}},
		{"team+x@example.org", resolve.Deliver, []string{"alice@example.org", "bob@example.org"}, []string{"bob@remote.example", "friend@remote.example"}},
		// Destinations expand in sorted order, depth first; nested and
		// deduplicated: alice is reached twice, listed once.
		{"both@example.org", resolve.Deliver, []string{"alice@example.org", "bob@example.org"}, []string{"bob@remote.example", "friend@remote.example"}},
		{"bob@example.org", resolve.Deliver, []string{"bob@example.org"}, []string{"bob@remote.example"}},
		{"ping@example.org", resolve.AliasLoop, nil, nil},
		{"self@example.org", resolve.AliasLoop, nil, nil},
		{"ghost@example.org", resolve.UnknownUser, nil, nil},
		{"forward@example.org", resolve.Deliver, nil, []string{"someone@remote.example"}},
		{"anything@catch.example", resolve.Deliver, []string{"carol@catch.example"}, nil},
		{"carol@catch.example", resolve.Deliver, []string{"carol@catch.example"}, nil},
		{"sales@catch.example", resolve.Deliver, []string{"carol@catch.example"}, []string{"boss@remote.example"}},
		{"deep0@example.org", resolve.AliasLoop, nil, nil},
		{"shallow0@example.org", resolve.Deliver, []string{"alice@example.org"}, nil},
		// IDN: the U-label and the A-label are the same domain.
		{"jörg@bücher.example", resolve.Deliver, []string{"jörg@xn--bcher-kva.example"}, nil},
		{"JÖRG@xn--bcher-kva.example", resolve.Deliver, []string{"jörg@xn--bcher-kva.example"}, nil},
	}
	for _, tt := range tests {
		a, err := address.Parse(tt.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		got, err := r.Resolve(context.Background(), a)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", tt.in, err)
		}
		if got.Kind != tt.kind || !slices.Equal(mailboxes(got), tt.mailboxes) || !slices.Equal(got.Forwards, tt.forwards) {
			t.Errorf("Resolve(%q) = kind %v, mailboxes %v, forwards %v; want kind %v, %v, %v",
				tt.in, got.Kind, mailboxes(got), got.Forwards, tt.kind, tt.mailboxes, tt.forwards)
		}
	}
}

func TestResolveWithoutPlusAddressing(t *testing.T) {
	r := resolve.New(fixture(t), resolve.Options{})
	a, _ := address.Parse("alice+news@example.org")
	got, err := r.Resolve(context.Background(), a)
	if err != nil || got.Kind != resolve.UnknownUser {
		t.Errorf("Resolve(%v) without tag separator = %v, %v; want UnknownUser", a, got.Kind, err)
	}
}

func TestResolveCache(t *testing.T) {
	st := fixture(t)
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	r := resolve.New(st, resolve.Options{CacheTTL: 5 * time.Second, Now: func() time.Time { return now }})
	a, _ := address.Parse("dave@example.org")
	kind := func() resolve.Kind {
		t.Helper()
		res, err := r.Resolve(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return res.Kind
	}
	if k := kind(); k != resolve.UnknownUser {
		t.Fatalf("Resolve(dave) = %v, want UnknownUser", k)
	}
	if _, err := st.CreateUser(ctx, store.User{Address: "dave@example.org", Domain: "example.org", PasswordHash: "{PLAIN}x", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if k := kind(); k != resolve.UnknownUser {
		t.Errorf("Resolve(dave) within TTL = %v, want the cached UnknownUser", k)
	}
	now = now.Add(6 * time.Second)
	if k := kind(); k != resolve.Deliver {
		t.Errorf("Resolve(dave) after TTL = %v, want Deliver", k)
	}
	if err := st.DeleteUser(ctx, "dave@example.org"); err != nil {
		t.Fatal(err)
	}
	r.Invalidate()
	if k := kind(); k != resolve.UnknownUser {
		t.Errorf("Resolve(dave) after Invalidate = %v, want UnknownUser", k)
	}
}

func TestCanSendAs(t *testing.T) {
	r := resolve.New(fixture(t), resolve.Options{TagSeparator: "+"})
	tests := []struct {
		user, addr string
		want       bool
	}{
		{"alice@example.org", "alice@example.org", true},
		{"alice@example.org", "Alice+lists@Example.org", true},
		{"alice@example.org", "postmaster@example.org", true}, // alias to alice
		{"alice@example.org", "team@example.org", true},       // alias list including alice
		{"bob@example.org", "team@example.org", true},
		{"alice@example.org", "bob@example.org", false},             // another user's mailbox
		{"alice@example.org", "forward@example.org", false},         // alias to someone else
		{"carol@catch.example", "whatever@catch.example", true},     // catch-all owner
		{"alice@example.org", "whatever@catch.example", false},      // not hers
		{"carol@catch.example", "sales@catch.example", true},        // alias including carol
		{"alice@example.org", "alice@elsewhere.example", false},     // not our domain
		{"alice@example.org", "ping@example.org", false},            // loop delivers nowhere
		{"jörg@xn--bcher-kva.example", "jörg@bücher.example", true}, // IDN equivalence
	}
	for _, tt := range tests {
		u, err := address.Parse(tt.user)
		if err != nil {
			t.Fatal(err)
		}
		a, err := address.Parse(tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.CanSendAs(context.Background(), u, a)
		if err != nil || got != tt.want {
			t.Errorf("CanSendAs(%q, %q) = %v, %v; want %v", tt.user, tt.addr, got, err, tt.want)
		}
	}
}
