// Package resolve answers "where does mail for this address go" and "may
// this user send as that address" from the domains, users and aliases in
// the store — the job of postfix's virtual_mailbox_domains,
// virtual_mailbox_maps, virtual_alias_maps and smtpd_sender_login_maps.
//
// Lookup order for an address, as postfix does it for virtual aliases:
// the exact address, then the address without its +tag (plus addressing),
// then the domain's catch-all "@domain". An alias takes precedence over a
// user of the same address; an alias that lists its own source delivers to
// the user of that name ("keep a copy and forward").
package resolve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/internal/address"
)

// MaxDepth bounds alias nesting; deeper expansions are reported as a loop,
// like postfix's virtual_alias_recursion_limit.
const MaxDepth = 10

// Directory is the part of the store the resolver reads.
type Directory interface {
	LookupEntries(ctx context.Context, domain string, addresses []string) (store.Entries, error)
}

// Kind is the kind of answer for an address.
type Kind int

const (
	Deliver        Kind = iota + 1 // deliver to Mailboxes and Forwards
	NotLocalDomain                 // not our domain
	UnknownUser                    // our domain, nobody by that name
	AliasLoop                      // the aliases loop or nest too deep
)

// Result is the routing answer for one address.
type Result struct {
	Kind      Kind
	Address   string       // canonical form of the address asked about
	Mailboxes []store.User // local users to deliver to, deduplicated
	Forwards  []string     // external addresses, deduplicated
}

// Resolver resolves addresses, with an optional short-lived cache.
type Resolver struct {
	dir      Directory
	tagSep   string
	ttl      time.Duration
	maxCache int
	now      func() time.Time

	mu    sync.Mutex // protects cache
	cache map[string]cached
}

type cached struct {
	res     Result
	expires time.Time
}

// Options configure a Resolver.
type Options struct {
	// TagSeparator starts the +tag of plus addressing; "" disables it.
	TagSeparator string
	// CacheTTL is how long answers are reused; 0 disables the cache. Other
	// auth instances see an admin change after at most this long.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached answers (default 100000).
	CacheSize int
	// Now is the clock, time.Now when nil.
	Now func() time.Time
}

