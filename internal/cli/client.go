package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/server"
)

// clientFlags are the connection flags of every client command.
type clientFlags struct {
	socket   string
	addr     string
	svid     svidFlags
	serverID string
	timeout  time.Duration
	src      identity.Source // opened by connect for --addr; closed with the client
	m        *Main
	cmd      *cobra.Command
}

func (m *Main) addClientFlags(cmd *cobra.Command, cf *clientFlags) {
	cf.m, cf.cmd = m, cmd
	def := m.env("AIRLOCK_SOCKET", filepath.Join(server.DefaultDataDir, server.DefaultSocketName))
	f := cmd.Flags()
	f.StringVar(&cf.socket, "socket", def, "executor socket (env AIRLOCK_SOCKET); not used with --addr")
	f.StringVar(&cf.addr, "addr", m.env("AIRLOCK_ADDR", ""), "executor mTLS address HOST:PORT (env AIRLOCK_ADDR), instead of --socket; needs an SVID")
	m.addSVIDFlags(cmd, &cf.svid)
	f.StringVar(&cf.serverID, "server-id", "", "SPIFFE ID or pattern the executor must present with --addr (default: any ID in the client SVID's trust domain)")
	f.DurationVar(&cf.timeout, "timeout", 2*time.Minute, "give up on the request after this long")
}

// svidFlags are the flags naming an X.509-SVID source.
type svidFlags struct {
	socket    string
	cert, key string
	bundles   []string
}

func (m *Main) addSVIDFlags(cmd *cobra.Command, sf *svidFlags) {
	f := cmd.Flags()
	f.StringVar(&sf.socket, "spiffe-socket", "", "SPIFFE Workload API socket for the SVID (default env "+workloadapi.SocketEnv+")")
	f.StringVar(&sf.cert, "svid-cert", "", "X.509-SVID certificate chain file (PEM), instead of the Workload API (see: airlock dev ca issue)")
	f.StringVar(&sf.key, "svid-key", "", "X.509-SVID private key file (PEM)")
	f.StringArrayVar(&sf.bundles, "svid-bundle", nil, "trust bundle file [TRUST_DOMAIN=]PATH (repeatable; default trust domain: the SVID's)")
}

// svidConfig returns the SVIDConfig the flags describe: files when any file
// flag is set, else the Workload API from --spiffe-socket or the
// environment.
func (m *Main) svidConfig(cmd *cobra.Command, sf *svidFlags) (identity.SVIDConfig, error) {
	files := sf.cert != "" || sf.key != "" || len(sf.bundles) > 0
	if files {
		if cmd.Flags().Changed("spiffe-socket") {
			return identity.SVIDConfig{}, errors.New("pass either --spiffe-socket or --svid-cert/--svid-key/--svid-bundle, not both")
		}
		return identity.SVIDConfig{CertFile: sf.cert, KeyFile: sf.key, Bundles: sf.bundles}, nil
	}
	sock := sf.socket
	if sock == "" {
		sock = m.env(workloadapi.SocketEnv, "")
	}
	return identity.SVIDConfig{WorkloadAPI: sock}, nil
}

// do runs f with a connected client and the request's deadline, and
// releases both.
func (cf *clientFlags) do(cmd *cobra.Command, f func(ctx context.Context, c *client.Client) error) error {
	c, ctx, cancel, err := cf.connect(cmd.Context())
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	return f(ctx, c)
}

// connect dials the executor; connection problems are usage errors (exit 2).
func (cf *clientFlags) connect(ctx context.Context) (*client.Client, context.Context, context.CancelFunc, error) {
	var c *client.Client
	var err error
	if cf.addr == "" {
		for _, f := range []string{"spiffe-socket", "svid-cert", "svid-key", "svid-bundle", "server-id"} {
			if cf.cmd.Flags().Changed(f) {
				return nil, nil, nil, usageErr("--%s is for the mTLS listener: pass --addr HOST:PORT as well", f)
			}
		}
		c, err = client.Dial(ctx, cf.socket)
	} else {
		c, err = cf.dialMTLS(ctx)
	}
	if err != nil {
		return nil, nil, nil, &ExitError{Code: ExitUsage, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	src := cf.src
	return c, ctx, func() {
		cancel()
		if src != nil {
			_ = src.Close()
		}
	}, nil
}

func (cf *clientFlags) dialMTLS(ctx context.Context) (*client.Client, error) {
	cfg, err := cf.m.svidConfig(cf.cmd, &cf.svid)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, min(cf.timeout, identity.DefaultWorkloadAPITimeout))
	defer cancel()
	src, err := identity.OpenSource(octx, cfg)
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", cf.addr, err)
	}
	c, err := client.DialMTLS(ctx, cf.addr, client.MTLSOptions{Source: src, ServerID: cf.serverID})
	if err != nil {
		_ = src.Close()
		return nil, err
	}
	cf.src = src
	return c, nil
}

