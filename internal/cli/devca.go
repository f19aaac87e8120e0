package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/devca"
	"github.com/airlock-dev/airlock/runtime/server"
)

func (m *Main) devCommand() *cobra.Command {
	dev := &cobra.Command{Use: "dev", Short: "development helpers (not for production)"}
	ca := &cobra.Command{
		Use:   "ca",
		Short: "a local CA issuing X.509-SVIDs to files, for mTLS without SPIRE",
		Long: `ca is a development certificate authority: 'init' creates an ECDSA P-256 CA
for a trust domain, 'issue' writes an X.509-SVID (svid.pem, svid.key, bundle.pem)
that 'airlock serve --listen' and the client commands (--addr) accept through
--svid-cert, --svid-key and --svid-bundle. Nothing attests the workload and the
keys are files: use SPIRE (--spiffe-socket) beyond development.`,
	}
	defDir := filepath.Join(server.DefaultDataDir, "devca")

	var dir, td string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "create a development CA",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := devca.Init(dir, td, time.Now())
			if err != nil {
				return &ExitError{Code: ExitFail, Err: err}
			}
			fmt.Fprintf(m.Stdout, "created a CA for spiffe://%s in %s (key %s, mode 0600), valid until %s\n",
				c.TrustDomain.Name(), dir, filepath.Join(dir, devca.CAKeyFile), c.Cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", defDir, "CA directory (created 0700)")
	initCmd.Flags().StringVar(&td, "trust-domain", devca.DefaultTrustDomain, "trust domain of the CA")

	var idir, out string
	var ttl time.Duration
	issue := &cobra.Command{
		Use:   "issue [flags] SPIFFE_ID",
		Short: "issue an X.509-SVID to files: svid.pem (chain), svid.key (0600), bundle.pem",
		Long: `issue signs a short-lived X.509-SVID for SPIFFE_ID (for example
spiffe://airlock.local/agent/summariser) and writes svid.pem, svid.key (mode
0600) and bundle.pem into --out (default CA_DIR/svid/TRUST_DOMAIN/PATH).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := devca.Load(idir)
			if err != nil {
				return &ExitError{Code: ExitFail, Err: err}
			}
			s, err := c.Issue(args[0], ttl, time.Now())
			if err != nil {
				return usageErr("%v", err)
			}
			dst := out
			if dst == "" {
				dst = filepath.Join(idir, "svid", s.ID.TrustDomain().Name(), filepath.FromSlash(strings.TrimPrefix(s.ID.Path(), "/")))
			}
			cert, key, bundle, err := s.Write(dst)
			if err != nil {
				return &ExitError{Code: ExitFail, Err: err}
			}
			fmt.Fprintf(m.Stdout, "issued %s, valid until %s\n  --svid-cert %s --svid-key %s --svid-bundle %s\n",
				s.ID, s.NotAfter.UTC().Format(time.RFC3339), cert, key, bundle)
			return nil
		},
	}
	issue.Flags().StringVar(&idir, "dir", defDir, "CA directory")
	issue.Flags().StringVar(&out, "out", "", "output directory (default CA_DIR/svid/TRUST_DOMAIN/PATH)")
	issue.Flags().DurationVar(&ttl, "ttl", devca.DefaultSVIDTTL, fmt.Sprintf("lifetime of the SVID (at most %s)", devca.MaxSVIDTTL))

	ca.AddCommand(initCmd, issue)
	dev.AddCommand(ca)
	return dev
}
