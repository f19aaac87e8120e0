package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// approvalsCommand is `airlock approvals`: the operator's half of
// require_approval.
func (m *Main) approvalsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "list, show, approve, deny and watch the approvals policy asked for",
		Long: `approvals is the operator's side of require_approval. An approval covers one
intent: its task, caller, tool (and module digest) and exact arguments. The
approver is your identity (the uid on the socket, or your SVID with --addr); it
must differ from the caller that submitted the intent, and when the executor
runs with --approvers it must match one of those patterns.`,
	}
	cmd.AddCommand(m.approvalsListCommand(), m.approvalsShowCommand(), m.approvalsDecideCommand(true),
		m.approvalsDecideCommand(false), m.approvalsWatchCommand(), m.approvalsOpenCommand())
	return cmd
}

// parseStates parses --state values (repeatable or comma-separated).
func parseStates(in []string) ([]airlockv1.ApprovalState, error) {
	var out []airlockv1.ApprovalState
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			st, ok := client.ParseApprovalState(p)
			if !ok {
				return nil, usageErr("--state %q: use pending, approved, denied or expired", p)
			}
			out = append(out, st)
		}
	}
	return out, nil
}

func (m *Main) approvalsListCommand() *cobra.Command {
	var cf clientFlags
	var states []string
	var f client.ApprovalFilter
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list approvals, newest first (default: pending only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.States, err = parseStates(states); err != nil {
				return err
			}
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				as, err := c.ListApprovals(ctx, f)
				if err != nil {
					return cf.rpcErr(err)
				}
				if asJSON {
					return printApprovalsJSON(m, as)
				}
				tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tTOOL\tRISK\tCALLER\tTASK\tEXPIRES\tARGUMENTS")
				for _, a := range as {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termText(a.GetId(), false), termText(stateLabel(a), false), termText(a.GetTool(), false), termText(a.GetRisk(), false),
						termText(a.GetCaller(), false), termText(dash(a.GetTaskId()), false), a.GetExpiresAt().AsTime().Local().Format(time.DateTime), termText(clipArgs(a.GetArguments(), 60), false))
				}
				return tw.Flush()
			})
		},
	}
	m.addClientFlags(cmd, &cf)
	cmd.Flags().StringArrayVar(&states, "state", nil, "only these states: pending, approved, denied, expired (repeatable or comma-separated; default pending)")
	cmd.Flags().StringVar(&f.TaskID, "task", "", "only the approvals of this task")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, "at most this many (up to 1000)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the approvals as a JSON array")
	return cmd
}

func (m *Main) approvalsShowCommand() *cobra.Command {
	var cf clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show APPROVAL_ID",
		Short: "show one approval: the exact arguments it covers, the tool's risk and the rules that asked for it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				a, err := c.GetApproval(ctx, args[0])
				if err != nil {
					return cf.rpcErr(err)
				}
				if asJSON {
					return printProto(m.Stdout, a)
				}
				printApproval(m, a)
				return nil
			})
		},
	}
	m.addClientFlags(cmd, &cf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the approval as JSON")
	return cmd
}

func (m *Main) approvalsDecideCommand(approve bool) *cobra.Command {
	var cf clientFlags
	var reason string
	use, short := "approve APPROVAL_ID", "approve: the intent then runs exactly once with the approved arguments"
	if !approve {
		use, short = "deny APPROVAL_ID --reason TEXT", "deny: the intent is refused with your reason, for good"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !approve && strings.TrimSpace(reason) == "" {
				return usageErr("deny needs --reason: say why (it is recorded and sent to the planner)")
			}
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				var a *airlockv1.Approval
				var err error
				if approve {
					a, err = c.Approve(ctx, args[0], reason)
				} else {
					a, err = c.Deny(ctx, args[0], reason)
				}
				if err != nil {
					return cf.rpcErr(err)
				}
				fmt.Fprintf(m.Stdout, "%s %s by %s\n", termText(a.GetId(), false), termText(stateLabel(a), false), termText(a.GetApprover(), false))
				return nil
			})
		},
	}
	m.addClientFlags(cmd, &cf)
	help := "why you approve (recorded in the audit log)"
	if !approve {
		help = "why you deny (required; recorded and sent to the planner)"
	}
	cmd.Flags().StringVar(&reason, "reason", "", help)
	return cmd
}

