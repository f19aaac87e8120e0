package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/runtime/server"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// openStore opens the store of a data directory for reading. It refuses to
// create a new one: a missing store is a mistake in --data.
func openStore(cmd *cobra.Command, data, url string) (store.Store, error) {
	if url != "" {
		st, err := server.OpenStore(cmd.Context(), url, data, "", zerolog.Nop())
		if err != nil {
			return nil, &ExitError{Code: ExitFail, Err: err}
		}
		return st, nil
	}
	path := filepath.Join(data, "airlock.db")
	if _, err := os.Stat(path); err != nil {
		return nil, usageErr("no airlock store at %s: pass the --data directory the executor uses", path)
	}
	st, err := sqlite.Open(cmd.Context(), path, sqlite.Options{})
	if err != nil {
		return nil, &ExitError{Code: ExitFail, Err: err}
	}
	return st, nil
}

func (m *Main) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "read and verify the audit log"}
	var data, storeURL string
	var n int
	tail := &cobra.Command{
		Use:   "tail",
		Short: "print the last audit events as JSON lines (each with its hash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 || n > sqlite.MaxPage {
				return usageErr("-n %d: use 1 to %d", n, sqlite.MaxPage)
			}
			st, err := openStore(cmd, data, storeURL)
			if err != nil {
				return err
			}
			defer st.Close()
			recs, err := st.AuditTail(cmd.Context(), n)
			if err != nil {
				return &ExitError{Code: ExitFail, Err: fmt.Errorf("read the audit log: %w", err)}
			}
			for _, r := range recs {
				fmt.Fprintln(m.Stdout, withHash(r))
			}
			return nil
		},
	}
	tail.Flags().StringVar(&data, "data", server.DefaultDataDir, "the executor's data directory")
	tail.Flags().StringVar(&storeURL, "store", "", "the executors' PostgreSQL URL, when they share one")
	tail.Flags().IntVarP(&n, "lines", "n", 20, "how many events")

	var vdata, vstoreURL, vfile string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "verify the whole hash chain; names every edited, deleted or reordered event",
		Long: `verify walks the audit chain from its first event and checks every link. It
exits 1 and names the events when one was edited, deleted or reordered. It
prints the head (seq and hash): record it elsewhere, since deleting the newest
events leaves a shorter chain that is still valid. With --file it verifies an
unfiltered 'airlock audit export' instead of the store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if vfile != "" {
				return m.verifyFile(vfile)
			}
			st, err := openStore(cmd, vdata, vstoreURL)
			if err != nil {
				return err
			}
			defer st.Close()
			rep := store.Verify(cmd.Context(), st)
			fmt.Fprintln(m.Stdout, rep.String())
			if !rep.OK() {
				return &ExitError{Code: ExitFail}
			}
			return nil
		},
	}
	verify.Flags().StringVar(&vdata, "data", server.DefaultDataDir, "the executor's data directory")
	verify.Flags().StringVar(&vstoreURL, "store", "", "the executors' PostgreSQL URL, when they share one")
	verify.Flags().StringVar(&vfile, "file", "", "verify this 'airlock audit export' file instead of the store")
	cmd.AddCommand(tail, verify, m.auditExportCommand())
	return cmd
}

// withHash renders a stored event as one JSON line with its hash added.
func withHash(r store.Record) string {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &obj); err != nil {
		return string(r.Body)
	}
	h, _ := json.Marshal(r.Hash)
	obj["hash"] = h
	b, err := json.Marshal(obj)
	if err != nil {
		return string(r.Body)
	}
	return string(b)
}