// where names the executor's endpoint in messages.
func (cf *clientFlags) where() string {
	if cf.addr != "" {
		return cf.addr
	}
	return cf.socket
}

// rpcErr turns a gRPC error into an exit-2 error with a readable message.
func (cf *clientFlags) rpcErr(err error) error {
	st, _ := status.FromError(err)
	msg := st.Message()
	switch {
	case strings.Contains(msg, "connect: no such file") || strings.Contains(msg, "connection refused"):
		msg = fmt.Sprintf("cannot reach the executor at %s: is `airlock serve` running? (%s)", cf.where(), msg)
	case cf.addr != "" && st.Code() == codes.Unavailable:
		// With TLS 1.3 a server refusing the client's certificate shows up
		// after the client's side of the handshake, as a reset or an alert.
		msg = fmt.Sprintf("the mTLS handshake with %s failed: the executor refused this SVID (its log says why: trust domain, allowed patterns), or its own SVID is not trusted here (check --svid-bundle and --server-id) (%s)", cf.addr, msg)
	}
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %s", strings.ToLower(st.Code().String()), msg)}
}

func (m *Main) callCommand() *cobra.Command {
	var cf clientFlags
	var task, why, idemKey string
	var waitApproval time.Duration
	cmd := &cobra.Command{
		Use:   "call [flags] TOOL 'JSON'",
		Short: "submit an intent and print its outcome as JSON",
		Long: `call submits one intent (a tool and its JSON arguments; '-' reads them from
stdin) and prints the outcome as JSON. Exit status: 0 ok, 3 denied, 4 pending
approval, 5 failed or timeout, 6 invalid, 2 usage or connection error.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			argsJSON := args[1]
			if argsJSON == "-" {
				b, err := io.ReadAll(io.LimitReader(m.Stdin, server.MaxRequestBytes))
				if err != nil {
					return usageErr("read arguments from stdin: %v", err)
				}
				argsJSON = string(b)
			}
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				out, err := c.Submit(ctx, args[0], argsJSON, client.WithTask(task), client.WithJustification(why),
					client.WithIdempotencyKey(idemKey), client.WithApprovalWait(waitApproval))
				if err != nil {
					return cf.rpcErr(err)
				}
				b, err := client.OutcomeJSON(out)
				if err != nil {
					return err
				}
				fmt.Fprintln(m.Stdout, string(b))
				return exitFor(out.GetStatus())
			})
		},
	}
	m.addClientFlags(cmd, &cf)
	cmd.Flags().StringVar(&task, "task", "", "the task the intent belongs to")
	cmd.Flags().StringVar(&why, "justification", "", "why the planner wants this call")
	cmd.Flags().StringVar(&idemKey, "idempotency-key", "", "submit idempotently: the same key with the same call returns the first outcome instead of running again")
	cmd.Flags().DurationVar(&waitApproval, "wait-approval", 0, "when policy requires an approval, wait up to this long for it (the executor caps it) instead of exiting 4 at once")
	return cmd
}

func exitFor(s airlockv1.Status) error {
	code := map[airlockv1.Status]int{
		airlockv1.Status_STATUS_OK:               ExitOK,
		airlockv1.Status_STATUS_DENIED:           ExitDenied,
		airlockv1.Status_STATUS_PENDING_APPROVAL: ExitPending,
		airlockv1.Status_STATUS_FAILED:           ExitFailed,
		airlockv1.Status_STATUS_TIMEOUT:          ExitFailed,
		airlockv1.Status_STATUS_INVALID:          ExitInvalid,
	}[s]
	if code == ExitOK && s != airlockv1.Status_STATUS_OK {
		code = ExitFailed
	}
	if code == ExitOK {
		return nil
	}
	return &ExitError{Code: code}
}

func (m *Main) toolsCommand() *cobra.Command {
	var cf clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tools",
		Short: "list the executor's tools",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				tools, err := c.ListTools(ctx)
				if err != nil {
					return cf.rpcErr(err)
				}
				if asJSON {
					return writeToolsJSON(m.Stdout, tools)
				}
				tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tRISK\tDESCRIPTION")
				for _, t := range tools {
					d := summary(t.GetDescription())
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.GetName(), t.GetVersion(), t.GetRisk(), d)
				}
				return tw.Flush()
			})
		},
	}
	m.addClientFlags(cmd, &cf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the tools with their JSON Schemas as JSON")
	return cmd
}

func writeToolsJSON(w io.Writer, tools []*airlockv1.Tool) error {
	type toolJSON struct {
		Name         string            `json:"name"`
		Version      string            `json:"version"`
		Description  string            `json:"description"`
		Risk         string            `json:"risk"`
		Owner        string            `json:"owner,omitempty"`
		Labels       map[string]string `json:"labels,omitempty"`
		Digest       string            `json:"digest"`
		InputSchema  json.RawMessage   `json:"input_schema"`
		OutputSchema json.RawMessage   `json:"output_schema"`
	}
	out := make([]toolJSON, 0, len(tools))
	for _, t := range tools {
		out = append(out, toolJSON{
			Name: t.GetName(), Version: t.GetVersion(), Description: t.GetDescription(), Risk: t.GetRisk(),
			Owner: t.GetOwner(), Labels: t.GetLabels(), Digest: t.GetDigest(),
			InputSchema: rawOrNull(t.GetInputSchema()), OutputSchema: rawOrNull(t.GetOutputSchema()),
		})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func rawOrNull(s string) json.RawMessage {
	if s == "" || !json.Valid([]byte(s)) {
		return json.RawMessage("null")
	}
	return json.RawMessage(s)
}

func (m *Main) taskCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "begin, end and show tasks"}
	var cf clientFlags
	var o client.TaskOptions
	var labels []string
	var asJSON bool
	begin := &cobra.Command{
		Use:   "begin",
		Short: "begin a task and print its id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return usageErr("--label %q: write key=value", l)
				}
				o.Labels[k] = v
			}
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				t, err := c.BeginTask(ctx, o)
				if err != nil {
					return cf.rpcErr(err)
				}
				if asJSON {
					return printProto(m.Stdout, t)
				}
				fmt.Fprintln(m.Stdout, t.GetId())
				return nil
			})
		},
	}
	m.addClientFlags(begin, &cf)
	begin.Flags().StringVar(&o.Purpose, "purpose", "", "what the task is for (visible to policy)")
	begin.Flags().StringVar(&o.Sensitivity, "sensitivity", "", "data sensitivity, e.g. public, internal, confidential")
	begin.Flags().DurationVar(&o.TTL, "ttl", 0, "time to live (default: the executor's, 1h)")
	begin.Flags().StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	begin.Flags().BoolVar(&asJSON, "json", false, "print the whole task as JSON")

	var ecf clientFlags
	var reason string
	end := &cobra.Command{
		Use:   "end TASK_ID",
		Short: "end a task: its workspace is removed and its intents are refused",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ecf.do(cmd, func(ctx context.Context, c *client.Client) error {
				t, err := c.EndTask(ctx, args[0], reason)
				if err != nil {
					return ecf.rpcErr(err)
				}
				return printProto(m.Stdout, t)
			})
		},
	}
	m.addClientFlags(end, &ecf)
	end.Flags().StringVar(&reason, "reason", "", "why the task ends (recorded)")

	var gcf clientFlags
	get := &cobra.Command{
		Use:   "get TASK_ID",
		Short: "show a task",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return gcf.do(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Tasks.GetTask(ctx, &airlockv1.GetTaskRequest{TaskId: args[0]})
				if err != nil {
					return gcf.rpcErr(err)
				}
				return printProto(m.Stdout, resp.GetTask())
			})
		},
	}
	m.addClientFlags(get, &gcf)

	var rcf clientFlags
	var rreason string
	revoke := &cobra.Command{
		Use:   "revoke TASK_ID",
		Short: "revoke every credential leased to a task at its source, and cancel its calls in flight",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rcf.do(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Tasks.RevokeCredentials(ctx, &airlockv1.RevokeCredentialsRequest{TaskId: args[0], Reason: rreason})
				if err != nil {
					return rcf.rpcErr(err)
				}
				fmt.Fprintf(m.Stdout, "revoked %d credential lease(s) of task %s\n", resp.GetRevoked(), args[0])
				return nil
			})
		},
	}
	m.addClientFlags(revoke, &rcf)
	revoke.Flags().StringVar(&rreason, "reason", "", "why (recorded)")
	cmd.AddCommand(begin, end, get, revoke)
	return cmd
}

func (m *Main) intentCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "intent", Short: "show intents"}
	var cf clientFlags
	var wait time.Duration
	get := &cobra.Command{
		Use:   "get INTENT_ID",
		Short: "print the stored outcome of an intent as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				out, err := c.GetIntent(ctx, args[0], wait)
				if err != nil {
					return cf.rpcErr(err)
				}
				b, err := client.OutcomeJSON(out)
				if err != nil {
					return err
				}
				fmt.Fprintln(m.Stdout, string(b))
				return nil
			})
		},
	}
	m.addClientFlags(get, &cf)
	get.Flags().DurationVar(&wait, "wait", 0, "while the intent is pending approval, wait up to this long for its outcome")
	cmd.AddCommand(get)
	return cmd
}

func printProto(w io.Writer, msg proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// summary is the first sentence of a description, at most 100 bytes: the
// table stays readable; `airlock tools --json` has the whole text.
func summary(d string) string {
	if i := strings.IndexByte(d, '\n'); i >= 0 {
		d = d[:i]
	}
	if i := strings.Index(d, ". "); i >= 0 {
		d = d[:i+1]
	}
	if len(d) > 100 {
		d = strings.ToValidUTF8(d[:97], "") + "..."
	}
	return d
}
