package authbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/load"
)

// domain is the one mail domain of the benchmark.
const domain = "example.org"

// user is one mailbox user, known to both servers with the same password.
type user struct {
	address  string
	password string
}

// userSet is the benchmark's users, and as many addresses in the same
// domain that nobody has (the "unknown" recipients).
type userSet struct {
	users   []user
	unknown []string
}

// newUserSet makes n users with random passwords.
func newUserSet(n int) (*userSet, error) {
	s := &userSet{users: make([]user, n), unknown: make([]string, n)}
	for i := range n {
		pw := make([]byte, 12)
		if _, err := rand.Read(pw); err != nil {
			return nil, fmt.Errorf("random password: %w", err)
		}
		s.users[i] = user{address: fmt.Sprintf("user%05d@%s", i, domain), password: hex.EncodeToString(pw)}
		s.unknown[i] = fmt.Sprintf("nobody%05d@%s", i, domain)
	}
	return s, nil
}

// createInPostcove adds the domain and the users through the AdminService,
// conc calls at a time. CreateUser hashes each password (argon2id), which
// makes this the slow part of the setup.
func (s *userSet) createInPostcove(ctx context.Context, pc *postcove, conc int) error {
	if _, err := pc.admin.CreateDomain(ctx, &authv1.CreateDomainRequest{Name: domain}); err != nil {
		return fmt.Errorf("create domain %s: %w", domain, err)
	}
	var next atomic.Int64
	res, err := load.Run(ctx, load.Options{Concurrency: conc, Calls: len(s.users)}, func(ctx context.Context, _ int) error {
		u := s.users[next.Add(1)-1]
		if _, err := pc.admin.CreateUser(ctx, &authv1.CreateUserRequest{Address: u.address, Password: u.password}); err != nil {
			return fmt.Errorf("create user %s: %w", u.address, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d of %d users not created: %w", res.Errors, len(s.users), res.FirstError)
	}
	return nil
}

// writePasswdFile writes the users as a dovecot passwd-file at path, with
// argon2id hashes made with postcove's parameters, one goroutine per CPU.
// Each entry has the userdb fields an LMTP lookup needs (home, uid, gid)
// and the quota, the counterparts of postcove's Mailbox.
func (s *userSet) writePasswdFile(ctx context.Context, path string) error {
	entries := make([]dovecot.PasswdEntry, len(s.users))
	var next atomic.Int64
	errc := make(chan error, runtime.NumCPU())
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(s.users) {
					return
				}
				u := s.users[i]
				hash, err := dovecot.HashArgon2ID(u.password, dovecot.PostcoveArgon2(), rand.Reader)
				if err == nil {
					local, _, _ := strings.Cut(u.address, "@")
					entries[i] = dovecot.PasswdEntry{
						User: u.address, Password: hash, UID: "5000", GID: "5000",
						Home:  "/srv/mail/" + domain + "/" + local,
						Extra: []string{"userdb_quota_rule=*:storage=0"},
					}
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Readable by all: dovecot's auth process runs as the dovecot user.
	// The passwords are the benchmark's own random ones.
	return dovecot.WritePasswd(path, entries)
}
