package server

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/internal/address"
)

// Every successful change drops the resolver cache, so this instance
// answers with the new data at once; other instances catch up within the
// cache TTL.

// CreateDomain implements AdminService.CreateDomain.
func (s *Server) CreateDomain(ctx context.Context, req *authv1.CreateDomainRequest) (*authv1.CreateDomainResponse, error) {
	name, err := domainArg("name", req.GetName())
	if err != nil {
		return nil, err
	}
	d, err := s.store.CreateDomain(ctx, name)
	if err != nil {
		return nil, storeError(s.log, "create domain "+name, err)
	}
	s.changed("domain created", "domain", name)
	return &authv1.CreateDomainResponse{Domain: &authv1.Domain{Name: d.Name, CreatedUnix: d.CreatedAt.Unix()}}, nil
}

// DeleteDomain implements AdminService.DeleteDomain.
func (s *Server) DeleteDomain(ctx context.Context, req *authv1.DeleteDomainRequest) (*authv1.DeleteDomainResponse, error) {
	name, err := domainArg("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteDomain(ctx, name); err != nil {
		return nil, storeError(s.log, "delete domain "+name, err)
	}
	s.changed("domain deleted", "domain", name)
	return &authv1.DeleteDomainResponse{}, nil
}

// ListDomains implements AdminService.ListDomains.
func (s *Server) ListDomains(ctx context.Context, _ *authv1.ListDomainsRequest) (*authv1.ListDomainsResponse, error) {
	ds, err := s.store.ListDomains(ctx)
	if err != nil {
		return nil, storeError(s.log, "list domains", err)
	}
	out := &authv1.ListDomainsResponse{}
	for _, d := range ds {
		out.Domains = append(out.Domains, &authv1.Domain{Name: d.Name, CreatedUnix: d.CreatedAt.Unix()})
	}
	return out, nil
}

// CreateUser implements AdminService.CreateUser.
func (s *Server) CreateUser(ctx context.Context, req *authv1.CreateUserRequest) (*authv1.CreateUserResponse, error) {
	a, err := addressArg("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	if req.GetPassword() == "" {
		return nil, required("password")
	}
	if req.GetQuotaBytes() < 0 {
		return nil, status.Error(codes.InvalidArgument, "quota_bytes must not be negative")
	}
	hash, err := s.hashPassword(ctx, req.GetPassword())
	if err != nil {
		return nil, err
	}
	u, err := s.store.CreateUser(ctx, store.User{
		Address: a.String(), Domain: a.Domain, PasswordHash: hash,
		QuotaBytes: req.GetQuotaBytes(), Enabled: !req.GetDisabled(),
	})
	if err != nil {
		return nil, storeError(s.log, "create user "+a.String(), err)
	}
	s.changed("user created", "user", u.Address)
	return &authv1.CreateUserResponse{User: userProto(u)}, nil
}

