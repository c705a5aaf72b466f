package pop3d

import (
	"strconv"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestRealAuth runs logins against the real auth service through
// authclient: the canonical address auth returns picks the maildrop, a
// wrong password is [AUTH], auth down is [SYS/TEMP] on a connection that
// keeps working once auth is back, and auth's lockout is [LOGIN-DELAY].
func TestRealAuth(t *testing.T) {
	a := testlib.StartAuth(t, "POSTCOVE_AUTH_LOCKOUT_ACCOUNT_THRESHOLD=2")
	a.Domain(t, "example.org")
	a.User(t, testUser, testPass, 0)
	a.User(t, "bob@example.org", "bobs password", 0)

	st := storeKinds()[1].open(t) // maildir
	deliver(t, st, testUser, msgCRLF)
	ts := startServer(t, st, func(o *Options) { o.Auth = authclient.New(a.Conn()) })

	// The user types a different case; auth's canonical address is used.
	c := dial(t, ts.addr)
	c.login(strings.ToUpper(testUser), testPass)
	if got, want := c.cmd("STAT"), "+OK 1 "+strconv.Itoa(len(wireCRLF)); got != want {
		t.Errorf("STAT = %q, want %q", got, want)
	}
	c.ok("QUIT")

	c = dial(t, ts.addr)
	c.ok("USER " + testUser)
	if got, want := c.cmd("PASS wrong"), "-ERR [AUTH] authentication failed"; got != want {
		t.Errorf("PASS with a wrong password = %q, want %q", got, want)
	}

	a.Stop()
	c.ok("USER " + testUser)
	if got, want := c.cmd("PASS "+testPass), "-ERR [SYS/TEMP] authentication service unavailable, try again later"; got != want {
		t.Errorf("PASS with auth down = %q, want %q", got, want)
	}
	a.Start()
	c.login(testUser, testPass)
	c.ok("QUIT")

	// Account lockout after two failures (the threshold set above).
	c = dial(t, ts.addr)
	for range 2 {
		c.ok("USER bob@example.org")
		if got, want := c.cmd("PASS wrong"), "-ERR [AUTH] authentication failed"; got != want {
			t.Fatalf("PASS wrong = %q, want %q", got, want)
		}
	}
	c = dial(t, ts.addr)
	c.ok("USER bob@example.org")
	if got := c.cmd("PASS bobs password"); !strings.HasPrefix(got, "-ERR [LOGIN-DELAY] too many failed logins, try again in ") {
		t.Errorf("PASS while locked out = %q, want -ERR [LOGIN-DELAY] with a delay", got)
	}
}
