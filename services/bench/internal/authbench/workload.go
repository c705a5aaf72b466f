package authbench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/dovecotauth"
	"github.com/postcove/postcove/services/bench/internal/load"
)

// op is an operation both servers answer.
type op int

const (
	// opAuthenticate is a login with a correct password: postcove's
	// Authenticate, dovecot's AUTH PLAIN on auth-client.
	opAuthenticate op = iota
	// opResolve is a recipient lookup, 10% of them for addresses nobody
	// has: postcove's ResolveRecipient, dovecot's USER on auth-userdb (what
	// its LMTP server asks for each RCPT TO).
	opResolve
)

func (o op) String() string {
	if o == opAuthenticate {
		return "Authenticate"
	}
	return "ResolveRecipient"
}

// unknownShare is the fraction of recipient lookups for unknown addresses.
const unknownShare = 0.10

// request is one call's input: a user (with the password), or an address
// nobody has.
type request struct {
	user    *user
	unknown string
}

// address is the recipient the request looks up.
func (r request) address() string {
	if r.user != nil {
		return r.user.address
	}
	return r.unknown
}

// workload draws the requests of one run. Worker w's generator is seeded
// with (seed, w), so both servers get the same sequence of requests at the
// same concurrency: the same users, the same unknown addresses, in the
// same order.
type workload struct {
	op    op
	users *userSet
	seed  uint64
}

// generator returns worker's request source; only that worker may call it.
func (wl workload) generator(worker int) func() request {
	rng := rand.New(rand.NewPCG(wl.seed, uint64(worker)))
	return func() request {
		if wl.op == opResolve && rng.Float64() < unknownShare {
			return request{unknown: wl.users.unknown[rng.IntN(len(wl.users.unknown))]}
		}
		return request{user: &wl.users.users[rng.IntN(len(wl.users.users))]}
	}
}

// generators returns one generator per worker.
func (wl workload) generators(conc int) []func() request {
	g := make([]func() request, conc)
	for i := range g {
		g[i] = wl.generator(i)
	}
	return g
}

// postcoveCall returns the Call that sends wl to postcove. Every answer is
// checked: a wrong one is an error, never a fast call.
func postcoveCall(pc *postcove, wl workload, conc int) load.Call {
	gens := wl.generators(conc)
	switch wl.op {
	case opAuthenticate:
		return func(ctx context.Context, worker int) error {
			r := gens[worker]()
			resp, err := pc.auth.Authenticate(ctx, &authv1.AuthenticateRequest{
				Username: r.user.address, Password: r.user.password, Service: "imap", RemoteIp: "127.0.0.1",
			})
			if err != nil {
				return fmt.Errorf("Authenticate(%s): %w", r.user.address, err)
			}
			if got := resp.GetUser().GetAddress(); got != r.user.address {
				return fmt.Errorf("Authenticate(%s) = user %q", r.user.address, got)
			}
			return nil
		}
	default:
		return func(ctx context.Context, worker int) error {
			r := gens[worker]()
			resp, err := pc.auth.ResolveRecipient(ctx, &authv1.ResolveRecipientRequest{Address: r.address()})
			if err != nil {
				return fmt.Errorf("ResolveRecipient(%s): %w", r.address(), err)
			}
			if r.user == nil {
				if resp.GetResult() != authv1.ResolveRecipientResponse_RESULT_UNKNOWN_USER {
					return fmt.Errorf("ResolveRecipient(%s) = %v, want RESULT_UNKNOWN_USER", r.address(), resp.GetResult())
				}
				return nil
			}
			mb := resp.GetMailboxes()
			if resp.GetResult() != authv1.ResolveRecipientResponse_RESULT_DELIVER || len(mb) != 1 || mb[0].GetAddress() != r.user.address {
				return fmt.Errorf("ResolveRecipient(%s) = %v %v, want delivery to itself", r.address(), resp.GetResult(), mb)
			}
			return nil
		}
	}
}

// dovecotCall opens one connection per worker to the socket the operation
// uses and returns the Call that sends wl over them, and a function that
// closes them. CPIDs are unique per connection: the protocol wants one per
// client process, and each connection stands for one login process.
func dovecotCall(ctx context.Context, srv *dovecot.Server, wl workload, conc int) (load.Call, func() error, error) {
	gens := wl.generators(conc)
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	switch wl.op {
	case opAuthenticate:
		clients := make([]*dovecotauth.Client, conc)
		// pid<<10 | worker: distinct for up to 1024 workers, and below
		// 2^32 since Linux pids are below 2^22.
		base := uint32(os.Getpid()) << 10
		for i := range clients {
			c, err := dovecotauth.DialClient(ctx, srv.Socket("auth-client"), base|uint32(i%1024))
			if err != nil {
				return nil, nil, errors.Join(err, closeAll())
			}
			clients[i] = c
			closers = append(closers, c.Close)
		}
		return func(ctx context.Context, worker int) error {
			r := gens[worker]()
			res, err := clients[worker].AuthPlain(ctx, dovecotauth.PlainRequest{
				Service: "imap", User: r.user.address, Password: r.user.password, RemoteIP: "127.0.0.1",
			})
			if err != nil {
				return fmt.Errorf("AUTH PLAIN %s: %w", r.user.address, err)
			}
			if !res.OK {
				return fmt.Errorf("AUTH PLAIN %s: FAIL %q", r.user.address, res.Params)
			}
			return nil
		}, closeAll, nil
	default:
		conns := make([]*dovecotauth.Userdb, conc)
		for i := range conns {
			c, err := dovecotauth.DialUserdb(ctx, srv.Socket("auth-userdb"))
			if err != nil {
				return nil, nil, errors.Join(err, closeAll())
			}
			conns[i] = c
			closers = append(closers, c.Close)
		}
		return func(ctx context.Context, worker int) error {
			r := gens[worker]()
			res, err := conns[worker].User(ctx, r.address(), "lmtp")
			if err != nil {
				return fmt.Errorf("USER %s: %w", r.address(), err)
			}
			if want := r.user != nil; res.Found != want {
				return fmt.Errorf("USER %s: found %v, want %v", r.address(), res.Found, want)
			}
			return nil
		}, closeAll, nil
	}
}
