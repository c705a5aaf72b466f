package dovecotauth

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Userdb is a connection to dovecot's auth-userdb (or auth-master) socket,
// where a trusted "master" looks users up: the mail processes after a
// login, and the LMTP server for each RCPT TO ("Server <-> Master" and
// "Master Requests" in the auth protocol documentation).
type Userdb struct {
	c         *conn
	serverPID string
}

// DialUserdb connects to the socket at path and does the handshake:
//
//	S: "VERSION" TAB <major> TAB <minor>
//	S: "SPID" TAB <pid>
//	M: "VERSION" TAB <major> TAB <minor>
//
// Our VERSION is sent at once, without waiting for the server's.
func DialUserdb(ctx context.Context, path string) (*Userdb, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return nil, err
	}
	u := &Userdb{c: c}
	if err := u.handshake(ctx); err != nil {
		c.nc.Close()
		return nil, fmt.Errorf("dovecot auth userdb handshake on %s: %w", path, err)
	}
	return u, nil
}

func (u *Userdb) handshake(ctx context.Context) error {
	end, err := u.c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if err := u.c.writeRaw("VERSION\t1\t0\n"); err != nil {
		return u.c.fail(ctx, err)
	}
	f, err := u.c.readLine()
	if err != nil {
		return u.c.fail(ctx, err)
	}
	if err := checkVersion(f); err != nil {
		return u.c.fail(ctx, err)
	}
	f, err = u.c.readLine()
	if err != nil {
		return u.c.fail(ctx, err)
	}
	if f[0] != "SPID" || len(f) < 2 {
		return u.c.fail(ctx, fmt.Errorf("%w: want SPID, got %q", ErrProtocol, strings.Join(f, "\t")))
	}
	u.serverPID = f[1]
	return nil
}

// ServerPID is the pid of the auth process serving this connection.
func (u *Userdb) ServerPID() string { return u.serverPID }

// Close closes the connection.
func (u *Userdb) Close() error { return u.c.nc.Close() }

// UserResult is the answer to a user lookup.
type UserResult struct {
	// Found is true for a USER reply, false for NOTFOUND.
	Found bool
	// User is the user name the server answered with (after its
	// normalisation, e.g. auth_username_format).
	User string
	// Fields are the userdb fields, e.g. "home=/srv/mail/alice", "uid=5000".
	Fields []string
}

// User looks a user up:
//
//	M: "USER" TAB <id> TAB <userid> TAB service=<service> [TAB <parameters>]
//	S: "USER" TAB <id> TAB <userid> [TAB <parameters>]  found
//	S: "NOTFOUND" TAB <id>                               no such user
//	S: "FAIL" TAB <id> TAB <error message>               internal error
//
// FAIL "means an internal error occurred" (a configuration mistake, a
// database down) and is returned as an error; the connection stays usable
// after it. Other errors leave the Userdb unusable.
func (u *Userdb) User(ctx context.Context, user, service string, params ...string) (UserResult, error) {
	var res UserResult
	if service == "" {
		return res, fmt.Errorf("dovecot auth: USER: no service")
	}
	end, err := u.c.begin(ctx)
	if err != nil {
		return res, err
	}
	defer end()
	id := u.c.id()
	fields := append([]string{"USER", strconv.FormatUint(uint64(id), 10), user, "service=" + service}, params...)
	if err := u.c.writeLine(fields...); err != nil {
		return res, u.c.fail(ctx, err)
	}
	f, err := u.c.readLine()
	if err != nil {
		return res, u.c.fail(ctx, err)
	}
	switch f[0] {
	case "USER", "NOTFOUND", "FAIL":
		if err := replyID(f, id); err != nil {
			return res, u.c.fail(ctx, err)
		}
	default:
		return res, u.c.fail(ctx, fmt.Errorf("%w: unexpected reply %q to USER", ErrProtocol, strings.Join(f, "\t")))
	}
	switch f[0] {
	case "NOTFOUND":
		return res, nil
	case "FAIL":
		msg := ""
		if len(f) > 2 {
			msg = strings.Join(f[2:], " ")
		}
		return res, fmt.Errorf("dovecot userdb lookup of %q failed: %s", user, msg)
	}
	if len(f) < 3 {
		return res, u.c.fail(ctx, fmt.Errorf("%w: USER reply without a user", ErrProtocol))
	}
	res = UserResult{Found: true, User: f[2]}
	for _, p := range f[3:] {
		if p != "" { // dovecot 2.3 ends the line with a TAB when there are no fields
			res.Fields = append(res.Fields, p)
		}
	}
	return res, nil
}
