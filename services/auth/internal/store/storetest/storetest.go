// Package storetest is the one test suite that every store.Store
// implementation passes: store/sqlite and store/mysql run it on their own
// databases, so that the two behave alike down to the sentinel errors and
// the sort order.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postcove/postcove/services/auth/internal/store"
)

// Run runs the suite. Each subtest calls open for a fresh, empty store of
// its own; open closes that store when t ends (t.Cleanup). Subtests run in
// parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Domains", testDomains},
		{"DeleteDomain", testDeleteDomain},
		{"Users", testUsers},
		{"SetUser", testSetUser},
		{"Aliases", testAliases},
		{"LookupEntries", testLookupEntries},
		{"Failures", testFailures},
		{"ConcurrentFailures", testConcurrentFailures},
		{"PruneFailures", testPruneFailures},
		{"ExactBytes", testExactBytes},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// RunShared checks that several stores opened at once on one database, as
// auth processes starting together do, all open (the migration runs once)
// and see one another's writes. open opens that one database each time; the
// suite closes the stores.
func RunShared(t *testing.T, open func() (store.Store, error)) {
	ctx := t.Context()
	const n = 5
	stores := make([]store.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = open() })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("open %d of %d at once: %v", i+1, n, errs[i])
		}
		t.Cleanup(func() { s.Close() })
	}
	mustDomain(t, stores[0], "shared.example")
	for i, s := range stores {
		ok, err := s.DomainExists(ctx, "shared.example")
		if err != nil || !ok {
			t.Errorf("store %d: DomainExists(shared.example) = %v, %v, want true, nil", i, ok, err)
		}
	}
	// A store opened after the others finds the schema in place.
	s, err := open()
	if err != nil {
		t.Fatalf("open again: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if ds, err := s.ListDomains(ctx); err != nil || len(ds) != 1 {
		t.Errorf("ListDomains() after reopening = %v, %v, want 1 domain", ds, err)
	}
}

