package client

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
)

// WithIdempotencyKey makes the submission idempotent: a second Submit by
// the same caller with the same key, tool, task and arguments returns the
// first intent's outcome instead of running again (at most 128 printable
// ASCII characters; a UUID, say). With other tool, task or arguments the
// outcome is invalid, code idempotency_key_reused.
func WithIdempotencyKey(key string) SubmitOption {
	return func(r *airlockv1.SubmitRequest) { r.IdempotencyKey = key }
}

// WithApprovalWait lets Submit wait up to d (the executor caps it, 5m by
// default) when policy requires an approval: approved, the intent runs
// and Submit returns its final outcome; denied or expired, a denied
// outcome; still undecided, pending_approval with the approval id.
func WithApprovalWait(d time.Duration) SubmitOption {
	return func(r *airlockv1.SubmitRequest) {
		if d > 0 {
			r.ApprovalWait = durationpb.New(d)
		}
	}
}

// GetIntent returns the stored outcome of one of this caller's intents.
// With wait > 0 and the intent pending approval, the executor waits up to
// wait (capped) for the decision, running an approved intent, and returns
// the outcome then.
func (c *Client) GetIntent(ctx context.Context, intentID string, wait time.Duration) (*airlockv1.Outcome, error) {
	req := &airlockv1.GetIntentRequest{IntentId: intentID}
	if wait > 0 {
		req.Wait = durationpb.New(wait)
	}
	return c.Intents.GetIntent(ctx, req)
}

// ApprovalFilter selects approvals for ListApprovals and WatchApprovals.
type ApprovalFilter struct {
	// States: none means pending only for ListApprovals, every state for
	// WatchApprovals.
	States []airlockv1.ApprovalState
	TaskID string
	// Limit bounds ListApprovals (default 100, at most 1000).
	Limit int
}

func (c *Client) approvals() airlockv1.ApprovalServiceClient {
	return airlockv1.NewApprovalServiceClient(c.conn)
}

// ListApprovals lists approvals, newest first. A caller outside the
// executor's --approvers sees only its own.
func (c *Client) ListApprovals(ctx context.Context, f ApprovalFilter) ([]*airlockv1.Approval, error) {
	resp, err := c.approvals().ListApprovals(ctx, &airlockv1.ListApprovalsRequest{States: f.States, TaskId: f.TaskID, Limit: int32(f.Limit)})
	if err != nil {
		return nil, err
	}
	return resp.GetApprovals(), nil
}

// GetApproval returns one approval with the exact arguments it covers.
func (c *Client) GetApproval(ctx context.Context, id string) (*airlockv1.Approval, error) {
	return c.approvals().GetApproval(ctx, &airlockv1.GetApprovalRequest{ApprovalId: id})
}

// Approve grants a pending approval as this client's identity, which must
// differ from the requester's (PermissionDenied). Approving twice returns
// the approval and runs nothing again; a denied or expired approval fails
// with FailedPrecondition.
func (c *Client) Approve(ctx context.Context, id, reason string) (*airlockv1.Approval, error) {
	return c.approvals().Approve(ctx, &airlockv1.DecideApprovalRequest{ApprovalId: id, Reason: reason})
}

// Deny refuses a pending approval; reason is required and reaches the
// planner in the denied outcome.
func (c *Client) Deny(ctx context.Context, id, reason string) (*airlockv1.Approval, error) {
	return c.approvals().Deny(ctx, &airlockv1.DecideApprovalRequest{ApprovalId: id, Reason: reason})
}

// WatchApprovals calls fn with every approval that matches f, then with
// each approval that appears or changes state, until ctx ends (it then
// returns nil) or fn returns an error (returned).
func (c *Client) WatchApprovals(ctx context.Context, f ApprovalFilter, fn func(*airlockv1.Approval) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.approvals().WatchApprovals(ctx, &airlockv1.WatchApprovalsRequest{States: f.States, TaskId: f.TaskID})
	if err != nil {
		return err
	}
	var fnErr error
	err = recvEach(stream.Recv, func(ev *airlockv1.ApprovalEvent) error {
		fnErr = fn(ev.GetApproval())
		return fnErr
	})
	if fnErr == nil && ctx.Err() != nil {
		return nil // ctx ended
	}
	return err
}

// ApprovalStateName is the lowercase name of an approval state: pending,
// approved, denied, expired.
func ApprovalStateName(s airlockv1.ApprovalState) string {
	switch s {
	case airlockv1.ApprovalState_APPROVAL_STATE_PENDING:
		return "pending"
	case airlockv1.ApprovalState_APPROVAL_STATE_APPROVED:
		return "approved"
	case airlockv1.ApprovalState_APPROVAL_STATE_DENIED:
		return "denied"
	case airlockv1.ApprovalState_APPROVAL_STATE_EXPIRED:
		return "expired"
	}
	return "unspecified"
}

// ParseApprovalState parses pending, approved, denied or expired.
func ParseApprovalState(s string) (airlockv1.ApprovalState, bool) {
	for _, st := range []airlockv1.ApprovalState{airlockv1.ApprovalState_APPROVAL_STATE_PENDING, airlockv1.ApprovalState_APPROVAL_STATE_APPROVED,
		airlockv1.ApprovalState_APPROVAL_STATE_DENIED, airlockv1.ApprovalState_APPROVAL_STATE_EXPIRED} {
		if ApprovalStateName(st) == s {
			return st, true
		}
	}
	return 0, false
}
