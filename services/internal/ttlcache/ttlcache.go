// Package ttlcache is a small map of answers that expire: the services keep
// auth's answers for a short time with it, so that a burst of mail about
// the same users or domains asks auth once.
package ttlcache

import (
	"sync"
	"time"
)

// Cache maps keys to values for a fixed time each, holding at most a
// fixed number of them. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	ttl  time.Duration
	size int

	mu      sync.Mutex // protects entries
	entries map[K]entry[V]
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New returns a cache that keeps a value for ttl and at most size values.
func New[K comparable, V any](ttl time.Duration, size int) *Cache[K, V] {
	return &Cache[K, V]{ttl: ttl, size: max(size, 1), entries: map[K]entry[V]{}}
}

// Get returns the value of key if one was put less than the TTL before now.
func (c *Cache[K, V]) Get(key K, now time.Time) (V, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put keeps v for key from now for the TTL. A full cache first drops its
// expired values and, if that is not enough, all of them: entries live
// seconds or minutes, so it refills as fast as it would have turned over.
func (c *Cache[K, V]) Put(key K, v V, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.size {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.size {
			clear(c.entries)
		}
	}
	c.entries[key] = entry[V]{v: v, expires: now.Add(c.ttl)}
}

// Len returns how many values the cache holds, expired ones included.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
