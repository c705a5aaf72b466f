package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// delim is the hierarchy separator as go-imap wants it.
const delim = '/'

// authService names this protocol to auth, for its logs and metrics.
const authService = "imap"

// session is one client connection's backend. imapserver calls its
// methods from the connection's goroutine, one at a time, except Idle,
// which runs in a goroutine of its own and may outlive the command when
// the connection fails; mu keeps that goroutine's polls apart from the
// rest (Close included).
type session struct {
	mu sync.Mutex // held by every method that uses the fields below

	srv      *Server
	conn     *imapserver.Conn
	tc       *trackedConn
	remoteIP string
	log      *slog.Logger

	address string          // the logged-in user, canonical
	mbs     store.Mailboxes // nil until login
	sel     *selected       // nil unless a mailbox is selected
	// updates is the last UpdateWriter imapserver gave Poll or Idle. It
	// writes to the connection whatever the command, which STORE needs
	// to announce a new keyword with FLAGS before using it (the library
	// gives STORE only a FetchWriter).
	updates *imapserver.UpdateWriter
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

// newSession is imapserver's NewSession.
func (s *Server) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	tc, ok := tracked(conn.NetConn())
	if !ok {
		return nil, nil, errors.New("imapd: connection not from our listener")
	}
	sess := &session{
		srv:      s,
		conn:     conn,
		tc:       tc,
		remoteIP: remoteIP(tc.RemoteAddr()),
		log:      s.log.With("session", tc.id, "remote", tc.RemoteAddr().String()),
	}
	sess.log.Debug("imap connection")
	return sess, nil, nil
}

