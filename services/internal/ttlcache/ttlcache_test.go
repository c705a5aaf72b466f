package ttlcache

import (
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	c := New[string, int](time.Second, 3)
	now := time.Unix(1_800_000_000, 0)
	if _, ok := c.Get("a", now); ok {
		t.Fatal("empty cache has a")
	}
	c.Put("a", 1, now)
	if v, ok := c.Get("a", now.Add(999*time.Millisecond)); !ok || v != 1 {
		t.Errorf("within the TTL: Get = %d, %v; want 1, true", v, ok)
	}
	if _, ok := c.Get("a", now.Add(time.Second)); ok {
		t.Error("at the TTL: a still there")
	}

	// Full: expired values go first, then all.
	c.Put("b", 2, now.Add(2*time.Second))
	c.Put("c", 3, now.Add(2*time.Second))
	c.Put("d", 4, now.Add(2*time.Second)) // a expired: dropped for d
	if v, ok := c.Get("b", now.Add(2*time.Second)); !ok || v != 2 || c.Len() != 3 {
		t.Errorf("after dropping the expired: b = %d, %v, %d held; want 2, true, 3", v, ok, c.Len())
	}
	c.Put("b", 20, now.Add(2*time.Second)) // a key already held: no eviction
	if c.Len() != 3 {
		t.Errorf("replacing b: %d held, want 3", c.Len())
	}
	c.Put("e", 5, now.Add(2*time.Second))
	if v, ok := c.Get("e", now.Add(2*time.Second)); !ok || v != 5 || c.Len() != 1 {
		t.Errorf("full of live values: e = %d, %v, %d held; want 5, true, 1", v, ok, c.Len())
	}
}
