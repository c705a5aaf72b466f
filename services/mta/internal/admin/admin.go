// Package admin implements postcove.mta.v1.QueueAdmin, the gRPC service
// behind `mailctl queue list|flush|delete`: the jobs of postfix's
// postqueue -p, postqueue -f / -i and postsuper -d, over the MTA's durable
// queue. It is served on the MTA's gRPC listener next to grpc.health.v1.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mtav1 "github.com/postcove/postcove/proto/postcove/mta/v1"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// Queue is what the service needs of the spool; *queue.Queue has it.
type Queue interface {
	// List returns the queued messages, oldest first.
	List(ctx context.Context) ([]queue.Message, error)
	// Flush makes message id's deferred recipients due now ("" = every
	// message); queue.ErrNotFound when there is no such message. A
	// message being delivered at that moment is flushed again once its
	// attempt ends, so the flush is never lost to a busy message.
	Flush(ctx context.Context, id string) error
	// Delete removes message id: queue.ErrNotFound, or queue.ErrBusy
	// while it is being delivered.
	Delete(ctx context.Context, id string) error
}

var _ Queue = (*queue.Queue)(nil)

// Server implements mtav1.QueueAdminServer.
type Server struct {
	mtav1.UnimplementedQueueAdminServer

	q   Queue
	log *slog.Logger
	// busyWait is how long DeleteMessage keeps at a message whose lock a
	// delivery worker holds, looking every busyPoll: a worker past its
	// attempt holds it only while it writes the new state.
	busyWait, busyPoll time.Duration
}

var _ mtav1.QueueAdminServer = (*Server)(nil)

// New returns a Server over q. log may be nil.
func New(q Queue, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{q: q, log: log, busyWait: defaultBusyWait, busyPoll: defaultBusyPoll}
}

// ListQueue returns every queued message with its recipients' state.
func (s *Server) ListQueue(ctx context.Context, _ *mtav1.ListQueueRequest) (*mtav1.ListQueueResponse, error) {
	msgs, err := s.q.List(ctx)
	if err != nil {
		return nil, s.queueError(ctx, "list", "", err)
	}
	out := make([]*mtav1.QueuedMessage, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, messageProto(m))
	}
	return &mtav1.ListQueueResponse{Messages: out}, nil
}

// FlushQueue makes deferred recipients due now: one message's, or every
// message's when the request names none. A message being delivered right
// now is retried as soon as that attempt ends (the queue remembers the
// flush), so there is nothing to wait for here.
func (s *Server) FlushQueue(ctx context.Context, req *mtav1.FlushQueueRequest) (*mtav1.FlushQueueResponse, error) {
	id := req.GetId()
	if err := s.q.Flush(ctx, id); err != nil {
		return nil, s.queueError(ctx, "flush", id, err)
	}
	if id == "" {
		id = "all"
	}
	s.log.InfoContext(ctx, "queue flushed by the operator", "id", id)
	return &mtav1.FlushQueueResponse{}, nil
}

// Defaults of Server.busyWait and busyPoll.
const (
	defaultBusyWait = 5 * time.Second
	defaultBusyPoll = 50 * time.Millisecond
)

// deleteWaiting deletes message id, waiting up to busyWait for a worker
// holding it to let go; ErrBusy if none did.
func (s *Server) deleteWaiting(ctx context.Context, id string) error {
	deadline := time.Now().Add(s.busyWait)
	for {
		err := s.q.Delete(ctx, id)
		if !errors.Is(err, queue.ErrBusy) || time.Now().After(deadline) {
			return err
		}
		if err := s.pause(ctx); err != nil {
			return err
		}
	}
}

