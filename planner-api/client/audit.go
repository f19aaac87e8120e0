package client

import (
	"context"
	"errors"
	"io"
	"time"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
)

// AuditFilter selects audit events for StreamAudit; empty fields match
// everything.
type AuditFilter struct {
	// AfterSeq starts after this sequence number (0: the first event).
	AfterSeq int64
	TaskID   string
	Caller   string // SPIFFE ID
	Tool     string
	Effect   string // allow, deny or require_approval
	// Follow keeps streaming new events until ctx ends.
	Follow bool
}

// StreamAudit calls fn with every stored audit event that matches f, in
// chain order; with f.Follow it then waits for new events until ctx ends
// or fn returns an error. It returns fn's error, nil at the end of a
// stream without Follow, or the RPC's error (PermissionDenied unless the
// caller is one of the executor's --auditors). Only operators may read the
// audit log.
func (c *Client) StreamAudit(ctx context.Context, f AuditFilter, fn func(*airlockv1.AuditEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := airlockv1.NewAuditServiceClient(c.conn).StreamAudit(ctx, &airlockv1.StreamAuditRequest{
		AfterSeq: f.AfterSeq, TaskId: f.TaskID, Caller: f.Caller, Tool: f.Tool, Effect: f.Effect, Follow: f.Follow,
	})
	if err != nil {
		return err
	}
	return recvEach(stream.Recv, fn)
}

// recvEach calls fn with every message recv returns until the stream ends
// (nil), recv fails or fn returns an error (that error).
func recvEach[T any](recv func() (T, error), fn func(T) error) error {
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// VerifyAudit asks the executor to verify the whole audit chain.
func (c *Client) VerifyAudit(ctx context.Context) (*airlockv1.VerifyAuditResponse, error) {
	return airlockv1.NewAuditServiceClient(c.conn).VerifyAudit(ctx, &airlockv1.VerifyAuditRequest{})
}

// OpenApprovalsPage returns a one-time link to the executor's approvals
// web page, bound to this client's identity, and when it expires.
func (c *Client) OpenApprovalsPage(ctx context.Context) (string, time.Time, error) {
	resp, err := airlockv1.NewApprovalServiceClient(c.conn).OpenApprovalsPage(ctx, &airlockv1.OpenApprovalsPageRequest{})
	if err != nil {
		return "", time.Time{}, err
	}
	return resp.GetUrl(), resp.GetExpiresAt().AsTime(), nil
}
