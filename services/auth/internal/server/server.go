// Package server implements the postcove.auth.v1 gRPC services:
// AuthService (logins, recipient resolution, sender permissions) for the
// mail services and AdminService (domains, users, aliases) for mailctl.
package server

import (
	"context"
	"log/slog"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/lockout"
	"github.com/postcove/postcove/services/auth/internal/password"
	"github.com/postcove/postcove/services/auth/internal/resolve"
	"github.com/postcove/postcove/services/auth/internal/store"
	"google.golang.org/grpc"
)

// Options are a Server's dependencies and settings.
type Options struct {
	Store    store.Store
	Hasher   *password.Hasher
	Lockout  lockout.Policy
	Resolver resolve.Options
	// MaxConcurrentLogins bounds password verifications and new hashes
	// (CreateUser, SetPassword) running at once, so that a login flood or
	// a bulk import queues instead of exhausting memory (each argon2id
	// computation holds its memory cost). Default 4.
	MaxConcurrentLogins int
	Logger              *slog.Logger
	Metrics             *Metrics // may be nil
}

// Server implements AuthService and AdminService.
type Server struct {
	authv1.UnimplementedAuthServiceServer
	authv1.UnimplementedAdminServiceServer

	store    store.Store
	hasher   *password.Hasher
	guard    *lockout.Guard
	resolver *resolve.Resolver
	logins   chan struct{} // semaphore of MaxConcurrentLogins slots: logins and hashing
	log      *slog.Logger
	metrics  *Metrics
}

var (
	_ authv1.AuthServiceServer  = (*Server)(nil)
	_ authv1.AdminServiceServer = (*Server)(nil)
)

// New returns a Server.
func New(o Options) *Server {
	if o.MaxConcurrentLogins <= 0 {
		o.MaxConcurrentLogins = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		store:    o.Store,
		hasher:   o.Hasher,
		guard:    lockout.New(o.Store, o.Lockout, nil),
		resolver: resolve.New(o.Store, o.Resolver),
		logins:   make(chan struct{}, o.MaxConcurrentLogins),
		log:      o.Logger,
		metrics:  o.Metrics,
	}
}

// Register adds both services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	authv1.RegisterAuthServiceServer(g, s)
	authv1.RegisterAdminServiceServer(g, s)
}

// PruneLockouts deletes login-failure counters too old to matter.
func (s *Server) PruneLockouts(ctx context.Context) error {
	n, err := s.guard.Prune(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("pruned old login-failure counters", "count", n)
	}
	return nil
}

// Ping reports whether the database answers, for the health check.
func (s *Server) Ping(ctx context.Context) error { return s.store.Ping(ctx) }