// pause waits busyPoll, or until ctx is done.
func (s *Server) pause(ctx context.Context) error {
	t := time.NewTimer(s.busyPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// find returns queued message id, nil when it is not in the queue.
func (s *Server) find(ctx context.Context, id string) (*queue.Message, error) {
	msgs, err := s.q.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range msgs {
		if msgs[i].ID == id {
			return &msgs[i], nil
		}
	}
	return nil, nil
}

// DeleteMessage removes one message and returns what it was. A message
// being delivered is waited for a moment, then refused (FAILED_PRECONDITION).
func (s *Server) DeleteMessage(ctx context.Context, req *mtav1.DeleteMessageRequest) (*mtav1.DeleteMessageResponse, error) {
	id := req.GetId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	// Looked up first so that the operator is told what went; the queue
	// has no single-message read, and admin calls are rare enough for a
	// listing. The message may still go before Delete takes its lock
	// (delivered meanwhile): then Delete answers NotFound, as it should.
	m, err := s.find(ctx, id)
	if err != nil {
		return nil, s.queueError(ctx, "delete", id, err)
	}
	resp := &mtav1.DeleteMessageResponse{}
	if m != nil {
		resp.Message = messageProto(*m)
	}
	if err := s.deleteWaiting(ctx, id); err != nil {
		return nil, s.queueError(ctx, "delete", id, err)
	}
	return resp, nil
}

// queueError maps a queue error to its gRPC status. The definite answers
// get their own codes; anything else is the spool failing (a disk error,
// a volume gone), which may pass, so UNAVAILABLE, with the cause in the
// log rather than in the client's hands.
func (s *Server) queueError(ctx context.Context, op, id string, err error) error {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s: no queued message with ID %q", op, id)
	case errors.Is(err, queue.ErrBusy):
		return status.Errorf(codes.FailedPrecondition, "%s: message %s is being delivered right now", op, id)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.log.ErrorContext(ctx, "queue admin: spool error", "op", op, "id", id, "err", err)
	return status.Errorf(codes.Unavailable, "%s: the queue cannot be read or written now (see the mta log)", op)
}

// messageProto converts a queued message for the wire.
func messageProto(m queue.Message) *mtav1.QueuedMessage {
	out := &mtav1.QueuedMessage{
		Id:           m.ID,
		Sender:       m.Sender,
		ReceivedUnix: m.ReceivedAt.Unix(),
		SizeBytes:    m.Size,
		AuthUser:     m.AuthUser,
		Recipients:   make([]*mtav1.QueuedRecipient, 0, len(m.Recipients)),
	}
	if !m.Next.IsZero() {
		out.NextAttemptUnix = m.Next.Unix()
	}
	for _, r := range m.Recipients {
		pr := &mtav1.QueuedRecipient{
			Address:  r.Address,
			Route:    routeProto(r.Route),
			Status:   statusProto(r.Status),
			Attempts: int32(min(r.Attempts, 1<<31-1)),
		}
		if r.Orig != r.Address {
			pr.Orig = r.Orig
		}
		if r.Last != (queue.Result{}) {
			pr.LastReply = &mtav1.Reply{
				Code:      int32(r.Last.Code),
				Enhanced:  r.Last.Enhanced,
				Text:      r.Last.Text,
				RemoteMta: r.Last.RemoteMTA,
			}
		}
		out.Recipients = append(out.Recipients, pr)
	}
	return out
}

func routeProto(r queue.Route) mtav1.Route {
	switch r {
	case queue.RouteLocal:
		return mtav1.Route_ROUTE_LOCAL
	case queue.RouteRemote:
		return mtav1.Route_ROUTE_REMOTE
	}
	return mtav1.Route_ROUTE_UNSPECIFIED
}

func statusProto(s queue.Status) mtav1.RecipientStatus {
	switch s {
	case queue.Pending:
		return mtav1.RecipientStatus_RECIPIENT_STATUS_PENDING
	case queue.Deferred:
		return mtav1.RecipientStatus_RECIPIENT_STATUS_DEFERRED
	case queue.Delivered:
		return mtav1.RecipientStatus_RECIPIENT_STATUS_DELIVERED
	case queue.Failed:
		return mtav1.RecipientStatus_RECIPIENT_STATUS_FAILED
	}
	return mtav1.RecipientStatus_RECIPIENT_STATUS_UNSPECIFIED
}