// Open opens a store with open (an implementation's Open) on target and
// closes it when t ends; failing to open fails t.
func Open[S store.Store](t *testing.T, open func(context.Context, string) (S, error), target string) S {
	t.Helper()
	s, err := open(t.Context(), target)
	if err != nil {
		t.Fatalf("Open(%q) = %v", target, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustDomain(t *testing.T, s store.Store, name string) {
	t.Helper()
	if _, err := s.CreateDomain(t.Context(), name); err != nil {
		t.Fatalf("CreateDomain(%q) = %v", name, err)
	}
}

func mustUser(t *testing.T, s store.Store, address, domain string) store.User {
	t.Helper()
	u, err := s.CreateUser(t.Context(), store.User{Address: address, Domain: domain, PasswordHash: "{PLAIN}x", Enabled: true})
	if err != nil {
		t.Fatalf("CreateUser(%q) = %v", address, err)
	}
	return u
}

func mustAlias(t *testing.T, s store.Store, source, domain string, dests ...string) {
	t.Helper()
	if _, err := s.AddAliasDestinations(t.Context(), source, domain, dests); err != nil {
		t.Fatalf("AddAliasDestinations(%q, %q, %q) = %v", source, domain, dests, err)
	}
}

// checkErr fails t unless err is want (nil, or a sentinel in err's chain).
func checkErr(t *testing.T, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", call, err, want)
	}
}

// checkCreated fails t unless at is within [from, to] at second precision,
// which the store keeps.
func checkCreated(t *testing.T, what string, at, from, to time.Time) {
	t.Helper()
	if at.Before(from.Truncate(time.Second)) || at.After(to) {
		t.Errorf("%s.CreatedAt = %v, want within [%v, %v]", what, at, from, to)
	}
}

func domainNames(ds []store.Domain) []string {
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	return names
}

func testDomains(t *testing.T, s store.Store) {
	ctx := t.Context()
	if ds, err := s.ListDomains(ctx); err != nil || len(ds) != 0 {
		t.Fatalf("ListDomains() of an empty store = %v, %v, want none", ds, err)
	}
	before := time.Now()
	d, err := s.CreateDomain(ctx, "example.org")
	if err != nil || d.Name != "example.org" {
		t.Fatalf("CreateDomain(example.org) = %+v, %v, want example.org, nil", d, err)
	}
	checkCreated(t, "CreateDomain(example.org)", d.CreatedAt, before, time.Now())
	for _, name := range []string{"b.example", "a.example"} {
		mustDomain(t, s, name)
	}
	_, err = s.CreateDomain(ctx, "example.org")
	checkErr(t, "CreateDomain(example.org) again", err, store.ErrExists)

	ds, err := s.ListDomains(ctx)
	want := []string{"a.example", "b.example", "example.org"}
	if got := domainNames(ds); err != nil || !slices.Equal(got, want) {
		t.Errorf("ListDomains() = %q, %v, want %q", got, err, want)
	}
	if i := slices.IndexFunc(ds, func(x store.Domain) bool { return x.Name == "example.org" }); i < 0 || !ds[i].CreatedAt.Equal(d.CreatedAt) {
		t.Errorf("ListDomains() = %+v, want example.org created at %v", ds, d.CreatedAt)
	}

	for _, tt := range []struct {
		name string
		want bool
	}{
		{"example.org", true},
		{"a.example", true},
		{"example.net", false},
		{"Example.org", false}, // the caller canonicalises; the store compares bytes
		{"example.org.", false},
		{"", false},
	} {
		got, err := s.DomainExists(ctx, tt.name)
		if err != nil || got != tt.want {
			t.Errorf("DomainExists(%q) = %v, %v, want %v, nil", tt.name, got, err, tt.want)
		}
	}
}

func testDeleteDomain(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, name := range []string{"users.example", "aliases.example", "empty.example"} {
		mustDomain(t, s, name)
	}
	mustUser(t, s, "a@users.example", "users.example")
	mustAlias(t, s, "@aliases.example", "aliases.example", "a@users.example")

	for _, tt := range []struct {
		name string
		want error
	}{
		{"users.example", store.ErrDomainNotEmpty},
		{"aliases.example", store.ErrDomainNotEmpty},
		{"missing.example", store.ErrNotFound},
		{"empty.example", nil},
		{"empty.example", store.ErrNotFound},
	} {
		checkErr(t, fmt.Sprintf("DeleteDomain(%q)", tt.name), s.DeleteDomain(ctx, tt.name), tt.want)
	}

	// Emptied, the domains go.
	checkErr(t, "DeleteUser(a@users.example)", s.DeleteUser(ctx, "a@users.example"), nil)
	checkErr(t, "DeleteAlias(@aliases.example)", s.DeleteAlias(ctx, "@aliases.example"), nil)
	for _, name := range []string{"users.example", "aliases.example"} {
		checkErr(t, fmt.Sprintf("DeleteDomain(%q) when empty", name), s.DeleteDomain(ctx, name), nil)
		if ok, err := s.DomainExists(ctx, name); err != nil || ok {
			t.Errorf("DomainExists(%q) after delete = %v, %v, want false, nil", name, ok, err)
		}
	}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustDomain(t, s, "example.org")
	mustDomain(t, s, "example.net")

	u := store.User{
		Address:      "bob@example.org",
		Domain:       "example.org",
		PasswordHash: "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
		QuotaBytes:   1 << 40,
		Enabled:      true,
	}
	_, err := s.CreateUser(ctx, store.User{Address: "bob@missing.example", Domain: "missing.example"})
	checkErr(t, "CreateUser(bob@missing.example)", err, store.ErrNoSuchDomain)

	before := time.Now()
	created, err := s.CreateUser(ctx, u)
	if err != nil {
		t.Fatalf("CreateUser(%+v) = %v", u, err)
	}
	checkCreated(t, "CreateUser(bob@example.org)", created.CreatedAt, before, time.Now())
	u.CreatedAt = created.CreatedAt
	if created != u {
		t.Errorf("CreateUser() = %+v, want %+v", created, u)
	}
	_, err = s.CreateUser(ctx, u)
	checkErr(t, "CreateUser(bob@example.org) again", err, store.ErrExists)

	got, err := s.GetUser(ctx, u.Address)
	if err != nil || got != u {
		t.Errorf("GetUser(%q) = %+v, %v, want %+v, nil", u.Address, got, err, u)
	}
	_, err = s.GetUser(ctx, "nobody@example.org")
	checkErr(t, "GetUser(nobody@example.org)", err, store.ErrNotFound)

	// Disabled and zero quota round-trip too.
	off, err := s.CreateUser(ctx, store.User{Address: "off@example.org", Domain: "example.org", PasswordHash: "{PLAIN}x"})
	if err != nil {
		t.Fatalf("CreateUser(off@example.org) = %v", err)
	}
	if got, err := s.GetUser(ctx, "off@example.org"); err != nil || got != off {
		t.Errorf("GetUser(off@example.org) = %+v, %v, want %+v, nil", got, err, off)
	}
	mustUser(t, s, "zed@example.net", "example.net")
	mustUser(t, s, "al@example.net", "example.net")
	mustUser(t, s, "al@example.org", "example.org")

	for _, tt := range []struct {
		domain string
		want   []string
	}{
		{"", []string{"al@example.net", "al@example.org", "bob@example.org", "off@example.org", "zed@example.net"}},
		{"example.org", []string{"al@example.org", "bob@example.org", "off@example.org"}},
		{"example.net", []string{"al@example.net", "zed@example.net"}},
		{"missing.example", nil},
	} {
		us, err := s.ListUsers(ctx, tt.domain)
		var got []string
		for _, u := range us {
			got = append(got, u.Address)
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ListUsers(%q) = %q, %v, want %q", tt.domain, got, err, tt.want)
		}
	}
	if us, err := s.ListUsers(ctx, "example.org"); err != nil || len(us) < 2 || us[1] != u {
		t.Errorf("ListUsers(example.org) = %+v, %v, want %+v second", us, err, u)
	}

	checkErr(t, "DeleteUser(bob@example.org)", s.DeleteUser(ctx, "bob@example.org"), nil)
	checkErr(t, "DeleteUser(bob@example.org) again", s.DeleteUser(ctx, "bob@example.org"), store.ErrNotFound)
	_, err = s.GetUser(ctx, "bob@example.org")
	checkErr(t, "GetUser(bob@example.org) after delete", err, store.ErrNotFound)
}

func testSetUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustDomain(t, s, "example.org")
	orig := mustUser(t, s, "bob@example.org", "example.org")

	for _, tt := range []struct {
		name  string
		set   func(address string) error
		apply func(u *store.User)
	}{
		{
			"SetPasswordHash",
			func(a string) error { return s.SetPasswordHash(ctx, a, "{SHA512-CRYPT}$6$salt$hash") },
			func(u *store.User) { u.PasswordHash = "{SHA512-CRYPT}$6$salt$hash" },
		},
		{
			"SetQuota",
			func(a string) error { return s.SetQuota(ctx, a, 5<<30) },
			func(u *store.User) { u.QuotaBytes = 5 << 30 },
		},
		{
			"SetQuota(0)",
			func(a string) error { return s.SetQuota(ctx, a, 0) },
			func(u *store.User) { u.QuotaBytes = 0 },
		},
		{
			"SetEnabled(false)",
			func(a string) error { return s.SetEnabled(ctx, a, false) },
			func(u *store.User) { u.Enabled = false },
		},
		{
			"SetEnabled(true)",
			func(a string) error { return s.SetEnabled(ctx, a, true) },
			func(u *store.User) { u.Enabled = true },
		},
	} {
		want, err := s.GetUser(ctx, orig.Address)
		if err != nil {
			t.Fatalf("GetUser(%q) = %v", orig.Address, err)
		}
		tt.apply(&want)
		// Twice: setting the value a user already has is no ErrNotFound.
		for range 2 {
			checkErr(t, tt.name+"(bob@example.org)", tt.set(orig.Address), nil)
		}
		if got, err := s.GetUser(ctx, orig.Address); err != nil || got != want {
			t.Errorf("GetUser() after %s = %+v, %v, want %+v", tt.name, got, err, want)
		}
		checkErr(t, tt.name+"(nobody@example.org)", tt.set("nobody@example.org"), store.ErrNotFound)
	}
}

func testLookupEntries(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustDomain(t, s, "example.org")
	mustUser(t, s, "bob@example.org", "example.org")
	if err := s.SetQuota(ctx, "bob@example.org", 1<<30); err != nil {
		t.Fatal(err)
	}
	mustAlias(t, s, "bob@example.org", "example.org", "bob@example.org", "x@remote.example")
	mustAlias(t, s, "@example.org", "example.org", "bob@example.org")
	mustAlias(t, s, "other@example.org", "example.org", "bob@example.org")

	e, err := s.LookupEntries(ctx, "example.org", []string{"bob@example.org", "nobody@example.org", "@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	wantUsers := map[string]store.User{"bob@example.org": {Address: "bob@example.org", Domain: "example.org", QuotaBytes: 1 << 30, Enabled: true}}
	wantAliases := map[string][]string{"bob@example.org": {"bob@example.org", "x@remote.example"}, "@example.org": {"bob@example.org"}}
	if !e.DomainExists || len(e.Users) != 1 || e.Users["bob@example.org"] != wantUsers["bob@example.org"] || !maps.EqualFunc(e.Aliases, wantAliases, slices.Equal) {
		t.Errorf("LookupEntries(example.org, bob, nobody, @) = %+v, want domain, users %v, aliases %v", e, wantUsers, wantAliases)
	}
	e, err = s.LookupEntries(ctx, "example.net", []string{"bob@example.net"})
	if err != nil || e.DomainExists || len(e.Users)+len(e.Aliases) != 0 {
		t.Errorf("LookupEntries(example.net) = %+v, %v, want nothing", e, err)
	}
	e, err = s.LookupEntries(ctx, "example.org", nil)
	if err != nil || !e.DomainExists {
		t.Errorf("LookupEntries(example.org, no addresses) = %+v, %v, want the domain", e, err)
	}
}

func testAliases(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustDomain(t, s, "example.org")
	mustDomain(t, s, "example.net")

	_, err := s.AddAliasDestinations(ctx, "info@missing.example", "missing.example", []string{"bob@example.org"})
	checkErr(t, "AddAliasDestinations(info@missing.example)", err, store.ErrNoSuchDomain)
	_, err = s.GetAlias(ctx, "info@example.org")
	checkErr(t, "GetAlias(info@example.org)", err, store.ErrNotFound)

	for _, tt := range []struct {
		source, domain string
		add            []string
		want           []string
	}{
		{"info@example.org", "example.org", []string{"bob@example.org", "al@example.net"}, []string{"al@example.net", "bob@example.org"}},
		// Merged, not duplicated, also within one call.
		{"info@example.org", "example.org", []string{"bob@example.org", "cy@example.org", "cy@example.org"}, []string{"al@example.net", "bob@example.org", "cy@example.org"}},
		{"info@example.org", "example.org", nil, []string{"al@example.net", "bob@example.org", "cy@example.org"}},
		{"@example.org", "example.org", []string{"bob@example.org"}, []string{"bob@example.org"}},
		{"sales@example.net", "example.net", []string{"external@example.com"}, []string{"external@example.com"}},
	} {
		want := store.Alias{Source: tt.source, Domain: tt.domain, Destinations: tt.want}
		a, err := s.AddAliasDestinations(ctx, tt.source, tt.domain, tt.add)
		if err != nil || !equalAlias(a, want) {
			t.Errorf("AddAliasDestinations(%q, %q, %q) = %+v, %v, want %+v", tt.source, tt.domain, tt.add, a, err, want)
		}
		if got, err := s.GetAlias(ctx, tt.source); err != nil || !equalAlias(got, want) {
			t.Errorf("GetAlias(%q) = %+v, %v, want %+v", tt.source, got, err, want)
		}
	}
	_, err = s.AddAliasDestinations(ctx, "nobody@example.org", "example.org", nil)
	checkErr(t, "AddAliasDestinations(nobody@example.org, none)", err, store.ErrNotFound)

	for _, tt := range []struct {
		domain string
		want   []string
	}{
		{"", []string{"@example.org", "info@example.org", "sales@example.net"}},
		{"example.org", []string{"@example.org", "info@example.org"}},
		{"example.net", []string{"sales@example.net"}},
		{"missing.example", nil},
	} {
		as, err := s.ListAliases(ctx, tt.domain)
		var got []string
		for _, a := range as {
			got = append(got, a.Source)
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ListAliases(%q) = %q, %v, want %q", tt.domain, got, err, tt.want)
		}
	}
	as, err := s.ListAliases(ctx, "example.org")
	wantInfo := store.Alias{Source: "info@example.org", Domain: "example.org", Destinations: []string{"al@example.net", "bob@example.org", "cy@example.org"}}
	if err != nil || len(as) != 2 || !equalAlias(as[1], wantInfo) {
		t.Errorf("ListAliases(example.org) = %+v, %v, want %+v second", as, err, wantInfo)
	}

	for _, tt := range []struct {
		dest string
		want []string
	}{
		{"bob@example.org", []string{"@example.org", "info@example.org"}},
		{"external@example.com", []string{"sales@example.net"}},
		{"nobody@example.org", nil},
	} {
		got, err := s.AliasesTo(ctx, tt.dest)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("AliasesTo(%q) = %q, %v, want %q", tt.dest, got, err, tt.want)
		}
	}

	checkErr(t, "DeleteAlias(info@example.org)", s.DeleteAlias(ctx, "info@example.org"), nil)
	checkErr(t, "DeleteAlias(info@example.org) again", s.DeleteAlias(ctx, "info@example.org"), store.ErrNotFound)
	_, err = s.GetAlias(ctx, "info@example.org")
	checkErr(t, "GetAlias(info@example.org) after delete", err, store.ErrNotFound)
	if got, err := s.AliasesTo(ctx, "bob@example.org"); err != nil || !slices.Equal(got, []string{"@example.org"}) {
		t.Errorf("AliasesTo(bob@example.org) after delete = %q, %v, want [@example.org]", got, err)
	}
}

func equalAlias(a, b store.Alias) bool {
	return a.Source == b.Source && a.Domain == b.Domain && slices.Equal(a.Destinations, b.Destinations)
}

func testFailures(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.UnixMilli(1_700_000_000_123)
	minute := time.Minute

	if f, err := s.GetFailures(ctx, store.ScopeIP, "192.0.2.1"); err != nil || f != (store.Failures{}) {
		t.Errorf("GetFailures(ip, 192.0.2.1) = %+v, %v, want zero", f, err)
	}
	for _, tt := range []struct {
		scope        store.FailureScope
		key          string
		now          time.Time
		forgetBefore time.Time
		want         int
		wantLast     time.Time
	}{
		{store.ScopeIP, "192.0.2.1", t0, t0.Add(-15 * minute), 1, t0},
		{store.ScopeIP, "192.0.2.1", t0.Add(minute), t0.Add(-14 * minute), 2, t0.Add(minute)},
		{store.ScopeIP, "192.0.2.1", t0.Add(2 * minute), t0.Add(-13 * minute), 3, t0.Add(2 * minute)},
		// A clock behind the last failure still counts, Last stays.
		{store.ScopeIP, "192.0.2.1", t0, t0.Add(-15 * minute), 4, t0.Add(2 * minute)},
		// Same key, other scope: a counter of its own.
		{store.ScopeAccount, "192.0.2.1", t0, t0.Add(-15 * minute), 1, t0},
		{store.ScopeAccount, "bob@example.org", t0, t0.Add(-15 * minute), 1, t0},
		// The last failure is older than forgetBefore: start again.
		{store.ScopeIP, "192.0.2.1", t0.Add(30 * minute), t0.Add(15 * minute), 1, t0.Add(30 * minute)},
		{store.ScopeIP, "192.0.2.1", t0.Add(31 * minute), t0.Add(16 * minute), 2, t0.Add(31 * minute)},
		// forgetBefore equal to the last failure keeps it.
		{store.ScopeIP, "192.0.2.1", t0.Add(32 * minute), t0.Add(31 * minute), 3, t0.Add(32 * minute)},
	} {
		f, err := s.RecordFailure(ctx, tt.scope, tt.key, tt.now, tt.forgetBefore)
		want := store.Failures{Count: tt.want, Last: tt.wantLast.UTC()}
		if err != nil || f.Count != want.Count || !f.Last.Equal(want.Last) {
			t.Errorf("RecordFailure(%s, %s, %v, %v) = %+v, %v, want %+v", tt.scope, tt.key, tt.now, tt.forgetBefore, f, err, want)
		}
		if got, err := s.GetFailures(ctx, tt.scope, tt.key); err != nil || got != f {
			t.Errorf("GetFailures(%s, %s) = %+v, %v, want %+v", tt.scope, tt.key, got, err, f)
		}
	}

	checkErr(t, "ClearFailures(ip, 192.0.2.1)", s.ClearFailures(ctx, store.ScopeIP, "192.0.2.1"), nil)
	if f, err := s.GetFailures(ctx, store.ScopeIP, "192.0.2.1"); err != nil || f != (store.Failures{}) {
		t.Errorf("GetFailures(ip, 192.0.2.1) after clear = %+v, %v, want zero", f, err)
	}
	if f, err := s.GetFailures(ctx, store.ScopeAccount, "192.0.2.1"); err != nil || f.Count != 1 {
		t.Errorf("GetFailures(account, 192.0.2.1) after clearing ip = %+v, %v, want count 1", f, err)
	}
	checkErr(t, "ClearFailures(ip, 192.0.2.1) again", s.ClearFailures(ctx, store.ScopeIP, "192.0.2.1"), nil)
	if f, err := s.RecordFailure(ctx, store.ScopeIP, "192.0.2.1", t0, t0.Add(-minute)); err != nil || f.Count != 1 {
		t.Errorf("RecordFailure(ip, 192.0.2.1) after clear = %+v, %v, want count 1", f, err)
	}
}

func testPruneFailures(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_123)
	for i, key := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		at := t0.Add(time.Duration(i) * time.Hour)
		if _, err := s.RecordFailure(ctx, store.ScopeIP, key, at, at.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneFailures(ctx, t0.Add(time.Hour))
	if err != nil || n != 1 {
		t.Errorf("PruneFailures(t0+1h) = %d, %v, want 1", n, err)
	}
	for key, want := range map[string]int{"192.0.2.1": 0, "192.0.2.2": 1, "192.0.2.3": 1} {
		if f, err := s.GetFailures(ctx, store.ScopeIP, key); err != nil || f.Count != want {
			t.Errorf("GetFailures(ip, %s) after prune = %+v, %v, want count %d", key, f, err, want)
		}
	}
}

// testConcurrentFailures proves RecordFailure atomic: of n concurrent
// calls on one new key none is lost, and each sees its own count.
func testConcurrentFailures(t *testing.T, s store.Store) {
	const n = 20
	now := time.Now()
	counts := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			f, err := s.RecordFailure(context.Background(), store.ScopeAccount, "bob@example.org", now, now.Add(-time.Hour))
			counts[i], errs[i] = f.Count, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("RecordFailure() concurrently: %v", err)
	}
	slices.Sort(counts)
	for i, c := range counts {
		if c != i+1 {
			t.Fatalf("RecordFailure() concurrently returned counts %v, want 1 to %d once each", counts, n)
		}
	}
	if f, err := s.GetFailures(t.Context(), store.ScopeAccount, "bob@example.org"); err != nil || f.Count != n {
		t.Errorf("GetFailures() after %d concurrent failures = %+v, %v, want count %d", n, f, err, n)
	}
}

// testExactBytes checks that names round-trip byte for byte and compare
// exactly: a U-label and its A-label, and names differing only in case or
// in a combining sequence, are different names.
func testExactBytes(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		uLabel = "bücher.example"        // ü precomposed, U+00FC
		decomp = "bu\u0308cher.example"  // u + U+0308
		aLabel = "xn--bcher-kva.example" // the canonical form
		upper  = "XN--BCHER-KVA.example"
		emoji  = "😀.example" // 4 bytes in UTF-8: needs utf8mb4
	)
	// The longest address: a 64-octet local part, a 255-octet domain.
	longLocal := strings.Repeat("l", 64)
	longDomain := strings.Repeat(strings.Repeat("d", 63)+".", 3) + strings.Repeat("e", 55) + ".example"
	names := []string{uLabel, decomp, aLabel, upper, emoji, longDomain}
	for _, name := range names {
		mustDomain(t, s, name)
	}
	ds, err := s.ListDomains(ctx)
	want := slices.Clone(names)
	slices.Sort(want) // byte order, as Go compares strings
	if got := domainNames(ds); err != nil || !slices.Equal(got, want) {
		t.Errorf("ListDomains() = %q, %v, want %q", got, err, want)
	}
	for _, name := range names {
		if ok, err := s.DomainExists(ctx, name); err != nil || !ok {
			t.Errorf("DomainExists(%q) = %v, %v, want true, nil", name, ok, err)
		}
	}

	var addrs []string
	for _, tt := range []struct{ local, domain string }{
		{"jörg", uLabel},
		{"jörg", aLabel},
		{"Jörg", aLabel},
		{longLocal, longDomain},
	} {
		a := tt.local + "@" + tt.domain
		u := mustUser(t, s, a, tt.domain)
		if got, err := s.GetUser(ctx, a); err != nil || got != u {
			t.Errorf("GetUser(%q) = %+v, %v, want %+v", a, got, err, u)
		}
		addrs = append(addrs, a)
	}
	mustAlias(t, s, "@"+emoji, emoji, addrs...)
	a, err := s.GetAlias(ctx, "@"+emoji)
	want = slices.Clone(addrs)
	slices.Sort(want)
	if err != nil || !slices.Equal(a.Destinations, want) {
		t.Errorf("GetAlias(@%s) = %q, %v, want destinations %q", emoji, a.Destinations, err, want)
	}
	if f, err := s.RecordFailure(ctx, store.ScopeAccount, "jörg@"+uLabel, time.Now(), time.Time{}); err != nil || f.Count != 1 {
		t.Errorf("RecordFailure(account, jörg@%s) = %+v, %v, want count 1", uLabel, f, err)
	}
	if f, err := s.GetFailures(ctx, store.ScopeAccount, "jörg@"+aLabel); err != nil || f.Count != 0 {
		t.Errorf("GetFailures(account, jörg@%s) = %+v, %v, want zero", aLabel, f, err)
	}
}

func testPing(t *testing.T, s store.Store) {
	checkErr(t, "Ping()", s.Ping(t.Context()), nil)
}
