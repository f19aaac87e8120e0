package executor_test

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// Without Approvers, only the local operators (the executor's own uid and
// root on the unix socket) see every approval and decide: another planner,
// or a remote identity the operator did not name, cannot list, show or
// approve another caller's intent, and a planner sees only its own.
func TestApproversDenyByDefault(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{Approvers: []identity.Pattern{}})
	ctx := context.Background()
	task := env.task(t)
	pending := env.x.Submit(ctx, planner, write(task, "a.txt", "A"))
	wantOutcome(t, pending, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	id := pending.GetApprovalId()

	other := mustCaller("spiffe://airlock.local/agent/other")
	for _, c := range []identity.Caller{other, operator} {
		if env.x.IsApprover(c) {
			t.Errorf("%s is an approver by default", c.SpiffeID)
		}
		list, err := env.x.ListApprovals(ctx, c, &airlockv1.ListApprovalsRequest{})
		if err != nil || len(list) != 0 {
			t.Errorf("%s lists %d approvals (%v): it must see only its own", c.SpiffeID, len(list), err)
		}
		_, err = env.x.GetApproval(ctx, c, id)
		wantApprovalErr(t, err, codes.NotFound)
		_, err = env.x.Approve(ctx, c, id, "not mine")
		wantApprovalErr(t, err, codes.NotFound)
		_, err = env.x.Deny(ctx, c, id, "not mine")
		wantApprovalErr(t, err, codes.NotFound)
	}
	// The planner sees its own, and still cannot decide it.
	own, err := env.x.ListApprovals(ctx, planner, &airlockv1.ListApprovalsRequest{})
	if err != nil || len(own) != 1 || own[0].GetId() != id {
		t.Fatalf("the planner's own approvals: %v %v", own, err)
	}
	_, err = env.x.Approve(ctx, planner, id, "")
	wantApprovalErr(t, err, codes.PermissionDenied)
	if a, err := env.x.GetApproval(ctx, planner, id); err != nil || a.GetState() != airlockv1.ApprovalState_APPROVAL_STATE_PENDING {
		t.Fatalf("after the refusals: %v %v", a, err)
	}

	// The executor's own uid decides (and sees everything).
	self := identity.FromUID(uint32(os.Geteuid()))
	root := identity.FromUID(0)
	if !env.x.IsApprover(self) || !env.x.IsApprover(root) {
		t.Fatal("the local operators are not approvers")
	}
	list, err := env.x.ListApprovals(ctx, self, &airlockv1.ListApprovalsRequest{})
	if err != nil || len(list) != 1 || list[0].GetId() != id {
		t.Fatalf("the executor's uid lists %v %v", list, err)
	}
	if _, err := env.x.Approve(ctx, self, id, "checked"); err != nil {
		t.Fatal(err)
	}
	out, err := env.x.GetIntentWait(ctx, planner, pending.GetIntentId(), durationpb.New(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_OK, "")

	// Root decides too; a local operator that asked cannot approve its own.
	second := env.x.Submit(ctx, planner, write(task, "b.txt", "B"))
	if a, err := env.x.Deny(ctx, root, second.GetApprovalId(), "not b"); err != nil || a.GetApprover() != root.SpiffeID {
		t.Fatalf("root denies: %v %v", a, err)
	}
	selfTask, err := env.x.BeginTask(ctx, self, &airlockv1.BeginTaskRequest{Purpose: "operator's own"})
	if err != nil {
		t.Fatal(err)
	}
	mine := env.x.Submit(ctx, self, write(selfTask.GetId(), "c.txt", "C"))
	wantOutcome(t, mine, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	_, err = env.x.Approve(ctx, self, mine.GetApprovalId(), "")
	wantApprovalErr(t, err, codes.PermissionDenied)
	if n := executions(t, env.st, second.GetIntentId()) + executions(t, env.st, mine.GetIntentId()); n != 0 {
		t.Fatalf("%d refused intents ran", n)
	}
	if n := executions(t, env.st, pending.GetIntentId()); n != 1 {
		t.Fatalf("the approved intent ran %d times", n)
	}
}
