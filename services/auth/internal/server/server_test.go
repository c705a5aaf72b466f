package server_test

import (
	"context"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/lockout"
	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestImportedHashes: hashes made by dovecot's own doveadm verify over
// gRPC, and a successful login rehashes them to argon2id.
func TestImportedHashes(t *testing.T) {
	doveadm := testlib.RequireTool(t, "doveadm")
	schemes := []string{
		"ARGON2ID", "ARGON2I", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT",
		"SSHA512", "SSHA", "PLAIN", "SSHA512.HEX", "SSHA.B64", "PLAIN.B64", "SHA512-CRYPT.B64", "SHA256.HEX",
	}
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), options{})
		e.mustDomain(t, "example.org")
		ctx := context.Background()
		for _, s := range schemes {
			addr := "u-" + strings.ToLower(strings.ReplaceAll(s, ".", "-")) + "@example.org"
			pw := "pw for " + s
			out, err := exec.Command(doveadm, "pw", "-s", s, "-p", pw).Output()
			if err != nil {
				t.Fatalf("doveadm pw -s %s: %v", s, err)
			}
			hash := strings.TrimSpace(string(out))
			if s == "SHA512-CRYPT" { // postfixadmin stores crypt strings without the prefix
				hash = strings.TrimPrefix(hash, "{SHA512-CRYPT}")
			}
			if _, err := e.st.CreateUser(ctx, store.User{Address: addr, Domain: "example.org", PasswordHash: hash, Enabled: true}); err != nil {
				t.Fatal(err)
			}
			wantCode(t, "wrong password for "+s, e.login(addr, pw+"x", ""), codes.Unauthenticated)
			if err := e.login(addr, pw, ""); err != nil {
				t.Errorf("Authenticate(%s hash %q) = %v, want success", s, hash, err)
				continue
			}
			u, err := e.st.GetUser(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(u.PasswordHash, "{ARGON2ID}$argon2id$") {
				t.Errorf("after login with %s the stored hash is %q, want it rehashed to argon2id", s, u.PasswordHash)
			}
			if err := e.login(addr, pw, ""); err != nil {
				t.Errorf("Authenticate(%s) after rehash = %v", s, err)
			}
		}
	})
}

func TestAuthenticateRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), options{})
		e.mustDomain(t, "example.org")
		e.mustUser(t, "alice@example.org", "right")
		e.mustUser(t, "dave@example.org", "right")
		ctx := context.Background()
		if _, err := e.admin.SetEnabled(ctx, &authv1.SetEnabledRequest{Address: "dave@example.org"}); err != nil {
			t.Fatal(err)
		}
		if err := e.login("ALICE@Example.org", "right", "192.0.2.1"); err != nil {
			t.Errorf("login with other case = %v, want success", err)
		}
		// Unknown user, wrong password, disabled account, malformed name:
		// one answer, so a client learns nothing about which exist.
		var msgs []string
		for _, c := range [][2]string{{"alice@example.org", "wrong"}, {"nobody@example.org", "right"}, {"dave@example.org", "right"}, {"../etc@example.org", "x"}, {"alice@example.org", ""}} {
			err := e.login(c[0], c[1], "192.0.2.1")
			wantCode(t, "login "+c[0], err, codes.Unauthenticated)
			msgs = append(msgs, status.Convert(err).Message())
		}
		if len(slices.Compact(slices.Clone(msgs))) != 1 {
			t.Errorf("refusal messages differ: %q", msgs)
		}
		wantCode(t, "empty username", e.login("", "x", ""), codes.InvalidArgument)
		wantCode(t, "bad remote_ip", e.login("alice@example.org", "right", "not-an-ip"), codes.InvalidArgument)
	})
}

