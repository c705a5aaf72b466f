package authclient

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// countingResolver answers every address with itself as the mailbox, or
// err, and counts the calls.
type countingResolver struct {
	calls map[string]int
	err   error
}

func (r *countingResolver) ResolveRecipient(_ context.Context, address string) (Recipient, error) {
	r.calls[address]++
	if r.err != nil {
		return Recipient{}, r.err
	}
	return Recipient{Kind: Deliver, Address: address, Mailboxes: []Mailbox{{Address: address}}}, nil
}

func TestRecipientCache(t *testing.T) {
	next := &countingResolver{calls: map[string]int{}}
	c := NewRecipientCache(next, time.Second, 3)
	now := time.Unix(1_800_000_000, 0)
	c.now = func() time.Time { return now }
	resolve := func(address string) {
		t.Helper()
		r, err := c.ResolveRecipient(t.Context(), address)
		if err != nil || r.Address != address {
			t.Fatalf("ResolveRecipient(%q) = %+v, %v", address, r, err)
		}
	}

	resolve("alice@example.org")
	resolve("alice@example.org")
	now = now.Add(999 * time.Millisecond)
	resolve("alice@example.org")
	if n := next.calls["alice@example.org"]; n != 1 {
		t.Errorf("within the TTL: %d lookups, want 1", n)
	}
	now = now.Add(time.Millisecond)
	resolve("alice@example.org")
	if n := next.calls["alice@example.org"]; n != 2 {
		t.Errorf("at the TTL: %d lookups, want 2", n)
	}

	// Errors are passed on and never remembered.
	next.err = fmt.Errorf("%w: down", ErrUnavailable)
	for range 2 {
		if _, err := c.ResolveRecipient(t.Context(), "bob@example.org"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("auth down: err = %v, want ErrUnavailable", err)
		}
	}
	next.err = nil
	resolve("bob@example.org")
	if n := next.calls["bob@example.org"]; n != 3 {
		t.Errorf("after two errors: %d lookups, want 3", n)
	}

	// Never more than size answers.
	for i := range 10 {
		resolve(fmt.Sprintf("user%d@example.org", i))
		if n := c.answers.Len(); n > 3 {
			t.Fatalf("%d answers cached, size is 3", n)
		}
	}
}