func (m *Main) approvalsWatchCommand() *cobra.Command {
	var cf clientFlags
	var states []string
	var f client.ApprovalFilter
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "print approvals as JSON lines as they appear and change state, until interrupted",
		Long: `watch prints every approval that matches (every state by default), then one JSON
line each time an approval appears or changes state, until interrupted or
--timeout passes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.States, err = parseStates(states); err != nil {
				return err
			}
			return cf.do(cmd, func(ctx context.Context, c *client.Client) error {
				err := c.WatchApprovals(ctx, f, func(a *airlockv1.Approval) error {
					b, err := json.Marshal(approvalDoc(a))
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(m.Stdout, string(b))
					return err
				})
				if err != nil {
					return cf.rpcErr(err)
				}
				return nil
			})
		},
	}
	m.addClientFlags(cmd, &cf)
	cmd.Flags().StringArrayVar(&states, "state", nil, "only these states (repeatable or comma-separated; default every state)")
	cmd.Flags().StringVar(&f.TaskID, "task", "", "only the approvals of this task")
	if tf := cmd.Flags().Lookup("timeout"); tf != nil {
		_ = tf.Value.Set("24h")
		tf.DefValue = "24h0m0s"
	}
	return cmd
}

// approvalJSON is how the CLI prints an approval as JSON: lowercase state,
// arguments embedded as JSON.
type approvalJSON struct {
	ID              string          `json:"id"`
	State           string          `json:"state"`
	IntentID        string          `json:"intent_id"`
	IntentStatus    string          `json:"intent_status,omitempty"`
	TaskID          string          `json:"task_id,omitempty"`
	Caller          string          `json:"caller"`
	Tool            string          `json:"tool"`
	ToolVersion     string          `json:"tool_version,omitempty"`
	ToolDigest      string          `json:"tool_digest"`
	Risk            string          `json:"risk"`
	Arguments       json.RawMessage `json:"arguments"`
	ArgumentsSHA256 string          `json:"arguments_sha256"`
	Justification   string          `json:"justification,omitempty"`
	Rules           []string        `json:"rules"`
	Message         string          `json:"message,omitempty"`
	CreatedAt       time.Time       `json:"created_at"`
	ExpiresAt       time.Time       `json:"expires_at"`
	DecidedAt       *time.Time      `json:"decided_at,omitempty"`
	Approver        string          `json:"approver,omitempty"`
	Reason          string          `json:"reason,omitempty"`
}

func approvalDoc(a *airlockv1.Approval) approvalJSON {
	d := approvalJSON{
		ID: a.GetId(), State: client.ApprovalStateName(a.GetState()), IntentID: a.GetIntentId(), IntentStatus: a.GetIntentStatus(),
		TaskID: a.GetTaskId(), Caller: a.GetCaller(), Tool: a.GetTool(), ToolVersion: a.GetToolVersion(), ToolDigest: a.GetToolDigest(),
		Risk: a.GetRisk(), Arguments: rawOrNull(a.GetArguments()), ArgumentsSHA256: a.GetArgumentsSha256(),
		Justification: a.GetJustification(), Rules: a.GetRules(), Message: a.GetMessage(),
		CreatedAt: a.GetCreatedAt().AsTime(), ExpiresAt: a.GetExpiresAt().AsTime(), Approver: a.GetApprover(), Reason: a.GetReason(),
	}
	if d.Rules == nil {
		d.Rules = []string{}
	}
	if a.GetDecidedAt() != nil {
		t := a.GetDecidedAt().AsTime()
		d.DecidedAt = &t
	}
	return d
}

func printApprovalsJSON(m *Main, as []*airlockv1.Approval) error {
	docs := make([]approvalJSON, 0, len(as))
	for _, a := range as {
		docs = append(docs, approvalDoc(a))
	}
	b, err := json.MarshalIndent(docs, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(m.Stdout, string(b))
	return err
}

// printApproval prints an approval for a human deciding it.
func printApproval(m *Main, a *airlockv1.Approval) {
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, termText(v, false))
		}
	}
	row("approval", a.GetId())
	row("state", stateLabel(a))
	row("intent", a.GetIntentId())
	row("task", a.GetTaskId())
	row("caller", a.GetCaller())
	tool := a.GetTool()
	if v := a.GetToolVersion(); v != "" {
		tool += " " + v
	}
	row("tool", tool)
	row("tool digest", a.GetToolDigest())
	row("risk", a.GetRisk())
	row("rules", strings.Join(a.GetRules(), ", "))
	row("message", a.GetMessage())
	row("justification", a.GetJustification())
	row("created", a.GetCreatedAt().AsTime().Local().Format(time.RFC3339))
	row("expires", a.GetExpiresAt().AsTime().Local().Format(time.RFC3339))
	if a.GetDecidedAt() != nil {
		row("decided", a.GetDecidedAt().AsTime().Local().Format(time.RFC3339))
	}
	row("approver", a.GetApprover())
	row("reason", a.GetReason())
	row("arguments sha256", a.GetArgumentsSha256())
	_ = tw.Flush()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(a.GetArguments()), "", "  "); err != nil {
		pretty.Reset()
		pretty.WriteString(a.GetArguments())
	}
	fmt.Fprintf(m.Stdout, "arguments (exactly what runs):\n%s\n", termText(pretty.String(), true))
}

// stateLabel is the state, with the intent's status once it ran.
func stateLabel(a *airlockv1.Approval) string {
	s := client.ApprovalStateName(a.GetState())
	if st := a.GetIntentStatus(); st != "" && a.GetState() == airlockv1.ApprovalState_APPROVAL_STATE_APPROVED {
		s += " (" + st + ")"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clipArgs shortens arguments for a table cell, keeping them on one line.
func clipArgs(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n-3], "") + "..."
	}
	return s
}

// termText makes text a planner chose safe to print on an operator's
// terminal: control characters (C0 but newline when multiline, DEL, C1,
// which include ESC and CSI), Unicode bidirectional controls (which can
// make "publish/x.md" display as something else) and invalid UTF-8 are
// printed as visible \u escapes, so nothing can move the cursor, rewrite
// what was printed before, or reorder what the operator reads.
func termText(s string, multiline bool) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && multiline:
			b.WriteRune(r)
		case unicode.IsControl(r) || isBidiControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isBidiControl reports whether r is a Unicode bidirectional formatting
// character (the "Trojan Source" characters).
func isBidiControl(r rune) bool {
	return r == '\u061c' || r == '\u200e' || r == '\u200f' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}
