package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/planner-api/client"
)

// approvalsOpenCommand is `airlock approvals open`: it asks the executor
// for a one-time link to its approvals web page and prints it.
func (m *Main) approvalsOpenCommand() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "open",
		Short: "print a one-time link to the executor's approvals web page",
		Long: `open asks the executor (started with --approvals-listen) for a link to its
approvals page, bound to your identity, and prints it. Open it in a browser on
the executor's machine within two minutes; it works once. The page then acts
as you: approvals you grant or deny there are recorded under your SPIFFE ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				url, exp, err := c.OpenApprovalsPage(ctx)
				if err != nil {
					return cf.rpcErr(err)
				}
				fmt.Fprintln(m.Stdout, url)
				fmt.Fprintf(m.Stderr, "open it within %s (until %s); it works once\n", time.Until(exp).Round(time.Second), exp.Local().Format(time.TimeOnly))
				return nil
			})
		},
	}
	m.addClientFlags(cmd, &cf)
	return cmd
}
