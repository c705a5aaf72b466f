package dovecotauth

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Client is a connection to dovecot's auth-client socket, the side of the
// protocol login processes speak ("Client <-> Server" in the auth protocol
// documentation).
type Client struct {
	c         *conn
	mechs     []string
	serverPID string
}

// DialClient connects to the auth-client socket at path and does the
// handshake:
//
//	C: "VERSION" TAB <major> TAB <minor>
//	C: "CPID" TAB <pid>
//	S: "VERSION" TAB <major> TAB <minor>
//	S: "SPID" TAB <pid>  /  "CUID" TAB <id>  /  "COOKIE" TAB <cookie>
//	S: "MECH" TAB <name> [TAB <parameters>] (multiple times)
//	S: "DONE"
//
// cpid is the client's process identifier: "They should be unique
// identifiers for the specific process. UNIX process IDs are good
// choices." A process with several connections gives each its own
// non-zero number, since the server treats each connection as a client.
func DialClient(ctx context.Context, path string, cpid uint32) (*Client, error) {
	if cpid == 0 {
		return nil, fmt.Errorf("dovecot auth client: CPID must not be 0")
	}
	c, err := dial(ctx, path)
	if err != nil {
		return nil, err
	}
	cl := &Client{c: c}
	if err := cl.handshake(ctx, cpid); err != nil {
		c.nc.Close()
		return nil, fmt.Errorf("dovecot auth client handshake on %s: %w", path, err)
	}
	return cl, nil
}

func (cl *Client) handshake(ctx context.Context, cpid uint32) (err error) {
	end, err := cl.c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	// Minor version 2 is what dovecot 2.3 speaks; "minor version can be
	// ignored" by the other side.
	if err := cl.c.writeRaw("VERSION\t1\t2\nCPID\t" + strconv.FormatUint(uint64(cpid), 10) + "\n"); err != nil {
		return cl.c.fail(ctx, err)
	}
	f, err := cl.c.readLine()
	if err != nil {
		return cl.c.fail(ctx, err)
	}
	if err := checkVersion(f); err != nil {
		return cl.c.fail(ctx, err)
	}
	for {
		f, err := cl.c.readLine()
		if err != nil {
			return cl.c.fail(ctx, err)
		}
		switch f[0] {
		case "DONE":
			return nil
		case "MECH":
			if len(f) < 2 {
				return cl.c.fail(ctx, fmt.Errorf("%w: MECH without a name", ErrProtocol))
			}
			cl.mechs = append(cl.mechs, f[1])
		case "SPID":
			if len(f) > 1 {
				cl.serverPID = f[1]
			}
		default:
			// CUID, COOKIE, and whatever a later minor version adds: not
			// needed without master REQUESTs.
		}
	}
}

// Mechanisms are the SASL mechanisms the server announced, e.g. "PLAIN".
func (cl *Client) Mechanisms() []string { return slices.Clone(cl.mechs) }

// ServerPID is the SPID the server sent: the pid of the auth process that
// serves this connection.
func (cl *Client) ServerPID() string { return cl.serverPID }

// Close closes the connection.
func (cl *Client) Close() error { return cl.c.nc.Close() }

// PlainRequest is a login with the PLAIN mechanism (RFC 4616) and the
// credentials in the initial response, as an IMAP client using SASL-IR or
// an SMTP client using AUTH PLAIN with an argument sends them.
type PlainRequest struct {
	// Service is the protocol, e.g. "imap", "smtp". Required.
	Service string
	// User and Password are the credentials (authentication identity).
	User, Password string
	// RemoteIP and LocalIP, when set, are sent as rip= and lip=.
	RemoteIP, LocalIP string
	// Secured says the client's connection is protected (TLS, or
	// localhost): dovecot refuses plaintext mechanisms otherwise when
	// disable_plaintext_auth is on.
	Secured bool
	// NoPenalty asks the server to skip its auth penalty for this request:
	// without it, failures from one rip= delay that IP's later attempts
	// (up to 15 s; Authentication.Penalty in dovecot's wiki).
	NoPenalty bool
}

// AuthResult is the server's final answer to an authentication.
type AuthResult struct {
	// OK is true for an OK reply, false for FAIL.
	OK bool
	// Params are the reply's parameters, e.g. "user=alice@example.org",
	// "code=temp_fail"; see Param.
	Params []string
}

// AuthPlain runs one authentication:
//
//	C: "AUTH" TAB <id> TAB "PLAIN" TAB service=<service> [TAB <parameters>] TAB resp=<base64>
//	S: "OK" TAB <id> [TAB <parameters>]  or  "FAIL" TAB <id> [TAB <parameters>]
//
// resp= comes last: "This must be the last parameter. Everything after it
// is ignored." A FAIL is a result, not an error; an error means the
// exchange itself failed, and the Client is unusable after it.
func (cl *Client) AuthPlain(ctx context.Context, req PlainRequest) (res AuthResult, err error) {
	if req.Service == "" {
		return res, fmt.Errorf("dovecot auth: PLAIN: no service")
	}
	end, err := cl.c.begin(ctx)
	if err != nil {
		return res, err
	}
	defer end()
	id := cl.c.id()
	// PLAIN's message is authzid NUL authcid NUL passwd; an empty authzid
	// means "the same as authcid" (RFC 4616, section 2).
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + req.User + "\x00" + req.Password))
	var b strings.Builder
	b.WriteString("AUTH\t")
	b.WriteString(strconv.FormatUint(uint64(id), 10))
	b.WriteString("\tPLAIN\tservice=")
	b.WriteString(Escape(req.Service))
	if req.RemoteIP != "" {
		b.WriteString("\trip=" + Escape(req.RemoteIP))
	}
	if req.LocalIP != "" {
		b.WriteString("\tlip=" + Escape(req.LocalIP))
	}
	if req.Secured {
		b.WriteString("\tsecured")
	}
	if req.NoPenalty {
		b.WriteString("\tno-penalty")
	}
	b.WriteString("\tresp=" + resp + "\n")
	if err := cl.c.writeRaw(b.String()); err != nil {
		return res, cl.c.fail(ctx, err)
	}
	f, err := cl.c.readLine()
	if err != nil {
		return res, cl.c.fail(ctx, err)
	}
	switch f[0] {
	case "OK", "FAIL":
		if err := replyID(f, id); err != nil {
			return res, cl.c.fail(ctx, err)
		}
		return AuthResult{OK: f[0] == "OK", Params: f[2:]}, nil
	case "CONT":
		// PLAIN with an initial response needs no continuation; a server
		// asking for one is not doing PLAIN as RFC 4616 defines it.
		return res, cl.c.fail(ctx, fmt.Errorf("%w: CONT to a PLAIN request with an initial response", ErrProtocol))
	}
	return res, cl.c.fail(ctx, fmt.Errorf("%w: unexpected reply %q to AUTH", ErrProtocol, strings.Join(f, "\t")))
}
