package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

func userCommands() []command {
	return []command{
		{usage: "user add ADDRESS [--password-stdin] [--quota SIZE] [--disabled]", help: "create a mailbox user", run: (*app).userAdd},
		{usage: "user passwd ADDRESS [--password-stdin]", help: "change a user's password", run: (*app).userPasswd},
		{usage: "user del ADDRESS", help: "delete a user (mail on disk is kept)", run: (*app).userDel},
		{usage: "user list [DOMAIN]", help: "list users", run: (*app).userList},
		{usage: "user quota ADDRESS SIZE", help: "set the storage quota (e.g. 2G, 500M, 0 = unlimited)", run: (*app).userQuota},
		{usage: "user enable ADDRESS", help: "allow logins", run: (*app).userEnable},
		{usage: "user disable ADDRESS", help: "refuse logins (mail is still received)", run: (*app).userDisable},
	}
}

const missingDomainHint = "create the domain first with 'mailctl domain add DOMAIN'"

func (a *app) userAdd(ctx context.Context, args []string) error {
	fs := a.newFlags("user add ADDRESS [--password-stdin] [--quota SIZE] [--disabled]")
	fromStdin := fs.Bool("password-stdin", false, "")
	insisted := fs.String("password", "", "")
	quota := fs.String("quota", "0", "")
	disabled := fs.Bool("disabled", false, "")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	q, err := parseSize(*quota)
	if err != nil {
		return usagef("--quota: %v", err)
	}
	pw, err := a.password(*fromStdin, *insisted, true)
	if err != nil {
		return err
	}
	c, err := a.admin()
	if err != nil {
		return err
	}
	res, err := c.CreateUser(ctx, &authv1.CreateUserRequest{Address: pos[0], Password: pw, QuotaBytes: q, Disabled: *disabled})
	if err != nil {
		return a.rpcError(err, missingDomainHint)
	}
	a.out("user %s added", res.GetUser().GetAddress())
	return nil
}

func (a *app) userPasswd(ctx context.Context, args []string) error {
	fs := a.newFlags("user passwd ADDRESS [--password-stdin]")
	fromStdin := fs.Bool("password-stdin", false, "")
	insisted := fs.String("password", "", "")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	pw, err := a.password(*fromStdin, *insisted, true)
	if err != nil {
		return err
	}
	c, err := a.admin()
	if err != nil {
		return err
	}
	if _, err := c.SetPassword(ctx, &authv1.SetPasswordRequest{Address: pos[0], Password: pw}); err != nil {
		return a.rpcError(err, "list users with 'mailctl user list'")
	}
	a.out("password of %s changed", pos[0])
	return nil
}

func (a *app) userDel(ctx context.Context, args []string) error {
	pos, c, err := a.adminArgs(a.newFlags("user del ADDRESS"), args, 1, 1)
	if err != nil {
		return err
	}
	if _, err := c.DeleteUser(ctx, &authv1.DeleteUserRequest{Address: pos[0]}); err != nil {
		return a.rpcError(err, "list users with 'mailctl user list'")
	}
	a.out("user %s deleted (its mail on disk is kept)", pos[0])
	return nil
}

func (a *app) userList(ctx context.Context, args []string) error {
	pos, c, err := a.adminArgs(a.newFlags("user list [DOMAIN]"), args, 0, 1)
	if err != nil {
		return err
	}
	req := &authv1.ListUsersRequest{}
	if len(pos) == 1 {
		req.Domain = pos[0]
	}
	res, err := c.ListUsers(ctx, req)
	if err != nil {
		return a.rpcError(err, "")
	}
	tw := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tQUOTA\tLOGIN")
	for _, u := range res.GetUsers() {
		login := "enabled"
		if !u.GetEnabled() {
			login = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.GetAddress(), formatSize(u.GetQuotaBytes()), login)
	}
	return tw.Flush()
}

func (a *app) userQuota(ctx context.Context, args []string) error {
	pos, err := parseArgs(a.newFlags("user quota ADDRESS SIZE"), args, 2, 2)
	if err != nil {
		return err
	}
	q, err := parseSize(pos[1])
	if err != nil {
		return usagef("SIZE: %v", err)
	}
	c, err := a.admin()
	if err != nil {
		return err
	}
	if _, err := c.SetQuota(ctx, &authv1.SetQuotaRequest{Address: pos[0], QuotaBytes: q}); err != nil {
		return a.rpcError(err, "list users with 'mailctl user list'")
	}
	a.out("quota of %s set to %s", pos[0], formatSize(q))
	return nil
}

func (a *app) userEnable(ctx context.Context, args []string) error {
	return a.setEnabled(ctx, "user enable ADDRESS", args, true)
}

func (a *app) userDisable(ctx context.Context, args []string) error {
	return a.setEnabled(ctx, "user disable ADDRESS", args, false)
}

func (a *app) setEnabled(ctx context.Context, usage string, args []string, enabled bool) error {
	pos, c, err := a.adminArgs(a.newFlags(usage), args, 1, 1)
	if err != nil {
		return err
	}
	if _, err := c.SetEnabled(ctx, &authv1.SetEnabledRequest{Address: pos[0], Enabled: enabled}); err != nil {
		return a.rpcError(err, "list users with 'mailctl user list'")
	}
	state := "enabled"
	if !enabled {
		state = "disabled"
	}
	a.out("logins for %s %s", pos[0], state)
	return nil
}
