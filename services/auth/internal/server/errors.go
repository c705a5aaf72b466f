package server

import (
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/internal/address"
)

// storeError maps a store error to its gRPC status. Definite answers get
// their own codes; anything else means the database did not answer, which
// callers must treat as temporary (a mail server says 4xx, never 5xx), so
// it is UNAVAILABLE and the cause goes to the log, not to the client.
func storeError(log *slog.Logger, op string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s: %v", op, err)
	case errors.Is(err, store.ErrExists):
		return status.Errorf(codes.AlreadyExists, "%s: %v", op, err)
	case errors.Is(err, store.ErrDomainNotEmpty), errors.Is(err, store.ErrNoSuchDomain):
		return status.Errorf(codes.FailedPrecondition, "%s: %v", op, err)
	}
	log.Error("database error", "op", op, "err", err)
	return status.Errorf(codes.Unavailable, "%s: database unavailable", op)
}

// badAddress is the INVALID_ARGUMENT answer for an address that does not
// parse; the address package's message says what is wrong with it.
func badAddress(field string, err error) error {
	var ae *address.Error
	if errors.As(err, &ae) {
		return status.Errorf(codes.InvalidArgument, "%s: %s", field, ae.Error())
	}
	return status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
}

func required(field string) error {
	return status.Errorf(codes.InvalidArgument, "%s is required", field)
}
