package lmtpbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/postcove"
)

// postcoveUsers are the users with random passwords: nobody logs in.
func (b *bench) postcoveUsers() []postcove.User {
	users := make([]postcove.User, len(b.users))
	for i, u := range b.users {
		pw := make([]byte, 12)
		rand.Read(pw) //nolint:errcheck // never fails
		users[i] = postcove.User{Address: u, Password: hex.EncodeToString(pw)}
	}
	return users
}

// startDovecot starts a private dovecot with LMTP on a loopback port and a
// passwd-file userdb of the benchmark's users.
func (b *bench) startDovecot(ctx context.Context) (*dovecot.Server, error) {
	dir := filepath.Join(b.Root, "dovecot")
	users := make([]dovecot.PasswdEntry, len(b.users))
	for i, u := range b.users {
		users[i] = dovecot.MailUser(u, "{PLAIN}unused", filepath.Join(dir, "mail"))
	}
	return b.opts.StartDovecot(ctx, dir, "lmtp", users)
}
