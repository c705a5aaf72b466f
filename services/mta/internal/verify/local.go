package verify

import (
	"context"
	"errors"
	"fmt"

	"time"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/ttlcache"
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
	auth    Domains
	answers *ttlcache.Cache[string, bool] // domain: ours?
}

func newLocalDomains(auth Domains) *localDomains {
	return &localDomains{auth: auth, answers: ttlcache.New[string, bool](localTTL, maxLocalCache)}
}

// isLocal reports whether domain (normalized) is one of ours. The error
// means auth could not say: the caller fails temporarily.
func (l *localDomains) isLocal(ctx context.Context, domain string) (bool, error) {
	now := time.Now()
	if local, ok := l.answers.Get(domain, now); ok {
		return local, nil
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
	l.answers.Put(domain, local, now)
	return local, nil
}
