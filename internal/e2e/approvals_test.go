package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// kill SIGKILLs a daemon and waits for it, keeping its cleanup working.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	err := <-d.done
	d.done <- err
}

// executionsIn counts the execution events of an intent in the audit log
// of a stopped executor, with the real CLI.
func executionsIn(t *testing.T, data, intent string) int {
	t.Helper()
	r := runCLI(t, "", "audit", "tail", "--data", data, "-n", "10000")
	if r.code != 0 {
		t.Fatalf("audit tail: %d %s", r.code, r.stderr)
	}
	n := countExecutions(t, r.stdout, intent)
	if r := runCLI(t, "", "audit", "verify", "--data", data); r.code != 0 {
		t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
	return n
}

// The operator (an mTLS SVID) approves what the planner (the uid on the
// socket) asked for; the planner cannot approve its own intent; kill -9
// between the approval and the execution, then a restart: it runs once.
func TestApprovalsEndToEnd(t *testing.T) {
	ca := devCA(t, "airlock.local")
	execSVID := devIssue(t, ca, "spiffe://airlock.local/executor")
	ann := devIssue(t, ca, "spiffe://airlock.local/human/ann")
	policies := testenv.Policy(t, "approvals", testenv.WritesNeedApproval)
	serve := func(extra ...string) *daemon {
		args := append([]string{"--policies", policies, "--approvers", "spiffe://airlock.local/human/*"},
			mtlsFlags(execSVID, "spiffe://airlock.local/human/*")...)
		return startDaemon(t, append(args, extra...)...)
	}
	// The approvals loop never runs in the first daemon: nothing runs the
	// approved intent before the kill.
	d := serve("--approval-poll", "1h")
	addr := listenAddr(t, d)
	asAnn := func(args ...string) result {
		t.Helper()
		return runCLI(t, "", append(append([]string{args[0], args[1], "--addr", addr}, ann.flags()...), args[2:]...)...)
	}

	r := d.call(t, "task", "begin", "--purpose", "approvals e2e")
	if r.code != 0 {
		t.Fatalf("task begin: %d %s", r.code, r.stderr)
	}
	task := strings.TrimSpace(r.stdout)
	r = d.call(t, "call", "--task", task, "workspace.write", `{"path":"a.txt","content":"A"}`)
	a := parseOutcome(t, r)
	if r.code != 4 || a.Status != "pending_approval" || a.ApprovalID == "" {
		t.Fatalf("call A: exit %d %+v", r.code, a)
	}
	r = d.call(t, "call", "--task", task, "workspace.write", `{"path":"a.txt","content":"B"}`)
	b := parseOutcome(t, r)
	if r.code != 4 || b.ApprovalID == "" || b.ApprovalID == a.ApprovalID {
		t.Fatalf("call B: exit %d %+v (A %+v)", r.code, b, a)
	}

	// The planner is not an approver, and it is the requester.
	if r := d.call(t, "approvals", "approve", a.ApprovalID); r.code != 2 || !strings.Contains(r.stderr, "permissiondenied") {
		t.Fatalf("self-approval: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// The planner sees its own approvals; the operator sees every one.
	if r := d.call(t, "approvals", "list"); r.code != 0 || !strings.Contains(r.stdout, a.ApprovalID) {
		t.Fatalf("planner list: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = asAnn("approvals", "show", a.ApprovalID)
	if r.code != 0 || !strings.Contains(r.stdout, `"content": "A"`) || !strings.Contains(r.stdout, "approvals/writes-need-approval") || !strings.Contains(r.stdout, "medium") {
		t.Fatalf("show: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := asAnn("approvals", "deny", b.ApprovalID); r.code != 2 || !strings.Contains(r.stderr, "--reason") {
		t.Fatalf("deny without a reason: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := asAnn("approvals", "deny", b.ApprovalID, "--reason", "B is wrong"); r.code != 0 || !strings.Contains(r.stdout, "denied") {
		t.Fatalf("deny B: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := asAnn("approvals", "approve", b.ApprovalID); r.code != 2 || !strings.Contains(r.stderr, "failedprecondition") {
		t.Fatalf("approve a denied approval: %d %s %s", r.code, r.stdout, r.stderr)
	}
	for range 2 { // approving twice runs once
		if r := asAnn("approvals", "approve", a.ApprovalID, "--reason", "A is fine"); r.code != 0 || !strings.Contains(r.stdout, "approved by spiffe://airlock.local/human/ann") {
			t.Fatalf("approve A: %d %s %s", r.code, r.stdout, r.stderr)
		}
	}
	r = d.call(t, "intent", "get", b.IntentID)
	if o := parseOutcome(t, r); o.Status != "denied" || o.Error.Code != "approval_denied" || !strings.Contains(o.Error.Message, "B is wrong") {
		t.Fatalf("B after the denial: %+v", o)
	}

	// Killed between the approval and the execution.
	d.kill(t)
	if n := executionsIn(t, d.data, a.IntentID); n != 0 {
		t.Fatalf("A ran %d times before the kill: the test proves nothing", n)
	}
	d2 := serve("--data", d.data)
	r = d2.call(t, "intent", "get", "--wait", "1m", a.IntentID)
	if o := parseOutcome(t, r); r.code != 0 || o.Status != "ok" || o.IntentID != a.IntentID || o.ApprovalID != a.ApprovalID {
		t.Fatalf("A after the restart: exit %d %+v %s", r.code, o, r.stderr)
	}
	// A waiting call returns the final outcome once approved elsewhere.
	done := make(chan result, 1)
	go func() {
		done <- runCLI(t, "", "call", "--socket", d2.socket, "--task", task, "--wait-approval", "1m", "--idempotency-key", "k-1",
			"workspace.write", `{"path":"c.txt","content":"C"}`)
	}()
	addr2 := listenAddr(t, d2)
	var pending string
	for deadline := time.Now().Add(time.Minute); pending == "" && time.Now().Before(deadline); {
		r := runCLI(t, "", append(append([]string{"approvals", "list", "--addr", addr2}, ann.flags()...), "--json", "--task", task)...)
		var list []struct {
			ID        string          `json:"id"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("list --json: %v %s %s", err, r.stdout, r.stderr)
		}
		for _, x := range list {
			var compact bytes.Buffer
			if json.Compact(&compact, x.Arguments) == nil && compact.String() == `{"content":"C","path":"c.txt"}` {
				pending = x.ID
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pending == "" {
		t.Fatal("the waiting call's approval never appeared")
	}
	if r := runCLI(t, "", append(append([]string{"approvals", "approve", "--addr", addr2}, ann.flags()...), pending)...); r.code != 0 {
		t.Fatalf("approve C: %d %s", r.code, r.stderr)
	}
	r = <-done
	c := parseOutcome(t, r)
	if r.code != 0 || c.Status != "ok" || c.ApprovalID != pending {
		t.Fatalf("the waiting call: exit %d %+v %s", r.code, c, r.stderr)
	}
	// The same key and call: the same outcome, no second run.
	r = d2.call(t, "call", "--task", task, "--idempotency-key", "k-1", "workspace.write", `{"path":"c.txt","content":"C"}`)
	if again := parseOutcome(t, r); r.code != 0 || again.IntentID != c.IntentID {
		t.Fatalf("resubmission: exit %d %+v, first %+v", r.code, again, c)
	}
	r = d2.call(t, "call", "--task", task, "--idempotency-key", "k-1", "workspace.write", `{"path":"c.txt","content":"other"}`)
	if o := parseOutcome(t, r); r.code != 6 || o.Error.Code != "idempotency_key_reused" {
		t.Fatalf("key reused for other arguments: exit %d %+v", r.code, o)
	}
	d2.kill(t)
	for id, want := range map[string]int{a.IntentID: 1, b.IntentID: 0, c.IntentID: 1} {
		if n := executionsIn(t, d.data, id); n != want {
			t.Errorf("intent %s ran %d times, want %d", id, n, want)
		}
	}
}

// The Go client: an operator's WatchApprovals sees the planner's pending
// approval and approves it; the planner's Submit (waiting) gets the final
// outcome.
func TestApprovalsGoClient(t *testing.T) {
	ca := devCA(t, "airlock.local")
	execSVID := devIssue(t, ca, "spiffe://airlock.local/executor")
	ann := devIssue(t, ca, "spiffe://airlock.local/human/ann")
	d := startDaemon(t, append([]string{"--policies", testenv.Policy(t, "approvals", testenv.WritesNeedApproval),
		"--approvers", "spiffe://airlock.local/human/*"}, mtlsFlags(execSVID, "spiffe://airlock.local/human/*")...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	planner := socketClient(t, d)
	op := mtlsClient(t, listenAddr(t, d), ann)
	task, err := planner.BeginTask(ctx, client.TaskOptions{Purpose: "go client"})
	if err != nil {
		t.Fatal(err)
	}
	done := submitWaiting(t, ctx, planner, task.GetId(), `{"path":"g.txt","content":"G"}`)
	approved := approveFirstPending(t, ctx, op, task.GetId(), "go")
	out := <-done
	if out.GetStatus() != airlockv1.Status_STATUS_OK || out.GetApprovalId() != approved.GetId() {
		t.Fatalf("waiting submit: %v", out)
	}
	// The planner cannot approve: PermissionDenied (it is the requester).
	p, err := planner.Submit(ctx, "workspace.write", `{"path":"h.txt","content":"H"}`, client.WithTask(task.GetId()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := planner.Approve(ctx, p.GetApprovalId(), ""); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("self-approval: %v", err)
	}
	got, err := op.GetApproval(ctx, p.GetApprovalId())
	if err != nil || got.GetArguments() != `{"content":"H","path":"h.txt"}` {
		t.Fatalf("get approval: %v %v", got, err)
	}
	list, err := op.ListApprovals(ctx, client.ApprovalFilter{TaskID: task.GetId(), States: []airlockv1.ApprovalState{airlockv1.ApprovalState_APPROVAL_STATE_APPROVED}})
	if err != nil || len(list) != 1 || list[0].GetIntentStatus() != "ok" {
		t.Fatalf("approved list: %v %v", list, err)
	}
}