func TestLockout(t *testing.T) {
	policy := lockout.Policy{
		IP:          lockout.Rule{Threshold: 3, Base: time.Minute, Max: time.Hour},
		Account:     lockout.Rule{Threshold: 6, Base: time.Minute, Max: 15 * time.Minute},
		ForgetAfter: time.Hour,
	}
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), options{policy: policy})
		e.mustDomain(t, "example.org")
		e.mustUser(t, "alice@example.org", "right")
		e.mustUser(t, "bob@example.org", "right")

		// Per IP: 3 failures lock 192.0.2.1, even for the right password
		// and for other accounts.
		for range 3 {
			wantCode(t, "bad password", e.login("alice@example.org", "wrong", "192.0.2.1"), codes.Unauthenticated)
		}
		err := e.login("alice@example.org", "right", "192.0.2.1")
		wantCode(t, "locked IP, right password", err, codes.ResourceExhausted)
		var retry *errdetails.RetryInfo
		for _, d := range status.Convert(err).Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				retry = r
			}
		}
		if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > time.Minute {
			t.Errorf("lockout RetryInfo = %v, want a delay of at most 1m", retry)
		}
		wantCode(t, "locked IP, other account", e.login("bob@example.org", "right", "192.0.2.1"), codes.ResourceExhausted)
		// IPv6 is counted per /64; the IPv4-mapped form is the same IP.
		wantCode(t, "locked IP (mapped)", e.login("bob@example.org", "right", "::ffff:192.0.2.1"), codes.ResourceExhausted)

		// The owner, from another IP, still gets in.
		if err := e.login("alice@example.org", "right", "198.51.100.1"); err != nil {
			t.Errorf("login from another IP while one is locked = %v, want success", err)
		}

		// Per account: failures from many IPs lock the account everywhere.
		for i := range 6 {
			ip := "2001:db8:" + string(rune('a'+i)) + "::1"
			wantCode(t, "bad password from "+ip, e.login("bob@example.org", "wrong", ip), codes.Unauthenticated)
		}
		wantCode(t, "locked account, fresh IP", e.login("bob@example.org", "right", "203.0.113.9"), codes.ResourceExhausted)
		wantCode(t, "other account unaffected", e.login("alice@example.org", "right", "203.0.113.9"), codes.OK)

		// An IPv6 /64 is one counter.
		for i := range 3 {
			ip := "2001:db8:1:2::" + string(rune('1'+i))
			wantCode(t, "bad password from "+ip, e.login("alice@example.org", "wrong", ip), codes.Unauthenticated)
		}
		wantCode(t, "same /64", e.login("alice@example.org", "right", "2001:db8:1:2::ffff"), codes.ResourceExhausted)

		// The operator ends it.
		if _, err := e.admin.ClearLockout(context.Background(), &authv1.ClearLockoutRequest{Username: "bob@example.org"}); err != nil {
			t.Fatal(err)
		}
		wantCode(t, "after clear", e.login("bob@example.org", "right", "203.0.113.9"), codes.OK)
	})
}

