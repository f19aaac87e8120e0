package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// With the default approvers (no --approvers), the real binary: a planner
// (an agent SVID over mTLS) asks; another agent can neither see nor
// approve its approval; the executor is killed with the approval pending;
// after the restart the approval is still pending and the local operator
// (root on the unix socket, `sudo airlock approvals approve`) approves it;
// the intent runs once.
func TestPendingApprovalSurvivesRestartAndLocalOperatorApproves(t *testing.T) {
	ca := devCA(t, "airlock.local")
	execSVID := devIssue(t, ca, "spiffe://airlock.local/executor")
	plannerSVID := devIssue(t, ca, "spiffe://airlock.local/agent/planner")
	otherSVID := devIssue(t, ca, "spiffe://airlock.local/agent/other")
	policies := testenv.Policy(t, "approvals", testenv.WritesNeedApproval)
	serve := func(extra ...string) *daemon {
		return startDaemon(t, append(append([]string{"--policies", policies},
			mtlsFlags(execSVID, "spiffe://airlock.local/agent/*")...), extra...)...)
	}
	d := serve()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := listenAddr(t, d)
	planner := mtlsClient(t, addr, plannerSVID)
	task, err := planner.BeginTask(ctx, client.TaskOptions{Purpose: "restart"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := planner.Submit(ctx, "workspace.write", `{"path":"r.txt","content":"R"}`, client.WithTask(task.GetId()))
	if err != nil || out.GetStatus() != airlockv1.Status_STATUS_PENDING_APPROVAL {
		t.Fatalf("submit: %v %v", out, err)
	}
	id := out.GetApprovalId()

	other := mtlsClient(t, addr, otherSVID)
	if list, err := other.ListApprovals(ctx, client.ApprovalFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("another agent lists %d approvals: %v", len(list), err)
	}
	if _, err := other.Approve(ctx, id, "me too"); status.Code(err) != codes.NotFound {
		t.Fatalf("another agent approves: %v", err)
	}
	if _, _, err := other.OpenApprovalsPage(ctx); status.Code(err) == codes.OK {
		t.Fatal("another agent opened the approvals page")
	}

	d.kill(t)
	d2 := serve("--data", d.data)
	r := d2.call(t, "approvals", "list", "--json")
	var list []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].ID != id || list[0].State != "pending" {
		t.Fatalf("after the restart the local operator lists %s %s (%v)", r.stdout, r.stderr, err)
	}
	r = d2.call(t, "approvals", "approve", id, "--reason", "checked after the restart")
	if r.code != 0 || !strings.Contains(r.stdout, "approved by "+identity.FromUID(0).SpiffeID) {
		t.Fatalf("root approves: %d %s %s", r.code, r.stdout, r.stderr)
	}
	planner2 := mtlsClient(t, listenAddr(t, d2), plannerSVID)
	got, err := planner2.GetIntent(ctx, out.GetIntentId(), time.Minute)
	if err != nil || got.GetStatus() != airlockv1.Status_STATUS_OK {
		t.Fatalf("the approved intent after the restart: %v %v", got, err)
	}
	d2.kill(t)
	if n := executionsIn(t, d.data, out.GetIntentId()); n != 1 {
		t.Fatalf("the intent ran %d times", n)
	}
}
