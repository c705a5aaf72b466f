package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Envelope is what SMTP accepted: the message's routing, stored next to its
// body.
type Envelope struct {
	ID         string      `json:"id"`     // set by Enqueue: unique, filename-safe
	Sender     string      `json:"sender"` // reverse-path; "" is the null sender (bounces, DSNs)
	Recipients []Recipient `json:"recipients"`
	ReceivedAt time.Time   `json:"received_at"`
	AuthUser   string      `json:"auth_user,omitempty"` // the submission user, "" for inbound
	// Junk: DMARC quarantine or spam verdict; local delivery files the
	// message into the recipient's Junk mailbox.
	Junk bool `json:"junk,omitempty"`
	// RFC 3461 DSN parameters (optional): Ret ("FULL" or "HDRS", what a
	// bounce returns of the message), EnvID (echoed in the DSN).
	Ret   string `json:"ret,omitempty"`
	EnvID string `json:"envid,omitempty"`
}

// Route says how a recipient is reached.
type Route int

const (
	// RouteLocal is LMTP to the mailbox service.
	RouteLocal Route = iota
	// RouteRemote is SMTP to the recipient domain's MX (or the smarthost).
	RouteRemote
)

func (r Route) String() string {
	switch r {
	case RouteLocal:
		return "local"
	case RouteRemote:
		return "remote"
	}
	return fmt.Sprintf("Route(%d)", int(r))
}

// Status is where a recipient's delivery stands.
type Status int

const (
	// Pending: not tried yet.
	Pending Status = iota
	// Delivered: the next hop answered 2xx.
	Delivered
	// Deferred: the last attempt failed temporarily (4xx, or no answer);
	// tried again at Recipient.Retry.
	Deferred
	// Failed: a permanent failure (5xx) or the queue lifetime ran out. The
	// sender gets a DSN.
	Failed
)

