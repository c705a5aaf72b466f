package authclient

import (
	"context"
	"time"

	"github.com/postcove/postcove/services/internal/ttlcache"
)

// RecipientResolver is what RecipientCache wraps; *Client is one.
type RecipientResolver interface {
	ResolveRecipient(ctx context.Context, address string) (Recipient, error)
}

// RecipientCache remembers ResolveRecipient's answers for a short time, so
// that the recipients of a burst of deliveries (the MTA's queue after an
// outage, a list's message to many local users) cost one gRPC round trip
// each, not one per delivery. auth caches its own answers for a few seconds
// already (its resolve.cache_ttl); this cache adds its TTL to how long a
// change to a user or an alias can take to be seen, so keep it short.
// Errors are never remembered: the next delivery asks again.
//
// The answers it returns share their slices with the cache: callers must
// not modify them.
type RecipientCache struct {
	next    RecipientResolver
	now     func() time.Time
	answers *ttlcache.Cache[string, Recipient]
}

// NewRecipientCache returns a cache in front of next that keeps an answer
// for ttl and at most size answers (size <= 0: 10,000).
func NewRecipientCache(next RecipientResolver, ttl time.Duration, size int) *RecipientCache {
	if size <= 0 {
		size = 10_000
	}
	return &RecipientCache{next: next, now: time.Now, answers: ttlcache.New[string, Recipient](ttl, size)}
}

// ResolveRecipient answers from the cache when it can, and asks next
// otherwise. The address is the key as given: the MTA sends the canonical
// form, so variants in case are rare and only cost a lookup each.
func (c *RecipientCache) ResolveRecipient(ctx context.Context, address string) (Recipient, error) {
	now := c.now()
	if r, ok := c.answers.Get(address, now); ok {
		return r, nil
	}
	r, err := c.next.ResolveRecipient(ctx, address)
	if err != nil {
		return r, err
	}
	c.answers.Put(address, r, now)
	return r, nil
}