// New returns a Resolver reading dir.
func New(dir Directory, o Options) *Resolver {
	if o.CacheSize <= 0 {
		o.CacheSize = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Resolver{dir: dir, tagSep: o.TagSeparator, ttl: o.CacheTTL, maxCache: o.CacheSize, now: o.Now, cache: map[string]cached{}}
}

// Invalidate drops every cached answer; call it after any admin change.
func (r *Resolver) Invalidate() {
	r.mu.Lock()
	clear(r.cache)
	r.mu.Unlock()
}

// Resolve answers for a canonical address. An error means the store could
// not answer; the caller must treat it as temporary.
func (r *Resolver) Resolve(ctx context.Context, a address.Address) (Result, error) {
	key := a.String()
	if r.ttl > 0 {
		r.mu.Lock()
		c, ok := r.cache[key]
		r.mu.Unlock()
		if ok && r.now().Before(c.expires) {
			return c.res, nil
		}
	}
	res, err := r.resolve(ctx, a)
	if err != nil {
		return Result{}, err
	}
	if r.ttl > 0 {
		r.mu.Lock()
		if len(r.cache) >= r.maxCache {
			clear(r.cache) // crude but bounded; a full cache is rebuilt within one TTL
		}
		r.cache[key] = cached{res: res, expires: r.now().Add(r.ttl)}
		r.mu.Unlock()
	}
	return res, nil
}

func (r *Resolver) resolve(ctx context.Context, a address.Address) (Result, error) {
	res := Result{Address: a.String()}
	x := expansion{r: r, ctx: ctx}
	local, found, err := x.address(a, nil)
	switch {
	case errors.Is(err, errLoop):
		res.Kind = AliasLoop
	case err != nil:
		return Result{}, fmt.Errorf("resolve %s: %w", a, err)
	case !local:
		res.Kind = NotLocalDomain
	case !found || len(x.mailboxes)+len(x.forwards) == 0:
		res.Kind = UnknownUser
	default:
		res.Kind, res.Mailboxes, res.Forwards = Deliver, x.mailboxes, x.forwards
	}
	return res, nil
}

var errLoop = errors.New("alias loop")

// expansion walks the alias graph for one Resolve call.
type expansion struct {
	r         *Resolver
	ctx       context.Context
	mailboxes []store.User
	forwards  []string
}

// address delivers to a, which may be in any domain. It fetches everything
// a can match in one store round trip: its alias or user, those of its
// untagged form, and the domain's catch-all, tried in that order. path
// holds the alias sources being expanded, outermost first. It reports
// whether a's domain is local and whether anything matched.
func (x *expansion) address(a address.Address, path []string) (local, found bool, err error) {
	keys := []string{a.String()}
	if base, ok := a.StripTag(x.r.tagSep); ok && x.r.tagSep != "" {
		keys = append(keys, base.String())
	}
	catchAll := address.Address{Domain: a.Domain}.String()
	e, err := x.r.dir.LookupEntries(x.ctx, a.Domain, append(keys, catchAll))
	if err != nil || !e.DomainExists {
		return false, false, err
	}
	for _, key := range keys {
		if found, err := x.exact(e, key, path); found || err != nil {
			return true, found, err
		}
	}
	found, err = x.alias(e, catchAll, path)
	return true, found, err
}

// exact delivers to key's alias or, failing that, to key's user.
func (x *expansion) exact(e store.Entries, key string, path []string) (bool, error) {
	if slices.Contains(path, key) {
		// An alias listing itself (directly or through others) means "also
		// keep a copy in the mailbox of that name"; without one it loops.
		if !x.user(e, key) {
			return false, errLoop
		}
		return true, nil
	}
	if found, err := x.alias(e, key, path); found || err != nil {
		return found, err
	}
	return x.user(e, key), nil
}

func (x *expansion) user(e store.Entries, key string) bool {
	u, ok := e.Users[key]
	if ok && !slices.ContainsFunc(x.mailboxes, func(m store.User) bool { return m.Address == u.Address }) {
		x.mailboxes = append(x.mailboxes, u)
	}
	return ok
}

func (x *expansion) alias(e store.Entries, source string, path []string) (bool, error) {
	dests, ok := e.Aliases[source]
	if !ok {
		return false, nil
	}
	if slices.Contains(path, source) || len(path) >= MaxDepth {
		return false, errLoop
	}
	path = append(path, source)
	for _, d := range dests {
		if err := x.destination(d, path); err != nil {
			return false, err
		}
	}
	return true, nil
}

// destination delivers to one alias destination: a local address is
// expanded in turn, anything else is forwarded. A local destination that
// matches nothing is left out (and the whole address is unknown if nothing
// else is left); a malformed stored destination is left out too.
func (x *expansion) destination(d string, path []string) error {
	a, err := address.Parse(d)
	if err != nil {
		return nil
	}
	local, _, err := x.address(a, path)
	if err == nil && !local && !slices.Contains(x.forwards, a.String()) {
		x.forwards = append(x.forwards, a.String())
	}
	return err
}

// CanSendAs reports whether user may use addr as a sender: addr is the
// user's own address (with or without a +tag), or an address that is not
// another user's and delivers to the user through an alias or catch-all.
// Receiving a forwarded copy of another user's mail grants nothing.
func (r *Resolver) CanSendAs(ctx context.Context, user, addr address.Address) (bool, error) {
	keys := []string{addr.String()}
	if b, ok := addr.StripTag(r.tagSep); ok && r.tagSep != "" {
		keys = append(keys, b.String())
	}
	if slices.Contains(keys, user.String()) {
		return true, nil
	}
	e, err := r.dir.LookupEntries(ctx, addr.Domain, keys)
	if err != nil {
		return false, fmt.Errorf("can send as %s: %w", addr, err)
	}
	for _, k := range keys {
		if _, ok := e.Users[k]; ok {
			return false, nil // someone else's mailbox
		}
	}
	res, err := r.Resolve(ctx, addr)
	if err != nil {
		return false, err
	}
	return res.Kind == Deliver && slices.ContainsFunc(res.Mailboxes, func(m store.User) bool { return m.Address == user.String() }), nil
}