// GetUser implements AdminService.GetUser.
func (s *Server) GetUser(ctx context.Context, req *authv1.GetUserRequest) (*authv1.GetUserResponse, error) {
	a, err := addressArg("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	u, err := s.store.GetUser(ctx, a.String())
	if err != nil {
		return nil, storeError(s.log, "get user "+a.String(), err)
	}
	return &authv1.GetUserResponse{User: userProto(u)}, nil
}

// DeleteUser implements AdminService.DeleteUser.
func (s *Server) DeleteUser(ctx context.Context, req *authv1.DeleteUserRequest) (*authv1.DeleteUserResponse, error) {
	a, err := addressArg("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteUser(ctx, a.String()); err != nil {
		return nil, storeError(s.log, "delete user "+a.String(), err)
	}
	s.changed("user deleted", "user", a.String())
	return &authv1.DeleteUserResponse{}, nil
}

// ListUsers implements AdminService.ListUsers.
func (s *Server) ListUsers(ctx context.Context, req *authv1.ListUsersRequest) (*authv1.ListUsersResponse, error) {
	domain, err := optionalDomainArg("domain", req.GetDomain())
	if err != nil {
		return nil, err
	}
	us, err := s.store.ListUsers(ctx, domain)
	if err != nil {
		return nil, storeError(s.log, "list users", err)
	}
	out := &authv1.ListUsersResponse{}
	for _, u := range us {
		out.Users = append(out.Users, userProto(u))
	}
	return out, nil
}

// SetPassword implements AdminService.SetPassword.
func (s *Server) SetPassword(ctx context.Context, req *authv1.SetPasswordRequest) (*authv1.SetPasswordResponse, error) {
	a, err := addressArg("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	if req.GetPassword() == "" {
		return nil, required("password")
	}
	hash, err := s.hashPassword(ctx, req.GetPassword())
	if err != nil {
		return nil, err
	}
	if err := s.store.SetPasswordHash(ctx, a.String(), hash); err != nil {
		return nil, storeError(s.log, "set password "+a.String(), err)
	}
	s.changed("password set", "user", a.String())
	return &authv1.SetPasswordResponse{}, nil
}

// SetQuota implements AdminService.SetQuota.
func (s *Server) SetQuota(ctx context.Context, req *authv1.SetQuotaRequest) (*authv1.SetQuotaResponse, error) {
	a, err := addressArg("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	if req.GetQuotaBytes() < 0 {
		return nil, status.Error(codes.InvalidArgument, "quota_bytes must not be negative")
	}
	if err := s.store.SetQuota(ctx, a.String(), req.GetQuotaBytes()); err != nil {
		return nil, storeError(s.log, "set quota "+a.String(), err)
	}
	s.changed("quota set", "user", a.String(), "quota_bytes", req.GetQuotaBytes())
	return &authv1.SetQuotaResponse{}, nil
}

// SetEnabled implements AdminService.SetEnabled.
func (s *Server) SetEnabled(ctx context.Context, req *authv1.SetEnabledRequest) (*authv1.SetEnabledResponse, error) {
	a, err := addressArg("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	if err := s.store.SetEnabled(ctx, a.String(), req.GetEnabled()); err != nil {
		return nil, storeError(s.log, "set enabled "+a.String(), err)
	}
	s.changed("user enabled changed", "user", a.String(), "enabled", req.GetEnabled())
	return &authv1.SetEnabledResponse{}, nil
}

// AddAlias implements AdminService.AddAlias.
func (s *Server) AddAlias(ctx context.Context, req *authv1.AddAliasRequest) (*authv1.AddAliasResponse, error) {
	src, err := sourceArg(req.GetSource())
	if err != nil {
		return nil, err
	}
	if len(req.GetDestinations()) == 0 {
		return nil, required("destinations")
	}
	dests := make([]string, 0, len(req.GetDestinations()))
	for _, d := range req.GetDestinations() {
		a, err := addressArg("destinations", d)
		if err != nil {
			return nil, err
		}
		dests = append(dests, a.String())
	}
	al, err := s.store.AddAliasDestinations(ctx, src.String(), src.Domain, dests)
	if err != nil {
		return nil, storeError(s.log, "add alias "+src.String(), err)
	}
	s.changed("alias added", "source", al.Source, "destinations", strings.Join(dests, ","))
	return &authv1.AddAliasResponse{Alias: &authv1.Alias{Source: al.Source, Destinations: al.Destinations}}, nil
}

// DeleteAlias implements AdminService.DeleteAlias.
func (s *Server) DeleteAlias(ctx context.Context, req *authv1.DeleteAliasRequest) (*authv1.DeleteAliasResponse, error) {
	src, err := sourceArg(req.GetSource())
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteAlias(ctx, src.String()); err != nil {
		return nil, storeError(s.log, "delete alias "+src.String(), err)
	}
	s.changed("alias deleted", "source", src.String())
	return &authv1.DeleteAliasResponse{}, nil
}

// ListAliases implements AdminService.ListAliases.
func (s *Server) ListAliases(ctx context.Context, req *authv1.ListAliasesRequest) (*authv1.ListAliasesResponse, error) {
	domain, err := optionalDomainArg("domain", req.GetDomain())
	if err != nil {
		return nil, err
	}
	as, err := s.store.ListAliases(ctx, domain)
	if err != nil {
		return nil, storeError(s.log, "list aliases", err)
	}
	out := &authv1.ListAliasesResponse{}
	for _, a := range as {
		out.Aliases = append(out.Aliases, &authv1.Alias{Source: a.Source, Destinations: a.Destinations})
	}
	return out, nil
}

// ClearLockout implements AdminService.ClearLockout.
func (s *Server) ClearLockout(ctx context.Context, req *authv1.ClearLockoutRequest) (*authv1.ClearLockoutResponse, error) {
	if req.GetUsername() == "" && req.GetRemoteIp() == "" {
		return nil, status.Error(codes.InvalidArgument, "username or remote_ip is required")
	}
	account := req.GetUsername()
	if a, err := address.Parse(account); err == nil {
		account = a.String()
	}
	ip, err := ipKey(req.GetRemoteIp())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "remote_ip: %v", err)
	}
	if err := s.guard.Clear(ctx, ip, account); err != nil {
		return nil, storeError(s.log, "clear lockout", err)
	}
	s.log.Info("lockout cleared", "user", account, "ip", ip)
	return &authv1.ClearLockoutResponse{}, nil
}

func (s *Server) changed(msg string, args ...any) {
	s.resolver.Invalidate()
	s.log.Info(msg, args...)
}

func addressArg(field, v string) (address.Address, error) {
	if v == "" {
		return address.Address{}, required(field)
	}
	a, err := address.Parse(v)
	if err != nil {
		return address.Address{}, badAddress(field, err)
	}
	return a, nil
}

func sourceArg(v string) (address.Address, error) {
	if v == "" {
		return address.Address{}, required("source")
	}
	a, err := address.ParseSource(v)
	if err != nil {
		return address.Address{}, badAddress("source", err)
	}
	return a, nil
}

func domainArg(field, v string) (string, error) {
	if v == "" {
		return "", required(field)
	}
	d, err := address.ParseDomain(v)
	if err != nil {
		return "", badAddress(field, err)
	}
	return d, nil
}

func optionalDomainArg(field, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	return domainArg(field, v)
}
