// Package lockout is the brute-force protection of the auth service: the job
// fail2ban does beside postfix and dovecot, built in and shared by every
// protocol and every auth instance because the counters live in the
// database.
//
// Failures are counted per remote IP and per account. Once a counter reaches
// its threshold, further attempts are refused without checking the password
// for a delay that doubles with every failure counted after the threshold,
// up to a cap. The IP threshold is lower than the account threshold, so an
// attacker hammering one account from one address is stopped at the IP
// level while the owner, logging in from elsewhere, still gets in; only a
// distributed attack locks the account itself, and then for a shorter cap.
package lockout

import (
	"context"
	"fmt"
	"time"

	"github.com/postcove/postcove/services/auth/internal/store"
)

// Counters is the part of the store the lockout needs.
type Counters interface {
	RecordFailure(ctx context.Context, scope store.FailureScope, key string, now, forgetBefore time.Time) (store.Failures, error)
	GetFailures(ctx context.Context, scope store.FailureScope, key string) (store.Failures, error)
	ClearFailures(ctx context.Context, scope store.FailureScope, key string) error
	PruneFailures(ctx context.Context, before time.Time) (int64, error)
}

// Rule is the policy for one scope.
type Rule struct {
	Threshold int           // failures before the first lockout; 0 disables the scope
	Base      time.Duration // first lockout
	Max       time.Duration // cap on the doubling
}

// Policy is the lockout configuration.
type Policy struct {
	IP      Rule
	Account Rule
	// ForgetAfter: a counter whose last failure is older starts from zero.
	ForgetAfter time.Duration
}

// DefaultPolicy: 5 failures from one IP lock it for 1 minute, doubling up to
// an hour; 10 failures on one account (from anywhere) lock it for 1 minute,
// doubling up to 15 minutes, a cap kept low because an account lockout also
// locks out its owner. Counters are forgotten a day after the last failure.
func DefaultPolicy() Policy {
	return Policy{
		IP:          Rule{Threshold: 5, Base: time.Minute, Max: time.Hour},
		Account:     Rule{Threshold: 10, Base: time.Minute, Max: 15 * time.Minute},
		ForgetAfter: 24 * time.Hour,
	}
}

// delay is how long a counter at count failures stays locked after its last
// failure: nothing below the threshold, then Base, 2*Base, 4*Base... capped.
func (r Rule) delay(count int) time.Duration {
	if r.Threshold <= 0 || count < r.Threshold {
		return 0
	}
	d := r.Base
	for i := r.Threshold; i < count && d < r.Max; i++ {
		d *= 2
	}
	return min(d, r.Max)
}

// Guard applies a Policy to the counters in a store.
type Guard struct {
	counters Counters
	policy   Policy
	now      func() time.Time
}

// New returns a Guard. now may be nil for time.Now.
func New(c Counters, p Policy, now func() time.Time) *Guard {
	if now == nil {
		now = time.Now
	}
	return &Guard{counters: c, policy: p, now: now}
}

// Locked says whether a login for account from ip must be refused now, and
// for how much longer. ip may be empty when unknown.
func (g *Guard) Locked(ctx context.Context, ip, account string) (time.Duration, error) {
	var wait time.Duration
	for _, k := range g.keys(ip, account) {
		f, err := g.counters.GetFailures(ctx, k.scope, k.key)
		if err != nil {
			return 0, fmt.Errorf("lockout check %s %s: %w", k.scope, k.key, err)
		}
		until := f.Last.Add(k.rule.delay(f.Count))
		if left := until.Sub(g.now()); left > wait {
			wait = left
		}
	}
	return wait, nil
}

// Fail records a failed login.
func (g *Guard) Fail(ctx context.Context, ip, account string) error {
	now := g.now()
	for _, k := range g.keys(ip, account) {
		if _, err := g.counters.RecordFailure(ctx, k.scope, k.key, now, now.Add(-g.policy.ForgetAfter)); err != nil {
			return fmt.Errorf("lockout record %s %s: %w", k.scope, k.key, err)
		}
	}
	return nil
}

// Succeed forgets the account's failures after a successful login. The IP
// counter is kept: one valid account must not let an address reset its
// guessing budget for every other account.
func (g *Guard) Succeed(ctx context.Context, account string) error {
	if g.policy.Account.Threshold <= 0 {
		return nil
	}
	if err := g.counters.ClearFailures(ctx, store.ScopeAccount, account); err != nil {
		return fmt.Errorf("lockout clear account %s: %w", account, err)
	}
	return nil
}

// Clear forgets the counters for an account and/or an IP (operator action).
func (g *Guard) Clear(ctx context.Context, ip, account string) error {
	if account != "" {
		if err := g.counters.ClearFailures(ctx, store.ScopeAccount, account); err != nil {
			return fmt.Errorf("lockout clear account %s: %w", account, err)
		}
	}
	if ip != "" {
		if err := g.counters.ClearFailures(ctx, store.ScopeIP, ip); err != nil {
			return fmt.Errorf("lockout clear ip %s: %w", ip, err)
		}
	}
	return nil
}

// Prune deletes counters that ForgetAfter has made meaningless; the auth
// service calls it periodically.
func (g *Guard) Prune(ctx context.Context) (int64, error) {
	n, err := g.counters.PruneFailures(ctx, g.now().Add(-g.policy.ForgetAfter))
	if err != nil {
		return 0, fmt.Errorf("lockout prune: %w", err)
	}
	return n, nil
}

type counterKey struct {
	scope store.FailureScope
	key   string
	rule  Rule
}

func (g *Guard) keys(ip, account string) []counterKey {
	ks := make([]counterKey, 0, 2)
	if ip != "" && g.policy.IP.Threshold > 0 {
		ks = append(ks, counterKey{store.ScopeIP, ip, g.policy.IP})
	}
	if account != "" && g.policy.Account.Threshold > 0 {
		ks = append(ks, counterKey{store.ScopeAccount, account, g.policy.Account})
	}
	return ks
}
