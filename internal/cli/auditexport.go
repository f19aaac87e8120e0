package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/server"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// MaxExportLine bounds one line of an audit export read back by
// `audit verify --file`: an event body is at most audit.MaxBodySize.
const MaxExportLine = audit.MaxBodySize + 256

func (m *Main) auditExportCommand() *cobra.Command {
	var data, storeURL, output string
	var f store.AuditFilter
	var after int64
	cmd := &cobra.Command{
		Use:   "export",
		Short: "write audit events as JSON lines (each the exact hashed body plus its hash)",
		Long: `export writes the stored audit events that match the filters, in chain order,
one per line: the exact JSON body that was hashed, with "hash" appended as its
last key. An unfiltered export can be verified offline with
'airlock audit verify --file FILE'. --effect is the decision effect: allow,
deny or require_approval. --after SEQ starts after that sequence number.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch f.Effect {
			case "", "allow", "deny", "require_approval":
			default:
				return usageErr("--effect %q: use allow, deny or require_approval", f.Effect)
			}
			if after < 0 {
				return usageErr("--after %d: use 0 or a sequence number", after)
			}
			st, err := openStore(cmd, data, storeURL)
			if err != nil {
				return err
			}
			defer st.Close()
			out := m.Stdout
			var file *os.File
			if output != "" && output != "-" {
				// The log names every caller, task and tool: the file is the
				// operator's alone (0600, also when it existed with a wider
				// mode), and a symbolic link planted at the path (in /tmp, say)
				// is refused rather than followed to a file of its choosing.
				file, err = os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
				if err != nil {
					return usageErr("--output: %v (a symbolic link is refused: name the file itself)", err)
				}
				defer file.Close()
				if fi, err := file.Stat(); err == nil && fi.Mode().IsRegular() {
					if err := file.Chmod(0o600); err != nil {
						return &ExitError{Code: ExitFail, Err: fmt.Errorf("--output %s: make it private (0600): %w", output, err)}
					}
				}
				out = file
			}
			w := bufio.NewWriterSize(out, 64<<10)
			n := 0
			for {
				recs, err := st.AuditFiltered(cmd.Context(), after, f, sqlite.MaxPage)
				if err != nil {
					return &ExitError{Code: ExitFail, Err: fmt.Errorf("read the audit log after event %d: %w", after, err)}
				}
				for _, r := range recs {
					line, err := exportLine(r)
					if err != nil {
						return &ExitError{Code: ExitFail, Err: err}
					}
					w.Write(line)
					w.WriteByte('\n')
					after = r.Seq
					n++
				}
				if len(recs) < sqlite.MaxPage {
					break
				}
			}
			if err := w.Flush(); err != nil {
				return &ExitError{Code: ExitFail, Err: fmt.Errorf("write the export: %w", err)}
			}
			if file != nil {
				if err := file.Sync(); err != nil {
					return &ExitError{Code: ExitFail, Err: fmt.Errorf("write %s: %w", output, err)}
				}
				if err := file.Close(); err != nil {
					return &ExitError{Code: ExitFail, Err: fmt.Errorf("write %s: %w", output, err)}
				}
				fmt.Fprintf(m.Stderr, "exported %d audit events to %s\n", n, output)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&data, "data", server.DefaultDataDir, "the executor's data directory")
	fl.StringVar(&storeURL, "store", "", "the executors' PostgreSQL URL, when they share one")
	fl.StringVar(&f.TaskID, "task", "", "only events of this task")
	fl.StringVar(&f.Caller, "caller", "", "only events of this caller (SPIFFE ID)")
	fl.StringVar(&f.Tool, "tool", "", "only events of this tool")
	fl.StringVar(&f.Effect, "effect", "", "only decisions with this effect: allow, deny, require_approval")
	fl.Int64Var(&after, "after", 0, "start after this sequence number")
	fl.StringVarP(&output, "output", "o", "", "write to this file (mode 0600) instead of stdout")
	return cmd
}

// exportLine is the stored body with "hash" appended as its last key, so
// that the body is recovered byte for byte by cutting the suffix.
func exportLine(r store.Record) ([]byte, error) {
	body := bytes.TrimSpace(r.Body)
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, fmt.Errorf("audit event %d is not a JSON object: run `airlock audit verify`", r.Seq)
	}
	suffix := hashSuffix(r.Hash)
	line := make([]byte, 0, len(body)+len(suffix))
	line = append(line, body[:len(body)-1]...)
	if len(body) > 2 {
		line = append(line, ',')
	}
	return append(line, suffix...), nil
}

func hashSuffix(h string) string { return `"hash":"` + h + `"}` }

// readExport reads an export back into records: each line's body is the
// line without its hash suffix, and its seq is the one inside the body.
func readExport(rd io.Reader) func() (store.Record, bool, error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), MaxExportLine)
	lineNo := 0
	return func() (store.Record, bool, error) {
		for sc.Scan() {
			lineNo++
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var head struct {
				Seq  int64  `json:"seq"`
				Hash string `json:"hash"`
			}
			if err := json.Unmarshal(line, &head); err != nil {
				return store.Record{}, false, fmt.Errorf("line %d: not a JSON object: %w", lineNo, err)
			}
			suffix := hashSuffix(head.Hash)
			if !bytes.HasSuffix(line, []byte(suffix)) || len(line) < len(suffix)+1 {
				return store.Record{}, false, fmt.Errorf("line %d: \"hash\" is not the last key: export the log with `airlock audit export`", lineNo)
			}
			body := append([]byte{}, line[:len(line)-len(suffix)]...)
			if body[len(body)-1] == ',' {
				body[len(body)-1] = '}'
			} else {
				body = append(body, '}')
			}
			return store.Record{Seq: head.Seq, Hash: head.Hash, Body: body}, true, nil
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return store.Record{}, false, fmt.Errorf("line %d: over %d bytes", lineNo+1, MaxExportLine)
			}
			return store.Record{}, false, fmt.Errorf("line %d: %w", lineNo+1, err)
		}
		return store.Record{}, false, nil
	}
}

// verifyFile verifies an export written by `audit export`.
func (m *Main) verifyFile(path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return usageErr("--file: %v", err)
	}
	defer fh.Close()
	rep := audit.Verify(readExport(fh))
	fmt.Fprintln(m.Stdout, rep.String())
	if !rep.OK() {
		return &ExitError{Code: ExitFail}
	}
	return nil
}