// TestTimingUnknownVersusBadPassword: refusing an unknown user costs what
// refusing a wrong password costs, so timing does not reveal which
// addresses exist.
func TestTimingUnknownVersusBadPassword(t *testing.T) {
	e := start(t, openSQLite(t), options{})
	e.mustDomain(t, "example.org")
	e.mustUser(t, "alice@example.org", "right")
	const n = 15
	var unknown, bad []time.Duration
	for range n { // interleaved, so drift in machine load hits both alike
		t0 := time.Now()
		wantCode(t, "unknown", e.login("nobody@example.org", "x", ""), codes.Unauthenticated)
		unknown = append(unknown, time.Since(t0))
		t0 = time.Now()
		wantCode(t, "bad", e.login("alice@example.org", "x", ""), codes.Unauthenticated)
		bad = append(bad, time.Since(t0))
	}
	mu, mb := median(unknown), median(bad)
	ratio := float64(max(mu, mb)) / float64(min(mu, mb))
	t.Logf("median refusal: unknown user %v, bad password %v, ratio %.2f", mu, mb, ratio)
	if ratio > 1.5 {
		t.Errorf("unknown-user vs bad-password timing ratio %.2f (medians %v, %v), want <= 1.5", ratio, mu, mb)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func TestResolveRecipient(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), options{})
		e.mustDomain(t, "example.org")
		e.mustDomain(t, "bücher.example")
		e.mustUser(t, "alice@example.org", "pw")
		e.mustUser(t, "bob@example.org", "pw")
		e.mustUser(t, "jörg@xn--bcher-kva.example", "pw")
		e.mustAlias(t, "team@example.org", "alice@example.org", "bob@example.org", "Friend@Remote.Example")
		e.mustAlias(t, "loop1@example.org", "loop2@example.org")
		e.mustAlias(t, "loop2@example.org", "loop1@example.org")
		e.mustAlias(t, "@xn--bcher-kva.example", "jörg@bücher.example")
		R := authv1.ResolveRecipientResponse_RESULT_DELIVER
		tests := []struct {
			in        string
			result    authv1.ResolveRecipientResponse_Result
			mailboxes []string
			forwards  []string
		}{
			{"alice@example.org", R, []string{"alice@example.org"}, nil},
			{"Alice+Lists@EXAMPLE.org", R, []string{"alice@example.org"}, nil},
			{"team@example.org", R, []string{"alice@example.org", "bob@example.org"}, []string{"friend@remote.example"}},
			{"nobody@example.org", authv1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, nil, nil},
			{"alice@example.com", authv1.ResolveRecipientResponse_RESULT_NOT_LOCAL_DOMAIN, nil, nil},
			{"loop1@example.org", authv1.ResolveRecipientResponse_RESULT_ALIAS_LOOP, nil, nil},
			{"JÖRG@BÜCHER.example", R, []string{"jörg@xn--bcher-kva.example"}, nil},
			{"anyone@bücher.example", R, []string{"jörg@xn--bcher-kva.example"}, nil},
		}
		for _, tt := range tests {
			res, err := e.auth.ResolveRecipient(context.Background(), &authv1.ResolveRecipientRequest{Address: tt.in})
			if err != nil {
				t.Fatalf("ResolveRecipient(%q): %v", tt.in, err)
			}
			var got []string
			for _, m := range res.GetMailboxes() {
				got = append(got, m.GetAddress())
				if m.GetLocalPart()+"@"+m.GetDomain() != m.GetAddress() {
					t.Errorf("mailbox %v: local_part/domain do not match address", m)
				}
			}
			if res.GetResult() != tt.result || !slices.Equal(got, tt.mailboxes) || !slices.Equal(res.GetForwards(), tt.forwards) {
				t.Errorf("ResolveRecipient(%q) = %v %v %v, want %v %v %v", tt.in, res.GetResult(), got, res.GetForwards(), tt.result, tt.mailboxes, tt.forwards)
			}
		}
		// Admin changes are visible at once despite the cache.
		e.mustUser(t, "nobody@example.org", "pw")
		res, err := e.auth.ResolveRecipient(context.Background(), &authv1.ResolveRecipientRequest{Address: "nobody@example.org"})
		if err != nil || res.GetResult() != R {
			t.Errorf("ResolveRecipient after CreateUser = %v, %v; want DELIVER", res.GetResult(), err)
		}
		for _, bad := range []string{"", "a/b@example.org", "../x@example.org", "a@b@example.org", "x\x00y@example.org", "a%b@example.org", `"a b"@example.org`} {
			_, err := e.auth.ResolveRecipient(context.Background(), &authv1.ResolveRecipientRequest{Address: bad})
			wantCode(t, "ResolveRecipient("+bad+")", err, codes.InvalidArgument)
		}
	})
}

