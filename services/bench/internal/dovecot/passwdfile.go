package dovecot

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are argon2id cost parameters.
type Argon2Params struct {
	MemoryKiB uint32 // m
	Time      uint32 // t, passes
	Threads   uint8  // p, lanes
	SaltLen   int    // bytes
	KeyLen    uint32 // bytes
}

// PostcoveArgon2 are the parameters postcove's auth service hashes new
// passwords with (m=19456 KiB, t=2, p=1, 16-byte salt, 32-byte hash; the
// values of its password.DefaultParams, which another module cannot
// import). Dovecot given hashes with the same parameters does the same work
// per login.
func PostcoveArgon2() Argon2Params {
	return Argon2Params{MemoryKiB: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// HashArgon2ID hashes plain with argon2id (RFC 9106) and a random salt,
// in the form dovecot's ARGON2ID scheme reads (libsodium's
// crypto_pwhash_str, the PHC string format) with dovecot's {SCHEME}
// prefix:
//
//	{ARGON2ID}$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
//
// salt and hash in standard base64 without padding. random is the salt's
// source: crypto/rand.Reader. Password schemes:
// https://doc.dovecot.org/2.3/configuration_manual/authentication/password_schemes/
func HashArgon2ID(plain string, p Argon2Params, random io.Reader) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := io.ReadFull(random, salt); err != nil {
		return "", fmt.Errorf("argon2id salt: %w", err)
	}
	key := argon2.IDKey([]byte(plain), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return fmt.Sprintf("{ARGON2ID}$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key)), nil
}

// PasswdEntry is one line of a passwd-file, the format dovecot's
// passwd-file passdb and userdb read:
//
//	user:password:uid:gid:(gecos):home:(shell):extra_fields
//
// https://doc.dovecot.org/2.3/configuration_manual/authentication/passwd_file/
type PasswdEntry struct {
	User     string
	Password string // with its {SCHEME} prefix
	UID, GID string // numeric ids, or "" to leave them unset
	Home     string
	// Extra are extra fields, "name=value" each, separated by spaces in
	// the file: userdb_... fields for the userdb, passdb ones otherwise.
	Extra []string
}

// Line formats e as a passwd-file line, without the newline. Fields may
// not hold ':' (the separator) or a newline; the password may hold ':' only
// at the scheme's discretion, which none of the hashes here do.
func (e PasswdEntry) Line() (string, error) {
	for name, v := range map[string]string{"user": e.User, "password": e.Password, "uid": e.UID, "gid": e.GID, "home": e.Home} {
		if strings.ContainsAny(v, ":\n") {
			return "", fmt.Errorf("passwd-file %s field %q holds ':' or a newline", name, v)
		}
	}
	for _, x := range e.Extra {
		if strings.ContainsAny(x, " \n") || !strings.Contains(x, "=") {
			return "", fmt.Errorf("passwd-file extra field %q is not name=value without spaces", x)
		}
	}
	return strings.Join([]string{e.User, e.Password, e.UID, e.GID, "", e.Home, "", strings.Join(e.Extra, " ")}, ":"), nil
}

// WritePasswd writes entries as a passwd-file at path, readable by
// dovecot's auth process.
func WritePasswd(path string, entries []PasswdEntry) error {
	var b strings.Builder
	for _, e := range entries {
		l, err := e.Line()
		if err != nil {
			return err
		}
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("passwd-file: %w", err)
	}
	return nil
}

// MailUser is the passwd-file entry of a user whose mail is under
// mailRoot/<domain>/<local>/Maildir, owned by MailOwner.
func MailUser(address, password, mailRoot string) PasswdEntry {
	uid, gid := MailOwner()
	local, dom, _ := strings.Cut(address, "@")
	return PasswdEntry{User: address, Password: password, UID: strconv.Itoa(uid), GID: strconv.Itoa(gid), Home: filepath.Join(mailRoot, dom, local)}
}

// rootMailID owns the mail of a dovecot started as root: its mail
// processes switch to the userdb's uid, which must be at least
// first_valid_uid (500), and never root.
const rootMailID = 5000

// MailOwner returns the uid and gid for the userdb entries (PasswdEntry's
// UID and GID), who must own the mail: rootMailID when running as root,
// otherwise the caller, since a rootless dovecot cannot switch users.
// Start gives the mail directory to it.
func MailOwner() (uid, gid int) {
	if os.Geteuid() == 0 {
		return rootMailID, rootMailID
	}
	return os.Getuid(), os.Getgid()
}
