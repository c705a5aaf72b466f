package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/postcove/postcove/services/internal/authclient"
)

// Domains is what the verifier asks the auth service (authclient.Client):
// auth has no "is this domain ours" call, but ResolveRecipient answers
// NotLocalDomain for an address in any domain that is not.
type Domains interface {
	ResolveRecipient(ctx context.Context, address string) (authclient.Recipient, error)
}

var _ Domains = (*authclient.Client)(nil)

const (
	// localTTL is how long an answer about a domain is kept: a domain
	// just added is protected within a minute, and a busy port 25 asks
	// auth once a minute per sender domain, not once a message.
	localTTL = time.Minute
	// maxLocalCache bounds the cache: sender domains are chosen by
	// strangers. When full it is emptied, which costs a few lookups.
	maxLocalCache = 10000
)

// localDomains tells our domains from others, through Domains, cached.
type localDomains struct {
	auth Domains

	mu      sync.Mutex // protects answers
	answers map[string]localAnswer
}

type localAnswer struct {
	local   bool
	expires time.Time
}

// isLocal reports whether domain (normalized) is one of ours. The error
// means auth could not say: the caller fails temporarily.
func (l *localDomains) isLocal(ctx context.Context, domain string) (bool, error) {
	now := time.Now()
	l.mu.Lock()
	a, ok := l.answers[domain]
	l.mu.Unlock()
	if ok && now.Before(a.expires) {
		return a.local, nil
	}
	r, err := l.auth.ResolveRecipient(ctx, "postmaster@"+domain)
	var local bool
	switch {
	case errors.Is(err, authclient.ErrInvalid):
		local = false // no address of ours looks like that
	case err != nil:
		return false, fmt.Errorf("is %s a local domain: %w", domain, err)
	default:
		// Deliver, UnknownUser and AliasLoop all say the domain is ours.
		local = r.Kind != authclient.NotLocalDomain
	}
	l.mu.Lock()
	if len(l.answers) >= maxLocalCache {
		clear(l.answers)
	}
	l.answers[domain] = localAnswer{local: local, expires: now.Add(localTTL)}
	l.mu.Unlock()
	return local, nil
}