func TestCanSendAs(t *testing.T) {
	e := start(t, openSQLite(t), options{})
	e.mustDomain(t, "example.org")
	e.mustUser(t, "alice@example.org", "pw")
	e.mustUser(t, "bob@example.org", "pw")
	e.mustAlias(t, "sales@example.org", "alice@example.org")
	e.mustAlias(t, "bob@example.org", "bob@example.org", "alice@example.org")
	for _, tt := range []struct {
		user, addr string
		want       bool
	}{
		{"alice@example.org", "alice@example.org", true},
		{"alice@example.org", "alice+x@example.org", true},
		{"alice@example.org", "sales@example.org", true},
		{"alice@example.org", "bob@example.org", false}, // gets copies of bob's mail, is not bob
		{"bob@example.org", "sales@example.org", false},
		{"alice@example.org", "alice@other.example", false},
	} {
		res, err := e.auth.CanSendAs(context.Background(), &authv1.CanSendAsRequest{User: tt.user, Address: tt.addr})
		if err != nil || res.GetAllowed() != tt.want {
			t.Errorf("CanSendAs(%q, %q) = %v, %v; want %v", tt.user, tt.addr, res.GetAllowed(), err, tt.want)
		}
	}
	_, err := e.auth.CanSendAs(context.Background(), &authv1.CanSendAsRequest{User: "alice@example.org"})
	wantCode(t, "CanSendAs without address", err, codes.InvalidArgument)
}

func TestAdminErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), options{})
		ctx := context.Background()
		e.mustDomain(t, "example.org")
		_, err := e.admin.CreateDomain(ctx, &authv1.CreateDomainRequest{Name: "EXAMPLE.org."})
		wantCode(t, "duplicate domain", err, codes.AlreadyExists)
		_, err = e.admin.CreateUser(ctx, &authv1.CreateUserRequest{Address: "a@missing.example", Password: "x"})
		wantCode(t, "user in missing domain", err, codes.FailedPrecondition)
		e.mustUser(t, "alice@example.org", "pw")
		_, err = e.admin.CreateUser(ctx, &authv1.CreateUserRequest{Address: "Alice@example.org", Password: "x"})
		wantCode(t, "duplicate user", err, codes.AlreadyExists)
		_, err = e.admin.DeleteDomain(ctx, &authv1.DeleteDomainRequest{Name: "example.org"})
		wantCode(t, "delete non-empty domain", err, codes.FailedPrecondition)
		_, err = e.admin.SetQuota(ctx, &authv1.SetQuotaRequest{Address: "zed@example.org", QuotaBytes: 1})
		wantCode(t, "quota of missing user", err, codes.NotFound)
		_, err = e.admin.SetQuota(ctx, &authv1.SetQuotaRequest{Address: "alice@example.org", QuotaBytes: -1})
		wantCode(t, "negative quota", err, codes.InvalidArgument)
		_, err = e.admin.DeleteAlias(ctx, &authv1.DeleteAliasRequest{Source: "none@example.org"})
		wantCode(t, "delete missing alias", err, codes.NotFound)
		_, err = e.admin.AddAlias(ctx, &authv1.AddAliasRequest{Source: "x@example.org"})
		wantCode(t, "alias without destinations", err, codes.InvalidArgument)
		// Path-like and relay-hack local parts are refused for every caller.
		for _, bad := range []string{"../etc@example.org", "a/b@example.org", `a\b@example.org`, ".hidden@example.org", "a..b@example.org", "a%b@example.org", "b!a@example.org", "x@y@example.org", "tab\t@example.org"} {
			_, err := e.admin.CreateUser(ctx, &authv1.CreateUserRequest{Address: bad, Password: "x"})
			wantCode(t, "CreateUser("+bad+")", err, codes.InvalidArgument)
		}
		res, err := e.admin.ListUsers(ctx, &authv1.ListUsersRequest{Domain: "example.org"})
		if err != nil || len(res.GetUsers()) != 1 {
			t.Errorf("ListUsers = %v, %v; want only alice", res.GetUsers(), err)
		}
	})
}
