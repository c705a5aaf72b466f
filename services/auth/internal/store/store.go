// Package store is the auth service's persistence contract: domains, users,
// aliases and the login-failure counters that drive the brute-force lockout.
//
// Two implementations share one schema and one test suite (storetest):
// store/sqlite, the embedded default, and store/mysql for MySQL/MariaDB.
// Addresses and domains handed to a Store are already canonical (see the
// address package); a Store compares them byte for byte.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns for definite answers. Any other error means the
// database could not answer (down, timeout, broken connection): callers
// treat it as temporary.
var (
	// ErrNotFound: the domain, user or alias does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the domain, user or alias already exists.
	ErrExists = errors.New("already exists")
	// ErrDomainNotEmpty: a domain still has users or aliases.
	ErrDomainNotEmpty = errors.New("domain still has users or aliases")
	// ErrNoSuchDomain: a user or alias names a domain that does not exist.
	ErrNoSuchDomain = errors.New("domain does not exist")
)

// Domain is a mail domain we are the destination for.
type Domain struct {
	Name      string // canonical A-label, lowercase
	CreatedAt time.Time
}

// User is a mailbox owner who can log in.
type User struct {
	Address      string // canonical "local@domain"
	Domain       string // the domain part of Address
	PasswordHash string // scheme-prefixed, see package password
	QuotaBytes   int64  // 0 means unlimited
	Enabled      bool
	CreatedAt    time.Time
}

// Alias maps a source ("local@domain", or "@domain" for a catch-all) to its
// destinations, sorted.
type Alias struct {
	Source       string
	Domain       string
	Destinations []string
}

// FailureScope names what a login-failure counter counts.
type FailureScope string

const (
	ScopeIP      FailureScope = "ip"
	ScopeAccount FailureScope = "account"
)

// Failures is one login-failure counter.
type Failures struct {
	Count int
	Last  time.Time // time of the most recent counted failure
}

// Entries is what recipient resolution needs to know about one domain and
// a few addresses in it.
type Entries struct {
	DomainExists bool
	// Users among the addresses asked about, by address. PasswordHash is
	// not loaded.
	Users map[string]User
	// Aliases among the addresses asked about, by source; destinations
	// sorted.
	Aliases map[string][]string
}

// Store is everything the auth service needs from its database. All methods
// are safe for concurrent use, also by several auth processes sharing one
// database.
type Store interface {
	CreateDomain(ctx context.Context, name string) (Domain, error)
	// DeleteDomain fails with ErrDomainNotEmpty while users or aliases
	// remain in it.
	DeleteDomain(ctx context.Context, name string) error
	ListDomains(ctx context.Context) ([]Domain, error)
	// DomainExists reports whether name is one of our domains.
	DomainExists(ctx context.Context, name string) (bool, error)

	// CreateUser fails with ErrNoSuchDomain when u.Domain does not exist.
	// CreatedAt is set by the store.
	CreateUser(ctx context.Context, u User) (User, error)
	GetUser(ctx context.Context, address string) (User, error)
	DeleteUser(ctx context.Context, address string) error
	// ListUsers lists users sorted by address; domain "" means all.
	ListUsers(ctx context.Context, domain string) ([]User, error)
	SetPasswordHash(ctx context.Context, address, hash string) error
	SetQuota(ctx context.Context, address string, quotaBytes int64) error
	SetEnabled(ctx context.Context, address string, enabled bool) error

	// AddAliasDestinations adds destinations to source, creating the alias
	// when needed; existing destinations are kept and not duplicated. It
	// fails with ErrNoSuchDomain when domain does not exist.
	AddAliasDestinations(ctx context.Context, source, domain string, destinations []string) (Alias, error)
	// GetAlias returns ErrNotFound when source has no destinations.
	GetAlias(ctx context.Context, source string) (Alias, error)
	DeleteAlias(ctx context.Context, source string) error
	// ListAliases lists aliases sorted by source; domain "" means all.
	ListAliases(ctx context.Context, domain string) ([]Alias, error)
	// LookupEntries answers, in one round trip to the database, whether
	// domain exists and which of addresses (in that domain, or "@domain")
	// are users or aliases. Resolution calls it once per address it
	// expands, so it is the hot path of every RCPT TO.
	LookupEntries(ctx context.Context, domain string, addresses []string) (Entries, error)
	// AliasesTo returns the sources that list destination, sorted.
	AliasesTo(ctx context.Context, destination string) ([]string, error)

	// RecordFailure counts one failed login for key in scope at time now
	// and returns the counter after the change. A counter whose last
	// failure is before forgetBefore starts again at 1. It is atomic: two
	// processes recording at once both count.
	RecordFailure(ctx context.Context, scope FailureScope, key string, now, forgetBefore time.Time) (Failures, error)
	// GetFailures returns the counter, zero when none is recorded.
	GetFailures(ctx context.Context, scope FailureScope, key string) (Failures, error)
	// ClearFailures forgets the counter; clearing a missing one is no error.
	ClearFailures(ctx context.Context, scope FailureScope, key string) error
	// PruneFailures deletes every counter whose last failure is before
	// before, and returns how many it deleted. Without it the table would
	// keep one row for every address that ever failed a login.
	PruneFailures(ctx context.Context, before time.Time) (int64, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close() error
}
