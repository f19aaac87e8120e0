package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

func (m *Main) manifestCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "manifest", Short: "work with tool manifests"}
	lint := &cobra.Command{
		Use:   "lint PATH...",
		Short: "check manifests (files or directories) and list every problem as file:line: message",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			problems := manifest.Lint(args...)
			if len(problems) == 0 {
				fmt.Fprintln(m.Stdout, "ok")
				return nil
			}
			for _, p := range problems {
				fmt.Fprintln(m.Stdout, p.String())
			}
			return &ExitError{Code: ExitFail, Err: fmt.Errorf("%d problem(s) found", len(problems))}
		},
	}
	cmd.AddCommand(lint)
	return cmd
}

func (m *Main) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			fmt.Fprintln(m.Stdout, "airlock", v)
		},
	}
}
