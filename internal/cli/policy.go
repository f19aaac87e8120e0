package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
)

func (m *Main) policyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "work with policies"}
	var manifests string
	test := &cobra.Command{
		Use:   "test DIR",
		Short: "run the PolicyTest cases in DIR against the policies in DIR",
		Long: `test loads every Policy and PolicyTest document in DIR and the tool manifests in
--manifests (for each tool's risk and own rules), decides every case, and
prints a diff for each case whose effect, rules or message differ from what it
expects. It exits 1 when any case fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tools, err := manifest.LoadDir(manifests)
			if err != nil {
				return &ExitError{Code: ExitFail, Err: fmt.Errorf("load manifests: %w", err)}
			}
			set, err := policy.LoadDir(args[0])
			if err != nil {
				return &ExitError{Code: ExitFail, Err: err}
			}
			eng, err := policy.Compile(set.Policies, tools, policy.Options{})
			if err != nil {
				return &ExitError{Code: ExitFail, Err: err}
			}
			byName := make(map[string]*manifest.Manifest, len(tools))
			for _, t := range tools {
				byName[t.Metadata.Name] = t
			}
			results := eng.RunTests(set.Tests, byName)
			failed := 0
			for _, r := range results {
				if r.Pass {
					fmt.Fprintf(m.Stdout, "PASS %s\n", r.Name)
					continue
				}
				failed++
				fmt.Fprintf(m.Stdout, "FAIL %s (%s:%d)\n", r.Name, r.File, r.Line)
				for _, l := range splitNonEmpty(r.Diff) {
					fmt.Fprintf(m.Stdout, "    %s\n", l)
				}
			}
			fmt.Fprintf(m.Stdout, "%d passed, %d failed\n", len(results)-failed, failed)
			if len(results) == 0 {
				return &ExitError{Code: ExitFail, Err: fmt.Errorf("no PolicyTest cases in %s", args[0])}
			}
			if failed > 0 {
				return &ExitError{Code: ExitFail}
			}
			return nil
		},
	}
	test.Flags().StringVar(&manifests, "manifests", "manifests/tools", "directory of the tool manifests")
	cmd.AddCommand(test)
	return cmd
}

func splitNonEmpty(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '\n' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
