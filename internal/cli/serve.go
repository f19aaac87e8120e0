package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/airlock-dev/airlock/runtime/server"
)

func (m *Main) serveCommand() *cobra.Command {
	var o server.Options
	var level, format string
	var sf svidFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "serve the planner API on a unix socket, and over SPIFFE mTLS with --listen",
		Long: `serve loads every manifest and policy (refusing to start on any problem, each
listed as file:line: message), opens the store under --data, and serves the
planner API on --socket (mode 0600). SIGTERM or SIGINT drains: in-flight calls
finish or reach their deadline and the audit log is flushed.

On the socket a caller is identified by the kernel, as
spiffe://airlock.local/uid/UID. With --listen HOST:PORT the same API is also
served over mTLS with X.509-SVIDs: the executor's SVID and the trust bundles
come from the SPIFFE Workload API (--spiffe-socket, default env
SPIFFE_ENDPOINT_SOCKET) or, for development, from files (--svid-cert,
--svid-key, --svid-bundle; see 'airlock dev ca'). A client is admitted when its
SVID verifies against the bundle and its SPIFFE ID is in an
--allow-trust-domain or matches an --allow-id-pattern (globs per path segment:
spiffe://example.org/agent/*); that ID is then the caller policy sees. IDs
under spiffe://airlock.local/uid/ are never admitted over mTLS. A non-loopback
--listen address is refused unless --listen-public is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(m.Stderr, level, format)
			if err != nil {
				return usageErr("%v", err)
			}
			o.Logger = log
			if o.Listen != "" {
				if o.SVID, err = m.svidConfig(cmd, &sf); err != nil {
					return usageErr("%v", err)
				}
			} else {
				for _, f := range []string{"listen-public", "spiffe-socket", "svid-cert", "svid-key", "svid-bundle", "allow-trust-domain", "allow-id-pattern"} {
					if cmd.Flags().Changed(f) {
						return usageErr("--%s configures the mTLS listener: pass --listen HOST:PORT as well", f)
					}
				}
			}
			if !cmd.Flags().Changed("idempotency-ttl") {
				// The default: 24h, or longer when --approval-ttl needs it.
				o.IdempotencyTTL = 0
			}
			if err := server.Run(cmd.Context(), o); err != nil {
				return &ExitError{Code: ExitFail, Err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Socket, "socket", "", "unix socket to serve on (default DATA/airlock.sock)")
	f.StringVar(&o.ManifestsDir, "manifests", "manifests/tools", "directory of tool manifests")
	f.StringVar(&o.PoliciesDir, "policies", "manifests/policies", "directory of policies")
	f.StringVar(&o.DataDir, "data", server.DefaultDataDir, "data directory: store, caches, workspaces")
	f.DurationVar(&o.DrainTimeout, "drain-timeout", server.DefaultDrainTimeout, "how long SIGTERM waits for in-flight calls")
	f.StringVar(&o.CacheDir, "cache-dir", "", "compiled-module cache (default DATA/cache/wazero)")
	f.IntVar(&o.MaxInstances, "max-instances", 0, "bound on concurrent sandbox instances (0: 64)")
	f.StringVar(&o.CredentialsFile, "credentials", "", "credential sources file (kind: Credentials); none by default")
	f.StringVar(&o.LeaseKeyFile, "lease-key-file", "", "key sealing credential lease references (32 bytes, raw or hex, mode 0600): the same file for every executor of one --store; required with --store postgres://... and --credentials")
	f.StringVar(&o.CredentialsListen, "credentials-listen", "", "serve the jwt sources' JWKS and introspection on this loopback host:port")
	f.StringVar(&o.Store, "store", "", "PostgreSQL URL (postgres://...) shared by several executors; default SQLite under --data (password via PGPASSWORD or ~/.pgpass)")
	f.StringVar(&o.StoreSync, "store-sync", "full", "SQLite synchronous mode: full (durable on power loss) or normal")
	f.StringVar(&o.Listen, "listen", "", "also serve over SPIFFE mTLS on this TCP address, like 127.0.0.1:8443 (port 0: a free port, logged)")
	f.BoolVar(&o.ListenPublic, "listen-public", false, "allow a --listen address that is not loopback")
	m.addSVIDFlags(cmd, &sf)
	f.StringArrayVar(&o.Allow.TrustDomains, "allow-trust-domain", nil, "admit mTLS callers from this trust domain (repeatable)")
	f.StringArrayVar(&o.Allow.Patterns, "allow-id-pattern", nil, "admit mTLS callers whose SPIFFE ID matches this pattern, like spiffe://example.org/agent/* (repeatable)")
	f.StringArrayVar(&o.Auditors, "auditors", nil, "SPIFFE ID pattern of callers that may read the audit log over gRPC (repeatable; default: this process's uid and root on the socket)")
	f.StringVar(&o.ApprovalsListen, "approvals-listen", "", "serve the approvals web page on this loopback host:port, like 127.0.0.1:0 (off by default)")
	f.DurationVar(&o.ApprovalTTL, "approval-ttl", time.Hour, "how long an approval stays pending before it expires (never past its task's expiry)")
	f.DurationVar(&o.ApprovalWaitMax, "approval-wait-max", 5*time.Minute, "the longest a Submit or GetIntent may wait for an approval decision")
	f.DurationVar(&o.ApprovalPoll, "approval-poll", 500*time.Millisecond, "how often approved intents nobody waits for are run and expired approvals settled")
	f.StringVar(&o.ExecutorID, "executor-id", "", "this executor's id in audit events, unique among the executors of one --store; keep it across restarts so that a restart settles at once the intents its previous run left without an outcome (letters, digits, . _ : -; default: hostname and a random suffix)")
	f.DurationVar(&o.IdempotencyTTL, "idempotency-ttl", 24*time.Hour, "how long an idempotency key stays bound to its intent; older keys are purged and a key submitted again after it starts a new intent (at least 1h, and longer than --approval-ttl plus the stale-claim time and a margin)")
	f.StringSliceVar(&o.Approvers, "approvers", nil, "comma-separated SPIFFE ID patterns of who may list every approval, approve and deny, like spiffe://example.org/human/* (default: this process's uid and root on the socket; nobody decides their own intent)")
	f.StringArrayVar(&o.PluginAcceptMissing, "plugin-accept-missing", nil, "run native plugin tools even though this OS isolation layer is unavailable here, like landlock (repeatable; weaker isolation: see docs/operator-guide.md)")
	f.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&format, "log-format", "auto", "log format: json, console, or auto (console on a terminal)")
	return cmd
}

// maxLogLine bounds every log line the daemon writes.
const maxLogLine = 16 << 10

type boundedWriter struct{ w *os.File }

func (b boundedWriter) Write(p []byte) (int, error) {
	n := len(p)
	if n > maxLogLine {
		q := make([]byte, 0, maxLogLine+1)
		q = append(q, p[:maxLogLine-len("…(truncated)")]...)
		q = append(q, "…(truncated)\n"...)
		p = q
	}
	_, err := b.w.Write(p)
	return n, err
}

func newLogger(w any, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	out := w.(interface{ Write([]byte) (int, error) })
	if f, ok := w.(*os.File); ok {
		out = boundedWriter{f}
		if format == "auto" && term.IsTerminal(int(f.Fd())) {
			format = "console"
		}
	}
	switch format {
	case "auto", "json":
	case "console":
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: use json, console or auto", format)
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}
