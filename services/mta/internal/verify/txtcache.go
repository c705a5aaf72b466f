package verify

import (
	"errors"
	"slices"
	"time"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/ttlcache"
)

// TXT answers are remembered for txtCacheTTL: SPF, DMARC and DKIM ask for
// the same few names (a sender's domain, its _dmarc name) message after
// message, and a lookup per message costs a round trip while the client
// waits for its 250. The Resolver does not tell the record's TTL, so the
// time is short and fixed, well below the usual TTLs: a changed record
// or policy is seen within it.
const (
	txtCacheTTL = 30 * time.Second
	// txtCacheMax bounds the memory: when full, expired entries go, and
	// if that is not enough, all of them.
	txtCacheMax = 4096
)

// txtCache holds the TXT answers that are definite: records found, and
// "no such record" (RFC 2308 negative caching). A temporary failure is
// never kept: the next message asks again.
type txtCache struct {
	now     func() time.Time
	answers *ttlcache.Cache[string, txtEntry]
}

type txtEntry struct {
	txts []string
	err  error // nil, or one wrapping dnsclient.ErrNotFound
}

func newTXTCache(now func() time.Time) *txtCache {
	return &txtCache{now: now, answers: ttlcache.New[string, txtEntry](txtCacheTTL, txtCacheMax)}
}

// get returns the answer kept for name, if any and still fresh.
func (c *txtCache) get(name string) (txtEntry, bool) {
	e, ok := c.answers.Get(name, c.now())
	if !ok {
		return txtEntry{}, false
	}
	// The caller may keep or change the slice; the cache's stays intact.
	e.txts = slices.Clone(e.txts)
	return e, true
}

// put keeps the answer for name when it is definite.
func (c *txtCache) put(name string, txts []string, err error) {
	if err != nil && !errors.Is(err, dnsclient.ErrNotFound) {
		return
	}
	c.answers.Put(name, txtEntry{txts: slices.Clone(txts), err: err}, c.now())
}
