package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

func aliasCommands() []command {
	return []command{
		{usage: "alias add SOURCE DEST[,DEST...]", help: "forward SOURCE (\"@domain\" = catch-all) to DESTs", run: (*app).aliasAdd},
		{usage: "alias del SOURCE", help: "delete an alias", run: (*app).aliasDel},
		{usage: "alias list [DOMAIN]", help: "list aliases", run: (*app).aliasList},
	}
}

func (a *app) aliasAdd(ctx context.Context, args []string) error {
	pos, err := parseArgs(a.newFlags("alias add SOURCE DEST[,DEST...]"), args, 2, 2)
	if err != nil {
		return err
	}
	var dests []string
	for _, d := range strings.Split(pos[1], ",") {
		if d = strings.TrimSpace(d); d != "" {
			dests = append(dests, d)
		}
	}
	if len(dests) == 0 {
		return usagef("alias add: no destination in %q", pos[1])
	}
	c, err := a.admin()
	if err != nil {
		return err
	}
	res, err := c.AddAlias(ctx, &authv1.AddAliasRequest{Source: pos[0], Destinations: dests})
	if err != nil {
		return a.rpcError(err, missingDomainHint)
	}
	a.out("alias %s -> %s", res.GetAlias().GetSource(), strings.Join(res.GetAlias().GetDestinations(), ","))
	return nil
}

func (a *app) aliasDel(ctx context.Context, args []string) error {
	pos, c, err := a.adminArgs(a.newFlags("alias del SOURCE"), args, 1, 1)
	if err != nil {
		return err
	}
	if _, err := c.DeleteAlias(ctx, &authv1.DeleteAliasRequest{Source: pos[0]}); err != nil {
		return a.rpcError(err, "list aliases with 'mailctl alias list'")
	}
	a.out("alias %s deleted", pos[0])
	return nil
}

func (a *app) aliasList(ctx context.Context, args []string) error {
	pos, c, err := a.adminArgs(a.newFlags("alias list [DOMAIN]"), args, 0, 1)
	if err != nil {
		return err
	}
	req := &authv1.ListAliasesRequest{}
	if len(pos) == 1 {
		req.Domain = pos[0]
	}
	res, err := c.ListAliases(ctx, req)
	if err != nil {
		return a.rpcError(err, "")
	}
	tw := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATIONS")
	for _, al := range res.GetAliases() {
		fmt.Fprintf(tw, "%s\t%s\n", al.GetSource(), strings.Join(al.GetDestinations(), ","))
	}
	return tw.Flush()
}
