package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mtav1 "github.com/postcove/postcove/proto/postcove/mta/v1"
)

func queueCommands() []command {
	return []command{
		{usage: "queue list [--json]", help: "list the messages waiting in the MTA's queue, with each recipient's state and last reply", run: (*app).queueList},
		{usage: "queue flush [ID]", help: "retry deferred mail now: one message, or all of them", run: (*app).queueFlush},
		{usage: "queue delete ID", help: "remove a message from the queue without delivering it or telling its sender", run: (*app).queueDelete},
	}
}

const queueListHint = "list the queue with 'mailctl queue list' (the message may have been delivered, bounced or deleted meanwhile)"

func (a *app) queueAdmin() (mtav1.QueueAdminClient, error) {
	conn, err := a.mtaConn()
	if err != nil {
		return nil, err
	}
	return mtav1.NewQueueAdminClient(conn), nil
}

// queueArgs parses a queue command's arguments and connects to the MTA.
func (a *app) queueArgs(fs *flag.FlagSet, args []string, min, max int) ([]string, mtav1.QueueAdminClient, error) {
	pos, err := parseArgs(fs, args, min, max)
	if err != nil {
		return nil, nil, err
	}
	c, err := a.queueAdmin()
	return pos, c, err
}

func (a *app) queueList(ctx context.Context, args []string) error {
	fs := a.newFlags("queue list [--json]")
	asJSON := fs.Bool("json", false, "")
	_, c, err := a.queueArgs(fs, args, 0, 0)
	if err != nil {
		return err
	}
	res, err := c.ListQueue(ctx, &mtav1.ListQueueRequest{})
	if err != nil {
		return a.mtaError(err, "")
	}
	now := time.Now()
	if *asJSON {
		enc := json.NewEncoder(a.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(queueJSON(res.GetMessages(), now))
	}
	return a.printQueue(res.GetMessages(), now)
}

// printQueue writes the queue as a table, one line per recipient, the
// message's columns on its first line only (like postqueue -p), and a
// total.
func (a *app) printQueue(msgs []*mtav1.QueuedMessage, now time.Time) error {
	if len(msgs) == 0 {
		a.out("the queue is empty")
		return nil
	}
	tw := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSIZE\tSENDER\tRECIPIENT\tROUTE\tSTATE\tLAST REPLY")
	var total int64
	for _, m := range msgs {
		total += m.GetSizeBytes()
		cols := []string{m.GetId(), formatAge(now.Sub(time.Unix(m.GetReceivedUnix(), 0))), formatBytes(m.GetSizeBytes()), senderText(m.GetSender())}
		for i, r := range m.GetRecipients() {
			if i == 1 {
				cols = []string{"", "", "", ""}
			}
			rcpt := r.GetAddress()
			if r.GetOrig() != "" {
				rcpt += " (for " + r.GetOrig() + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", strings.Join(printable(cols...), "\t"), printable(rcpt)[0], routeText(r.GetRoute()), stateText(m, r, now), printable(replyText(r.GetLastReply()))[0])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	a.out("-- %d %s, %s", len(msgs), plural(len(msgs), "message", "messages"), formatBytes(total))
	return nil
}

func (a *app) queueFlush(ctx context.Context, args []string) error {
	pos, c, err := a.queueArgs(a.newFlags("queue flush [ID]"), args, 0, 1)
	if err != nil {
		return err
	}
	req := &mtav1.FlushQueueRequest{}
	if len(pos) == 1 {
		req.Id = pos[0]
	}
	if _, err := c.FlushQueue(ctx, req); err != nil {
		return a.mtaError(err, queueListHint)
	}
	if req.Id == "" {
		a.out("queue flushed: deferred messages are being retried now (see 'mailctl queue list')")
	} else {
		a.out("message %s flushed: it is being retried now (see 'mailctl queue list')", req.Id)
	}
	return nil
}

func (a *app) queueDelete(ctx context.Context, args []string) error {
	pos, c, err := a.queueArgs(a.newFlags("queue delete ID"), args, 1, 1)
	if err != nil {
		return err
	}
	res, err := c.DeleteMessage(ctx, &mtav1.DeleteMessageRequest{Id: pos[0]})
	if err != nil {
		hint := queueListHint
		if status.Code(err) == codes.FailedPrecondition { // being delivered
			hint = "try again in a moment, once the attempt is over"
		}
		return a.mtaError(err, hint)
	}
	m := res.GetMessage()
	if m == nil {
		a.out("message %s deleted", pos[0])
		return nil
	}
	var rcpts []string
	for _, r := range m.GetRecipients() {
		if r.GetStatus() != mtav1.RecipientStatus_RECIPIENT_STATUS_DELIVERED {
			rcpts = append(rcpts, r.GetAddress())
		}
	}
	undelivered := ""
	if len(rcpts) > 0 {
		undelivered = "; not delivered to " + strings.Join(rcpts, ", ")
	}
	a.out("message %s deleted: from %s, %s, received %s ago%s; the sender was not told",
		m.GetId(), printable(senderText(m.GetSender()))[0], formatBytes(m.GetSizeBytes()),
		formatAge(time.Since(time.Unix(m.GetReceivedUnix(), 0))), printable(undelivered)[0])
	return nil
}

// queueMessage is a queued message in `queue list --json`, a format
// scripts rely on: times in RFC 3339 UTC, states and routes by name.
type queueMessage struct {
	ID         string           `json:"id"`
	Sender     string           `json:"sender"` // "" for the null sender
	AuthUser   string           `json:"auth_user,omitempty"`
	ReceivedAt time.Time        `json:"received_at"`
	AgeSeconds int64            `json:"age_seconds"`
	SizeBytes  int64            `json:"size_bytes"`
	NextRetry  *time.Time       `json:"next_attempt_at"` // null: due now
	Recipients []queueRecipient `json:"recipients"`
}

type queueRecipient struct {
	Address   string      `json:"address"`
	Orig      string      `json:"orig,omitempty"`
	Route     string      `json:"route"`  // local, remote
	Status    string      `json:"status"` // pending, deferred, delivered, failed
	Attempts  int32       `json:"attempts"`
	LastReply *queueReply `json:"last_reply"` // null before the first attempt
}

type queueReply struct {
	Code      int32  `json:"code"`
	Enhanced  string `json:"enhanced,omitempty"`
	Text      string `json:"text"`
	RemoteMTA string `json:"remote_mta,omitempty"`
}

func queueJSON(msgs []*mtav1.QueuedMessage, now time.Time) []queueMessage {
	out := make([]queueMessage, 0, len(msgs))
	for _, m := range msgs {
		received := time.Unix(m.GetReceivedUnix(), 0).UTC()
		qm := queueMessage{
			ID: m.GetId(), Sender: m.GetSender(), AuthUser: m.GetAuthUser(),
			ReceivedAt: received, AgeSeconds: int64(now.Sub(received).Seconds()), SizeBytes: m.GetSizeBytes(),
			Recipients: make([]queueRecipient, 0, len(m.GetRecipients())),
		}
		if n := m.GetNextAttemptUnix(); n != 0 {
			next := time.Unix(n, 0).UTC()
			qm.NextRetry = &next
		}
		for _, r := range m.GetRecipients() {
			qr := queueRecipient{
				Address: r.GetAddress(), Orig: r.GetOrig(), Route: routeText(r.GetRoute()),
				Status: statusText(r.GetStatus()), Attempts: r.GetAttempts(),
			}
			if l := r.GetLastReply(); l != nil {
				qr.LastReply = &queueReply{Code: l.GetCode(), Enhanced: l.GetEnhanced(), Text: l.GetText(), RemoteMTA: l.GetRemoteMta()}
			}
			qm.Recipients = append(qm.Recipients, qr)
		}
		out = append(out, qm)
	}
	return out
}

func routeText(r mtav1.Route) string {
	switch r {
	case mtav1.Route_ROUTE_LOCAL:
		return "local"
	case mtav1.Route_ROUTE_REMOTE:
		return "remote"
	}
	return "unknown"
}

func statusText(s mtav1.RecipientStatus) string {
	switch s {
	case mtav1.RecipientStatus_RECIPIENT_STATUS_PENDING:
		return "pending"
	case mtav1.RecipientStatus_RECIPIENT_STATUS_DEFERRED:
		return "deferred"
	case mtav1.RecipientStatus_RECIPIENT_STATUS_DELIVERED:
		return "delivered"
	case mtav1.RecipientStatus_RECIPIENT_STATUS_FAILED:
		return "failed"
	}
	return "unknown"
}

// stateText is a recipient's state for the table: "deferred, 2 tries,
// retry in 57m".
func stateText(m *mtav1.QueuedMessage, r *mtav1.QueuedRecipient, now time.Time) string {
	s := statusText(r.GetStatus())
	if n := r.GetAttempts(); n > 0 && r.GetStatus() != mtav1.RecipientStatus_RECIPIENT_STATUS_DELIVERED {
		s += fmt.Sprintf(", %d %s", n, plural(int(n), "try", "tries"))
	}
	if r.GetStatus() == mtav1.RecipientStatus_RECIPIENT_STATUS_DEFERRED {
		if next := m.GetNextAttemptUnix(); next != 0 && time.Unix(next, 0).After(now) {
			s += ", retry in " + formatAge(time.Unix(next, 0).Sub(now))
		} else {
			s += ", retry now"
		}
	}
	return s
}

// replyText is the last reply as an SMTP reply line, with the host that
// gave it: "451 4.3.0 greylisted (mx.remote.example)".
func replyText(l *mtav1.Reply) string {
	if l == nil {
		return "-"
	}
	s := fmt.Sprint(l.GetCode())
	if l.GetEnhanced() != "" {
		s += " " + l.GetEnhanced()
	}
	if l.GetText() != "" {
		s += " " + l.GetText()
	}
	if l.GetRemoteMta() != "" {
		s += " (" + l.GetRemoteMta() + ")"
	}
	return s
}

func senderText(s string) string {
	if s == "" {
		return "<>" // the null sender of bounces
	}
	return s
}

// printable replaces what a terminal would interpret (escape sequences,
// tabs that would break the table) in text that came from the network: a
// remote server's reply, an envelope address.
func printable(ss ...string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.Map(func(r rune) rune {
			if !unicode.IsPrint(r) {
				return '?'
			}
			return r
		}, s)
	}
	return out
}

// formatAge prints a duration the way an operator reads a queue: "45s",
// "12m", "3h5m", "2d4h".
func formatAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		return fmt.Sprintf("%dh%dm", h, int(d.Minutes())-60*h)
	}
	days := int(d.Hours()) / 24
	return fmt.Sprintf("%dd%dh", days, int(d.Hours())-24*days)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
