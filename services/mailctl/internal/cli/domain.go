package cli

import (
	"context"
	"flag"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

func domainCommands() []command {
	return []command{
		{usage: "domain add DOMAIN", help: "receive mail for DOMAIN", run: (*app).domainAdd},
		{usage: "domain del DOMAIN", help: "stop receiving mail for DOMAIN (it must have no users or aliases)", run: (*app).domainDel},
		{usage: "domain list", help: "list the domains", run: (*app).domainList},
	}
}

func (a *app) admin() (authv1.AdminServiceClient, error) {
	conn, err := a.authConn()
	if err != nil {
		return nil, err
	}
	return authv1.NewAdminServiceClient(conn), nil
}

func (a *app) domainAdd(ctx context.Context, args []string) error {
	pos, c, err := a.adminArgs(a.newFlags("domain add DOMAIN"), args, 1, 1)
	if err != nil {
		return err
	}
	res, err := c.CreateDomain(ctx, &authv1.CreateDomainRequest{Name: pos[0]})
	if err != nil {
		return a.rpcError(err, "")
	}
	a.out("domain %s added", res.GetDomain().GetName())
	return nil
}

func (a *app) domainDel(ctx context.Context, args []string) error {
	pos, c, err := a.adminArgs(a.newFlags("domain del DOMAIN"), args, 1, 1)
	if err != nil {
		return err
	}
	if _, err := c.DeleteDomain(ctx, &authv1.DeleteDomainRequest{Name: pos[0]}); err != nil {
		return a.rpcError(err, "delete its users (mailctl user del) and aliases (mailctl alias del) first")
	}
	a.out("domain %s deleted", pos[0])
	return nil
}

func (a *app) domainList(ctx context.Context, args []string) error {
	if _, err := parseArgs(a.newFlags("domain list"), args, 0, 0); err != nil {
		return err
	}
	c, err := a.admin()
	if err != nil {
		return err
	}
	res, err := c.ListDomains(ctx, &authv1.ListDomainsRequest{})
	if err != nil {
		return a.rpcError(err, "")
	}
	for _, d := range res.GetDomains() {
		a.out("%s", d.GetName())
	}
	return nil
}

// adminArgs parses a command's arguments and connects to AdminService: the
// opening of most commands.
func (a *app) adminArgs(fs *flag.FlagSet, args []string, min, max int) ([]string, authv1.AdminServiceClient, error) {
	pos, err := parseArgs(fs, args, min, max)
	if err != nil {
		return nil, nil, err
	}
	c, err := a.admin()
	return pos, c, err
}