var statusNames = [...]string{Pending: "pending", Delivered: "delivered", Deferred: "deferred", Failed: "failed"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText writes the status by name, so envelope files stay readable.
func (s Status) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(statusNames) {
		return nil, fmt.Errorf("invalid status %d", int(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText reads a status name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if string(b) == n {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("unknown status %q", b)
}

// final reports whether nothing more will be tried for the recipient.
func (s Status) final() bool { return s == Delivered || s == Failed }

// Recipient is one RCPT of the envelope, and its delivery state.
type Recipient struct {
	Address string `json:"address"`        // where it goes: a local mailbox address (RouteLocal) or a remote address (RouteRemote)
	Orig    string `json:"orig,omitempty"` // the RCPT TO address it came from (ORCPT for DSNs)
	Route   Route  `json:"route"`
	Notify  string `json:"notify,omitempty"` // RFC 3461 NOTIFY ("NEVER", or a list of SUCCESS,FAILURE,DELAY), "" = default

	// Delivery state, kept by the queue: Enqueue ignores what the caller
	// sets here.
	Status   Status    `json:"status"`
	Attempts int       `json:"attempts,omitempty"`
	Retry    time.Time `json:"retry,omitzero"` // Deferred: when to try again
	Last     Result    `json:"last,omitzero"`  // the last attempt's answer
	// Reported: Failed and the sender was sent a DSN for it (or none was
	// due: null sender, NOTIFY=NEVER).
	Reported bool `json:"reported,omitempty"`
	// Warned: the sender was told that delivery to this recipient is
	// delayed (Options.DelayWarning), or no warning was due.
	Warned bool `json:"warned,omitempty"`
}

// Result is the answer of one delivery attempt for one recipient.
type Result struct {
	// Code is the SMTP/LMTP reply code: 2xx delivered, 4xx try again
	// later, 5xx permanent failure. A deliverer that got no answer (the
	// connection failed, a DNS lookup failed temporarily) says 4xx.
	Code int `json:"code"`
	// Enhanced is the RFC 3463 status code ("5.1.1"), "" when the server
	// gave none.
	Enhanced string `json:"enhanced,omitempty"`
	// Text is the reply text, or a description of what went wrong.
	Text string `json:"text,omitempty"`
	// RemoteMTA is the host that gave the answer (DSN Remote-MTA), "" when
	// there was none.
	RemoteMTA string `json:"remote_mta,omitempty"`
}

// Status returns the result's enhanced status code, derived from Code
// (RFC 3463 class X.0.0) when the server gave none.
func (r Result) Status() string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	switch r.Code / 100 {
	case 2:
		return "2.0.0"
	case 5:
		return "5.0.0"
	}
	return "4.0.0"
}

// String formats the result as a reply line: "550 5.1.1 no such user".
func (r Result) String() string {
	return fmt.Sprintf("%d %s %s", r.Code, r.Status(), r.Text)
}

// envelopeVersion is the format version of envelope files. A file of
// another version is refused, never guessed at.
const envelopeVersion = 1

// record is the envelope file: a JSON object holding the format version
// and the envelope with its per-recipient state.
type record struct {
	Version int `json:"version"`
	Envelope
}

// Limits on envelope fields. Addresses longer than RFC 5321 §4.5.3.1.3's
// 256-octet path cannot come from SMTP; the rest bound what a damaged file
// can make us allocate.
const (
	maxAddrLen   = 1000
	maxRcpts     = 10000
	maxIDLen     = 64
	maxEnvIDLen  = 100 // RFC 3461 §4.4
	maxTextLen   = 4096
	maxNotifyLen = 64
)

// marshalEnvelope encodes env as an envelope file.
func marshalEnvelope(env Envelope) ([]byte, error) {
	if err := validate(env); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(record{Version: envelopeVersion, Envelope: env}, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encode envelope %s: %w", env.ID, err)
	}
	return append(b, '\n'), nil
}

// parseEnvelope decodes and checks an envelope file.
func parseEnvelope(b []byte) (Envelope, error) {
	var rec record
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return Envelope{}, fmt.Errorf("parse envelope: %w", err)
	}
	if dec.More() {
		return Envelope{}, errors.New("parse envelope: data after the JSON object")
	}
	if rec.Version != envelopeVersion {
		return Envelope{}, fmt.Errorf("parse envelope: version %d, want %d", rec.Version, envelopeVersion)
	}
	if err := validate(rec.Envelope); err != nil {
		return Envelope{}, fmt.Errorf("parse envelope: %w", err)
	}
	return rec.Envelope, nil
}

// validate checks what Enqueue stores and what a file read back holds:
// fields that end up in SMTP commands or file names must not carry control
// characters (a CR or LF in an address would inject commands).
func validate(env Envelope) error {
	if !validID(env.ID) {
		return fmt.Errorf("invalid message ID %q", env.ID)
	}
	if err := checkField("sender", env.Sender, maxAddrLen); err != nil {
		return err
	}
	if err := checkField("auth user", env.AuthUser, maxAddrLen); err != nil {
		return err
	}
	if env.Ret != "" && env.Ret != "FULL" && env.Ret != "HDRS" {
		return fmt.Errorf("invalid RET %q, want FULL or HDRS", env.Ret)
	}
	if err := checkField("ENVID", env.EnvID, maxEnvIDLen); err != nil {
		return err
	}
	if len(env.Recipients) == 0 {
		return errors.New("no recipients")
	}
	if len(env.Recipients) > maxRcpts {
		return fmt.Errorf("%d recipients, at most %d", len(env.Recipients), maxRcpts)
	}
	for i, r := range env.Recipients {
		if r.Address == "" {
			return fmt.Errorf("recipient %d: empty address", i)
		}
		for _, f := range []struct {
			name, v string
			max     int
		}{{"address", r.Address, maxAddrLen}, {"original recipient", r.Orig, maxAddrLen}, {"NOTIFY", r.Notify, maxNotifyLen}, {"reply text", r.Last.Text, maxTextLen}, {"enhanced code", r.Last.Enhanced, 16}, {"remote MTA", r.Last.RemoteMTA, maxAddrLen}} {
			if err := checkField(f.name, f.v, f.max); err != nil {
				return fmt.Errorf("recipient %d: %w", i, err)
			}
		}
		if r.Route != RouteLocal && r.Route != RouteRemote {
			return fmt.Errorf("recipient %d: invalid route %d", i, int(r.Route))
		}
		if r.Status < Pending || r.Status > Failed {
			return fmt.Errorf("recipient %d: invalid status %d", i, int(r.Status))
		}
		if r.Attempts < 0 {
			return fmt.Errorf("recipient %d: negative attempt count", i)
		}
		if r.Last.Code < 0 || r.Last.Code > 599 {
			return fmt.Errorf("recipient %d: invalid reply code %d", i, r.Last.Code)
		}
	}
	return nil
}

// checkField refuses control characters (CR, LF, NUL, ...) and overlong
// values.
func checkField(name, v string, maxLen int) error {
	if len(v) > maxLen {
		return fmt.Errorf("%s: %d bytes, at most %d", name, len(v), maxLen)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s %q: control character %#x", name, v, c)
		}
	}
	return nil
}

// validID reports whether id is a message ID Enqueue could have made: file
// name safe, so a damaged envelope cannot point us at another path.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}
