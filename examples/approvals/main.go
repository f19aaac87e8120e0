// Command approvals is a planner whose intent needs a human: it asks to
// write under publish/ in a task's workspace, which the development policy
// (manifests/policies/local-dev.yaml) sends for approval, prints what an
// operator must run, and waits for the decision with WithApprovalWait.
//
//	make run &                      # in another terminal
//	go run ./examples/approvals     # or: --socket PATH --path publish/x.md --wait 10m
//
// The operator must be another identity than the planner: the executor
// refuses an approval by the caller that asked (PermissionDenied). On a
// one-user machine, run the printed command as another user (sudo reaches
// the socket as uid 0) or over mTLS with an SVID (--addr, see
// docs/operator-guide.md). main_test.go runs this program against a real
// executor and approves and denies as a second identity over mTLS.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

func main() {
	cfg := Config{}
	socket := flag.String("socket", ".airlock/airlock.sock", "the executor's socket")
	flag.StringVar(&cfg.Path, "path", "publish/hello.md", "the workspace path to write (the dev policy asks for approval under publish/)")
	flag.StringVar(&cfg.Content, "content", "Hello from a planner that waited for a human.\n", "what to write")
	flag.DurationVar(&cfg.Wait, "wait", 10*time.Minute, "how long to wait for the operator's decision in all")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := client.Dial(ctx, *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "approvals:", err)
		os.Exit(2)
	}
	defer c.Close()
	res, err := Run(ctx, c, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "approvals:", err)
		os.Exit(2)
	}
	if res.Outcome.GetStatus() != airlockv1.Status_STATUS_OK {
		os.Exit(1)
	}
}

// Config is what the planner asks for.
type Config struct {
	// Path and Content are the workspace.write arguments.
	Path, Content string
	// Wait bounds the whole wait for a decision (default 10m).
	Wait time.Duration
	// Step is the approval_wait of one Submit (default 1m; the executor
	// caps it): when it passes undecided, the planner submits again with
	// the same idempotency key, which waits on the same intent and never
	// makes a second approval.
	Step time.Duration
}

// Result is what happened.
type Result struct {
	TaskID, IntentID, ApprovalID string
	// Outcome is the final outcome: ok once approved and run, denied when
	// an operator denied or the approval expired, pending_approval when
	// Wait passed undecided.
	Outcome *airlockv1.Outcome
}

// Run begins a task, submits the write, prints the operator's commands
// to w as soon as the approval exists, waits for the decision and prints
// the outcome. The task is ended before Run returns.
func Run(ctx context.Context, c *client.Client, cfg Config, w io.Writer) (*Result, error) {
	if cfg.Wait <= 0 {
		cfg.Wait = 10 * time.Minute
	}
	if cfg.Step <= 0 {
		cfg.Step = time.Minute
	}
	task, err := c.BeginTask(ctx, client.TaskOptions{Purpose: "publish a note", TTL: cfg.Wait + 10*time.Minute})
	if err != nil {
		return nil, fmt.Errorf("begin a task: %w", err)
	}
	res := &Result{TaskID: task.GetId()}
	defer func() { _, _ = c.EndTask(context.WithoutCancel(ctx), task.GetId(), "approvals example finished") }()
	fmt.Fprintf(w, "task %s\n", task.GetId())

	// A planner sees the approvals of its own intents: watch the task's,
	// to tell the operator what to run while Submit waits.
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() {
		announced := false
		watched <- c.WatchApprovals(wctx, client.ApprovalFilter{TaskID: task.GetId()}, func(a *airlockv1.Approval) error {
			if !announced && a.GetState() == airlockv1.ApprovalState_APPROVAL_STATE_PENDING {
				announced = true
				printOperatorHelp(w, a)
			}
			return nil
		})
	}()
	defer func() {
		stopWatch()
		<-watched
	}()

	args := fmt.Sprintf(`{"path": %q, "content": %q}`, cfg.Path, cfg.Content)
	key, err := idempotencyKey()
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(cfg.Wait)
	for {
		step := min(cfg.Step, time.Until(deadline))
		out, err := c.Submit(ctx, "workspace.write", args,
			client.WithTask(task.GetId()),
			client.WithJustification("the approvals example publishes a note"),
			client.WithIdempotencyKey(key),
			client.WithApprovalWait(step))
		if err != nil {
			return res, fmt.Errorf("submit workspace.write: %w", err)
		}
		res.Outcome, res.IntentID = out, out.GetIntentId()
		if id := out.GetApprovalId(); id != "" {
			res.ApprovalID = id
		}
		if out.GetStatus() != airlockv1.Status_STATUS_PENDING_APPROVAL || time.Until(deadline) <= 0 {
			break
		}
	}
	printOutcome(w, res.Outcome)
	return res, nil
}

// printOperatorHelp tells the operator what waits and what to run.
func printOperatorHelp(w io.Writer, a *airlockv1.Approval) {
	fmt.Fprintf(w, "approval %s waits for an operator until %s\n", a.GetId(), a.GetExpiresAt().AsTime().Local().Format(time.TimeOnly))
	fmt.Fprintf(w, "  %s %s (risk %s)\n", a.GetTool(), a.GetArguments(), a.GetRisk())
	fmt.Fprintf(w, "  asked by %s: %s\n", strings.Join(a.GetRules(), ", "), a.GetMessage())
	fmt.Fprintf(w, "as an operator other than %s, run one of:\n", a.GetCaller())
	fmt.Fprintf(w, "  bin/airlock approvals show %s\n", a.GetId())
	fmt.Fprintf(w, "  bin/airlock approvals approve %s --reason \"checked the note\"\n", a.GetId())
	fmt.Fprintf(w, "  bin/airlock approvals deny %s --reason \"not today\"\n", a.GetId())
	fmt.Fprintf(w, "  bin/airlock approvals open    # a link to the approvals page\n")
}

// printOutcome prints the final outcome as the planner would feed it to
// its model.
func printOutcome(w io.Writer, o *airlockv1.Outcome) {
	switch o.GetStatus() {
	case airlockv1.Status_STATUS_OK:
		fmt.Fprintf(w, "ok: %s ran after approval %s: %s\n", o.GetTool(), o.GetApprovalId(), o.GetOutput())
	case airlockv1.Status_STATUS_PENDING_APPROVAL:
		fmt.Fprintf(w, "still pending: nobody decided on %s in time; the task ends now, so approving it later runs nothing (task_ended): run the example again with a longer --wait\n", o.GetApprovalId())
	default:
		fmt.Fprintf(w, "%s (%s): %s\n", client.StatusName(o.GetStatus()), o.GetError().GetCode(), o.GetError().GetMessage())
	}
}

// idempotencyKey returns a fresh random key: resubmitting with it returns
// the same intent instead of asking for another approval.
func idempotencyKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes for the idempotency key: %w", err)
	}
	return hex.EncodeToString(b), nil
}
