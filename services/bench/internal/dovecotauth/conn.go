// Package dovecotauth is a client of dovecot's authentication protocol, the
// line protocol dovecot's auth process speaks on its unix sockets:
//
//   - the auth-client socket, where login processes (imap-login, postfix's
//     SMTP AUTH) run SASL authentications: Client;
//   - the auth-userdb (or auth-master) socket, where mail processes and
//     the LMTP server look users up: Userdb.
//
// The protocol is "Dovecot Authentication Protocol" in dovecot's developer
// documentation, https://doc.dovecot.org/2.3/developer_manual/design/auth_protocol/
// (Debian 12 ships dovecot 2.3.19; the same text is in dovecot-core's
// doc/wiki/Design.AuthProtocol.txt). The benchmark uses it to send dovecot
// the same load it sends postcove's auth service over gRPC.
//
// A Client or Userdb is one connection with one request in flight at a
// time; it is not safe for concurrent use. Benchmark workers each own one.
package dovecotauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProtocolMajor is the protocol's major version. "Both client and server
// should check that they support the same major version number. If they
// don't, the other side isn't expected to be talking the same protocol and
// should be disconnected. Minor version can be ignored." (auth protocol,
// General / Client <-> Server).
const ProtocolMajor = 1

// maxLine bounds a reply line. The protocol leaves it undefined but
// "currently expected to fit into 16384 bytes" (dovecot 2.3 docs); the
// margin is ours.
const maxLine = 64 << 10

// ErrProtocol marks a reply that does not follow the protocol. The
// connection is unusable after it.
var ErrProtocol = errors.New("dovecot auth protocol error")

// conn is the line transport both sockets share: LF-terminated lines of
// TAB-separated, tab-escaped fields.
type conn struct {
	nc     net.Conn
	r      *bufio.Reader
	nextID uint32
	// broken is set when a request was abandoned half way (timeout,
	// cancellation, protocol error): its reply may still arrive, so the
	// connection cannot be trusted with another request.
	broken error
}

func dial(ctx context.Context, path string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to dovecot auth socket: %w", err)
	}
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, 4096)}, nil
}

// id returns the next request id: "a connection-specific unique request
// identifier. It must be a 32bit number, so typically you'd just increment
// it by one." Zero is skipped.
func (c *conn) id() uint32 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// begin readies the connection for one exchange bounded by ctx: its
// deadline becomes the socket's, and its cancellation interrupts blocked
// reads and writes. The returned function ends the exchange.
func (c *conn) begin(ctx context.Context) (end func(), err error) {
	if c.broken != nil {
		return nil, fmt.Errorf("connection unusable after an earlier failure: %w", c.broken)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline() // zero: none
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	return func() {
		if !stop() {
			// The interrupt ran or is running: it may land on the next
			// exchange's deadline, so there must be none.
			c.broken = fmt.Errorf("request interrupted: %w", context.Cause(ctx))
		}
	}, nil
}

// fail marks the connection broken and returns err, preferring the
// context's error when it caused the failure.
func (c *conn) fail(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket shares ctx's deadline and may notice it first.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	c.broken = err
	return err
}

// writeLine sends one command; fields are tab-escaped.
func (c *conn) writeLine(fields ...string) error {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteByte('\t')
		}
		b.WriteString(Escape(f))
	}
	b.WriteByte('\n')
	_, err := c.nc.Write([]byte(b.String()))
	return err
}

// writeRaw sends lines the caller escaped (handshakes, and AUTH, whose
// resp= parameter must come last and be base64).
func (c *conn) writeRaw(s string) error {
	_, err := c.nc.Write([]byte(s))
	return err
}

// readLine reads one line and splits and unescapes its fields.
func (c *conn) readLine() ([]string, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Longer than the buffer: collect the rest, up to maxLine.
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(long) <= maxLine {
			line, err = c.r.ReadSlice('\n')
			long = append(long, line...)
		}
		if len(long) > maxLine {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, maxLine)
		}
		line = long
	}
	if err != nil {
		return nil, err
	}
	return SplitLine(string(line[:len(line)-1])), nil
}

// SplitLine splits a line (without its LF) into its TAB-separated fields
// and unescapes each.
func SplitLine(line string) []string {
	fields := strings.Split(line, "\t")
	for i, f := range fields {
		fields[i] = Unescape(f)
	}
	return fields
}

// Escape applies dovecot's tab-escaping: "\001 is used as the escape
// character. After it follows: 0: NUL character, 1: \001 character, t: TAB,
// r: CR, n: LF" (auth protocol, General; dovecot's str_tabescape). The 2.3
// page lists LF as "l", a typo: the code and the 2.4 page use "n".
func Escape(s string) string {
	if !strings.ContainsAny(s, "\x00\x01\t\r\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0:
			b.WriteString("\x010")
		case 1:
			b.WriteString("\x011")
		case '\t':
			b.WriteString("\x01t")
		case '\r':
			b.WriteString("\x01r")
		case '\n':
			b.WriteString("\x01n")
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// Unescape reverses Escape. After \001, "anything else writes the
// character itself (skipping the \001)"; a \001 at the very end is kept.
func Unescape(s string) string {
	if strings.IndexByte(s, 1) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 1 || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '0':
			b.WriteByte(0)
		case '1':
			b.WriteByte(1)
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// checkVersion validates a VERSION line's fields.
func checkVersion(f []string) error {
	if len(f) < 3 || f[0] != "VERSION" {
		return fmt.Errorf("%w: want VERSION, got %q", ErrProtocol, strings.Join(f, "\t"))
	}
	major, err := strconv.Atoi(f[1])
	if err != nil {
		return fmt.Errorf("%w: VERSION major %q", ErrProtocol, f[1])
	}
	if major != ProtocolMajor {
		return fmt.Errorf("%w: server speaks version %d, we speak %d", ErrProtocol, major, ProtocolMajor)
	}
	return nil
}

// replyID parses the id of a reply and checks it is the one asked.
func replyID(f []string, want uint32) error {
	if len(f) < 2 {
		return fmt.Errorf("%w: %s reply without an id", ErrProtocol, f[0])
	}
	got, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return fmt.Errorf("%w: %s reply id %q", ErrProtocol, f[0], f[1])
	}
	if uint32(got) != want {
		return fmt.Errorf("%w: %s reply for id %d, want %d", ErrProtocol, f[0], got, want)
	}
	return nil
}

// Param returns the value of the optional parameter name among params:
// "either booleans without a value, or a name=value pair" (auth protocol,
// General). A boolean present gives "", true.
func Param(params []string, name string) (string, bool) {
	for _, p := range params {
		if p == name {
			return "", true
		}
		if v, ok := strings.CutPrefix(p, name+"="); ok {
			return v, true
		}
	}
	return "", false
}
