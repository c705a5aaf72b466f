package cli

import (
	"context"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

func authCommands() []command {
	return []command{
		{usage: "auth test ADDRESS [--password-stdin]", help: "exit 0 when this login would succeed", run: (*app).authTest},
		{usage: "lockout clear [--user ADDRESS] [--ip IP]", help: "end a brute-force lockout", run: (*app).lockoutClear},
	}
}

func (a *app) authTest(ctx context.Context, args []string) error {
	fs := a.newFlags("auth test ADDRESS [--password-stdin]")
	fromStdin := fs.Bool("password-stdin", false, "")
	insisted := fs.String("password", "", "")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	pw, err := a.password(*fromStdin, *insisted, false)
	if err != nil {
		return err
	}
	conn, err := a.authConn()
	if err != nil {
		return err
	}
	res, err := authv1.NewAuthServiceClient(conn).Authenticate(ctx, &authv1.AuthenticateRequest{
		Username: pos[0], Password: pw, Service: "mailctl",
	})
	if err != nil {
		return a.rpcError(err, "")
	}
	a.out("login ok: %s", res.GetUser().GetAddress())
	return nil
}

func (a *app) lockoutClear(ctx context.Context, args []string) error {
	fs := a.newFlags("lockout clear [--user ADDRESS] [--ip IP]")
	user := fs.String("user", "", "")
	ip := fs.String("ip", "", "")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	if *user == "" && *ip == "" {
		return usagef("lockout clear: give --user, --ip or both")
	}
	c, err := a.admin()
	if err != nil {
		return err
	}
	if _, err := c.ClearLockout(ctx, &authv1.ClearLockoutRequest{Username: *user, RemoteIp: *ip}); err != nil {
		return a.rpcError(err, "")
	}
	a.out("lockout cleared")
	return nil
}
