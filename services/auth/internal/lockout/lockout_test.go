package lockout_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/postcove/postcove/services/auth/internal/lockout"
	"github.com/postcove/postcove/services/auth/internal/store/sqlite"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func newGuard(t *testing.T, p lockout.Policy) (*lockout.Guard, *clock) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	return lockout.New(st, p, c.Now), c
}

func locked(t *testing.T, g *lockout.Guard, ip, account string) time.Duration {
	t.Helper()
	d, err := g.Locked(context.Background(), ip, account)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fail(t *testing.T, g *lockout.Guard, ip, account string, n int) {
	t.Helper()
	for range n {
		if err := g.Fail(context.Background(), ip, account); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIPLockoutGrowsExponentially(t *testing.T) {
	g, c := newGuard(t, lockout.DefaultPolicy())
	fail(t, g, "192.0.2.1", "alice@example.org", 4)
	if d := locked(t, g, "192.0.2.1", "alice@example.org"); d != 0 {
		t.Fatalf("Locked after 4 failures = %v, want 0", d)
	}
	// 5th failure: locked 1m; each failure after the lock ends doubles it.
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute} {
		fail(t, g, "192.0.2.1", "alice@example.org", 1)
		if d := locked(t, g, "192.0.2.1", "alice@example.org"); d != want {
			t.Fatalf("Locked after %d failures = %v, want %v", 5+i, d, want)
		}
		// Another IP, same account: still allowed (the account is under its threshold).
		if d := locked(t, g, "198.51.100.7", "alice@example.org"); d != 0 {
			t.Fatalf("Locked(other IP) = %v, want 0", d)
		}
		c.Advance(want)
		if d := locked(t, g, "192.0.2.1", "alice@example.org"); d != 0 {
			t.Fatalf("Locked after waiting %v = %v, want 0", want, d)
		}
	}
}

func TestIPLockoutCapped(t *testing.T) {
	g, _ := newGuard(t, lockout.DefaultPolicy())
	fail(t, g, "192.0.2.1", "", 40)
	if d := locked(t, g, "192.0.2.1", ""); d != time.Hour {
		t.Errorf("Locked after 40 failures = %v, want the 1h cap", d)
	}
}

func TestAccountLockoutAcrossIPs(t *testing.T) {
	g, _ := newGuard(t, lockout.DefaultPolicy())
	// A distributed attack: 10 IPs, one failure each.
	for i := range 10 {
		fail(t, g, "203.0.113."+string(rune('0'+i)), "alice@example.org", 1)
	}
	if d := locked(t, g, "192.0.2.200", "alice@example.org"); d != time.Minute {
		t.Errorf("Locked(account after 10 failures) = %v, want 1m", d)
	}
	if d := locked(t, g, "192.0.2.200", "bob@example.org"); d != 0 {
		t.Errorf("Locked(another account) = %v, want 0", d)
	}
	if err := g.Succeed(context.Background(), "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if d := locked(t, g, "192.0.2.200", "alice@example.org"); d != 0 {
		t.Errorf("Locked after Succeed = %v, want 0", d)
	}
}

func TestForgetAfterAndClear(t *testing.T) {
	g, c := newGuard(t, lockout.DefaultPolicy())
	fail(t, g, "192.0.2.1", "", 4)
	c.Advance(25 * time.Hour)
	fail(t, g, "192.0.2.1", "", 1) // counted from 1 again
	if d := locked(t, g, "192.0.2.1", ""); d != 0 {
		t.Errorf("Locked after forget_after = %v, want 0", d)
	}
	fail(t, g, "192.0.2.1", "", 4)
	if d := locked(t, g, "192.0.2.1", ""); d == 0 {
		t.Fatal("Locked = 0 after 5 recent failures, want locked")
	}
	if err := g.Clear(context.Background(), "192.0.2.1", ""); err != nil {
		t.Fatal(err)
	}
	if d := locked(t, g, "192.0.2.1", ""); d != 0 {
		t.Errorf("Locked after Clear = %v, want 0", d)
	}
}

func TestDisabledScopes(t *testing.T) {
	g, _ := newGuard(t, lockout.Policy{ForgetAfter: time.Hour})
	fail(t, g, "192.0.2.1", "alice@example.org", 100)
	if d := locked(t, g, "192.0.2.1", "alice@example.org"); d != 0 {
		t.Errorf("Locked with thresholds 0 = %v, want 0", d)
	}
}

func TestPrune(t *testing.T) {
	g, c := newGuard(t, lockout.DefaultPolicy())
	fail(t, g, "192.0.2.1", "", 5)
	c.Advance(23 * time.Hour)
	fail(t, g, "192.0.2.2", "", 1)
	c.Advance(2 * time.Hour)
	if n, err := g.Prune(context.Background()); err != nil || n != 1 {
		t.Errorf("Prune() = %d, %v; want 1 (only the counter idle for over a day)", n, err)
	}
}