// remoteIP is what auth's lockout counts failures against.
func remoteIP(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// lock takes mu; defer the function it returns.
func (sess *session) lock() func() {
	sess.mu.Lock()
	return sess.mu.Unlock
}

// ctx returns a context for one command's work with auth or the store.
func (sess *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(sess.srv.ctx, storeTimeout)
}

// Close releases the store handles; imapserver calls it when the
// connection ends.
func (sess *session) Close() error {
	defer sess.lock()()
	sess.closeSelected()
	if sess.mbs != nil {
		if err := sess.mbs.Close(); err != nil {
			sess.log.Warn("imap close user", "err", err)
		}
		sess.mbs = nil
	}
	sess.log.Debug("imap session ended")
	return nil
}

// isTLS reports whether the connection is encrypted now (implicit TLS or
// after STARTTLS).
func (sess *session) isTLS() bool {
	_, ok := sess.conn.NetConn().(*tls.Conn)
	return ok
}

// Login checks the credentials with auth and opens the user's mailboxes.
// imapserver has already refused it before TLS unless plaintext logins
// are allowed, and calls it for AUTHENTICATE PLAIN too.
func (sess *session) Login(username, password string) error {
	defer sess.lock()()
	if sess.mbs != nil {
		return bad("already logged in")
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	tlsOn := sess.isTLS()
	u, err := sess.srv.opts.Auth.Authenticate(ctx, username, password, authService, sess.remoteIP, tlsOn)
	if err != nil {
		answer, result := loginError(err)
		sess.srv.metrics.logins.WithLabelValues(result).Inc()
		sess.log.Info("imap login failed", "username", username, "result", result, "err", err)
		return answer
	}
	mbs, err := sess.srv.opts.Store.User(ctx, u.Address)
	if err == nil {
		// The limit auth keeps for the user, as LMTP delivery records it.
		if err = mbs.SetQuotaLimit(ctx, u.QuotaBytes); err != nil {
			mbs.Close()
		}
	}
	if err != nil {
		sess.srv.metrics.logins.WithLabelValues("unavailable").Inc()
		sess.log.Error("imap mailboxes unavailable", "user", u.Address, "err", err)
		return no(imap.ResponseCodeUnavailable, "mailbox unavailable, try again later")
	}
	sess.srv.metrics.logins.WithLabelValues("ok").Inc()
	sess.address, sess.mbs = u.Address, mbs
	sess.log = sess.log.With("user", u.Address)
	sess.log.Info("imap login", "tls", tlsOn)
	return nil
}

// AppendLimit announces APPENDLIMIT (RFC 7889); imapserver refuses a
// larger literal with NO [TOOBIG] before the client sends it.
func (sess *session) AppendLimit() uint32 {
	return uint32(sess.srv.opts.MaxAppendSize)
}

// Namespace: one personal namespace, the user's mailboxes (RFC 2342).
func (sess *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// Create makes a mailbox. A trailing separator only says the client means
// to create children (RFC 9051 section 6.3.4): it is dropped.
func (sess *session) Create(name string, options *imap.CreateOptions) error {
	defer sess.lock()()
	if len(options.SpecialUse) > 0 {
		// CREATE-SPECIAL-USE is not offered: special use goes by name.
		return no("USEATTR", "special-use attributes are given by name")
	}
	name = strings.TrimSuffix(name, store.Separator)
	ctx, cancel := sess.ctx()
	defer cancel()
	if err := sess.mbs.Create(ctx, name); err != nil {
		return sess.storeError("create", err, false)
	}
	return nil
}

func (sess *session) Delete(name string) error {
	defer sess.lock()()
	ctx, cancel := sess.ctx()
	defer cancel()
	if err := sess.mbs.Delete(ctx, name); err != nil {
		return sess.storeError("delete", err, false)
	}
	return nil
}

func (sess *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	defer sess.lock()()
	ctx, cancel := sess.ctx()
	defer cancel()
	if err := sess.mbs.Rename(ctx, oldName, newName); err != nil {
		return sess.storeError("rename", err, false)
	}
	return nil
}

func (sess *session) Subscribe(name string) error   { return sess.subscribe(name, true) }
func (sess *session) Unsubscribe(name string) error { return sess.subscribe(name, false) }

func (sess *session) subscribe(name string, on bool) error {
	defer sess.lock()()
	ctx, cancel := sess.ctx()
	defer cancel()
	if err := sess.mbs.SetSubscribed(ctx, name, on); err != nil {
		return sess.storeError("subscribe", err, false)
	}
	return nil
}

// Status answers STATUS (and LIST-STATUS).
func (sess *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	defer sess.lock()()
	ctx, cancel := sess.ctx()
	defer cancel()
	st, err := sess.mbs.Status(ctx, name)
	if err != nil {
		return nil, sess.storeError("status", err, false)
	}
	return sess.statusData(st, options)
}

func (sess *session) statusData(st store.Status, options *imap.StatusOptions) (*imap.StatusData, error) {
	if options.DeletedStorage {
		return nil, bad("STATUS DELETED-STORAGE is not supported")
	}
	var recent uint32 // \Recent is not kept
	appendLimit := uint32(sess.srv.opts.MaxAppendSize)
	return &imap.StatusData{
		Mailbox:     st.Name,
		NumMessages: &st.Messages,
		UIDNext:     imap.UID(st.UIDNext),
		UIDValidity: st.UIDValidity,
		NumUnseen:   &st.Unseen,
		NumDeleted:  &st.Deleted,
		Size:        &st.Size,
		AppendLimit: &appendLimit,
		NumRecent:   &recent,
	}, nil
}

// Append stores a message; the store makes it durable before OK.
func (sess *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	defer sess.lock()()
	flags := make([]string, len(options.Flags))
	for i, f := range options.Flags {
		flags[i] = string(f)
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	res, err := sess.mbs.Append(ctx, name, r, store.AppendOptions{Flags: flags, InternalDate: options.Time})
	if err != nil {
		// imapserver reads what is left of the literal, so the
		// connection stays in step.
		return nil, sess.storeError("append", err, true)
	}
	sess.srv.metrics.appended.Add(float64(res.Size))
	return &imap.AppendData{UID: imap.UID(res.UID), UIDValidity: res.UIDValidity}, nil
}

// List answers LIST and LSUB, with the LIST-EXTENDED selection and return
// options (RFC 5258), SPECIAL-USE attributes (RFC 6154) and LIST-STATUS
// (RFC 5819).
func (sess *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	defer sess.lock()()
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 9051
		// section 6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	infos, err := sess.mbs.List(ctx)
	if err != nil {
		return sess.storeError("list", err, false)
	}
	subscribed := map[string]bool{}
	if options.SelectSubscribed || options.ReturnSubscribed {
		subs, err := sess.mbs.Subscriptions(ctx)
		if err != nil {
			return sess.storeError("list subscriptions", err, false)
		}
		for _, name := range subs {
			subscribed[name] = true
		}
	}
	for _, e := range listEntries(infos, subscribed, options) {
		if !matchAny(e.name, ref, patterns) {
			continue
		}
		data := &imap.ListData{Mailbox: e.name, Delim: delim, Attrs: e.attrs(options)}
		if options.ReturnStatus != nil && e.exists {
			st, err := sess.mbs.Status(ctx, e.name)
			switch {
			case errors.Is(err, store.ErrNoSuchMailbox):
				// Deleted meanwhile: list it without STATUS.
			case err != nil:
				return sess.storeError("list status", err, false)
			default:
				if data.Status, err = sess.statusData(st, options.ReturnStatus); err != nil {
					return err
				}
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// listEntry is one mailbox LIST may show: an existing one, a parent that
// does not exist but has children, or a subscription to a mailbox that
// is gone.
type listEntry struct {
	name        string
	exists      bool
	hasChildren bool
	subscribed  bool
	specialUse  string
}

func (e *listEntry) attrs(options *imap.ListOptions) []imap.MailboxAttr {
	var attrs []imap.MailboxAttr
	switch {
	case !e.exists && e.hasChildren:
		attrs = append(attrs, imap.MailboxAttrNoSelect)
	case !e.exists:
		attrs = append(attrs, imap.MailboxAttrNonExistent)
	}
	if e.hasChildren {
		attrs = append(attrs, imap.MailboxAttrHasChildren)
	} else {
		attrs = append(attrs, imap.MailboxAttrHasNoChildren)
	}
	if e.subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
		attrs = append(attrs, imap.MailboxAttrSubscribed)
	}
	if e.specialUse != "" {
		attrs = append(attrs, imap.MailboxAttr(e.specialUse))
	}
	return attrs
}

// listEntries returns what LIST may show, INBOX first then by name,
// filtered by the selection options.
func listEntries(infos []store.MailboxInfo, subscribed map[string]bool, options *imap.ListOptions) []*listEntry {
	byName := make(map[string]*listEntry, len(infos))
	entry := func(name string) *listEntry {
		e := byName[name]
		if e == nil {
			e = &listEntry{name: name, subscribed: subscribed[name]}
			byName[name] = e
		}
		return e
	}
	for _, info := range infos {
		e := entry(info.Name)
		e.exists, e.specialUse = true, info.SpecialUse
		for p := store.Parent(info.Name); p != ""; p = store.Parent(p) {
			entry(p).hasChildren = true
		}
	}
	if options.SelectSubscribed {
		for name := range subscribed {
			entry(name)
		}
	}
	out := make([]*listEntry, 0, len(byName))
	for _, e := range byName {
		switch {
		case options.SelectSubscribed && !e.subscribed:
			continue
		case options.SelectSpecialUse && e.specialUse == "":
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *listEntry) int { return store.CompareNames(a.name, b.name) })
	return out
}

// matchAny reports whether name matches one of the LIST patterns under
// ref. INBOX matches in any case (RFC 9051 section 5.1).
func matchAny(name, ref string, patterns []string) bool {
	ref = canonicalInbox(ref)
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, canonicalInbox(p)) {
			return true
		}
	}
	return false
}

// canonicalInbox spells a leading "inbox" level of a name or pattern as
// INBOX.
func canonicalInbox(s string) string {
	if len(s) >= len(store.Inbox) && strings.EqualFold(s[:len(store.Inbox)], store.Inbox) &&
		(len(s) == len(store.Inbox) || s[len(store.Inbox)] == delim) {
		return store.Inbox + s[len(store.Inbox):]
	}
	return s
}

// readAll reads r to its end into a buffer sized for size bytes.
func readAll(r io.Reader, size int64) ([]byte, error) {
	return readAllInto(make([]byte, 0, max(size, 0)+1), r, size)
}

// readAllInto appends r's content to buf, growing it first to hold size
// more bytes.
func readAllInto(buf []byte, r io.Reader, size int64) ([]byte, error) {
	buf = slices.Grow(buf, int(max(size, 0))+1)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
