package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// callerKey carries the authenticated caller in a request context.
type callerKey struct{}

// authenticate resolves the caller of every request from its connection,
// and refuses requests that carry no identity. It runs for every method,
// health and reflection included: every accepted connection carries an
// identity (the peer's uid on the unix socket, its SVID over mTLS).
func authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	c, err := identity.FromContext(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "%s: %v", fullMethod, err)
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

func unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// streamAuth authenticates a stream like unaryAuth, and ends it when drain
// ends: a following stream (StreamAudit with follow, WatchApprovals, a
// health watch) never ends on its own, and would hold a graceful stop for
// the whole drain timeout. Such a stream ends with Unavailable, so that its
// client reconnects.
func streamAuth(drain context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(drain, cancel)()
		err = handler(srv, callerStream{ServerStream: ss, ctx: ctx})
		if drain.Err() != nil && ss.Context().Err() == nil {
			return status.Error(codes.Unavailable, "the executor is shutting down: reconnect once it is back, or to another executor")
		}
		return err
	}
}

// callerStream is a server stream whose context carries the caller and ends
// when the server drains.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s callerStream) Context() context.Context { return s.ctx }

func callerOf(ctx context.Context) identity.Caller {
	c, _ := ctx.Value(callerKey{}).(identity.Caller)
	return c
}

// grpcError maps executor errors to gRPC status codes.
func grpcError(err error) error {
	var te *executor.TaskError
	if errors.As(err, &te) {
		code := map[string]codes.Code{
			"invalid_argument":    codes.InvalidArgument,
			"not_found":           codes.NotFound,
			"permission_denied":   codes.PermissionDenied,
			"failed_precondition": codes.FailedPrecondition,
			"resource_exhausted":  codes.ResourceExhausted,
		}[te.Code]
		if code == codes.OK {
			code = codes.Unknown
		}
		return status.Error(code, te.Message)
	}
	var ae *executor.ApprovalError
	if errors.As(err, &ae) {
		return status.Error(ae.Code, ae.Message)
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

type taskService struct {
	airlockv1.UnimplementedTaskServiceServer
	x *executor.Executor
}

func (s *taskService) BeginTask(ctx context.Context, req *airlockv1.BeginTaskRequest) (*airlockv1.BeginTaskResponse, error) {
	t, err := s.x.BeginTask(ctx, callerOf(ctx), req)
	if err != nil {
		return nil, grpcError(err)
	}
	return &airlockv1.BeginTaskResponse{Task: t}, nil
}

func (s *taskService) EndTask(ctx context.Context, req *airlockv1.EndTaskRequest) (*airlockv1.EndTaskResponse, error) {
	t, err := s.x.EndTask(ctx, callerOf(ctx), req.GetTaskId(), req.GetReason())
	if err != nil {
		return nil, grpcError(err)
	}
	return &airlockv1.EndTaskResponse{Task: t}, nil
}

func (s *taskService) GetTask(ctx context.Context, req *airlockv1.GetTaskRequest) (*airlockv1.GetTaskResponse, error) {
	t, err := s.x.GetTask(ctx, callerOf(ctx), req.GetTaskId())
	if err != nil {
		return nil, grpcError(err)
	}
	return &airlockv1.GetTaskResponse{Task: t}, nil
}

func (s *taskService) RevokeCredentials(ctx context.Context, req *airlockv1.RevokeCredentialsRequest) (*airlockv1.RevokeCredentialsResponse, error) {
	n, err := s.x.RevokeCredentials(ctx, callerOf(ctx), req.GetTaskId(), req.GetReason())
	if err != nil {
		return nil, grpcError(err)
	}
	return &airlockv1.RevokeCredentialsResponse{Revoked: int32(n)}, nil
}

type intentService struct {
	airlockv1.UnimplementedIntentServiceServer
	x *executor.Executor
}

func (s *intentService) Submit(ctx context.Context, req *airlockv1.SubmitRequest) (*airlockv1.Outcome, error) {
	return s.x.Submit(ctx, callerOf(ctx), req), nil
}

func (s *intentService) GetIntent(ctx context.Context, req *airlockv1.GetIntentRequest) (*airlockv1.Outcome, error) {
	o, err := s.x.GetIntentWait(ctx, callerOf(ctx), req.GetIntentId(), req.GetWait())
	if err != nil {
		return nil, grpcError(err)
	}
	return o, nil
}

type toolService struct {
	airlockv1.UnimplementedToolServiceServer
	x *executor.Executor
}

func (s *toolService) ListTools(context.Context, *airlockv1.ListToolsRequest) (*airlockv1.ListToolsResponse, error) {
	return &airlockv1.ListToolsResponse{Tools: s.x.ListTools()}, nil
}

// approvalService is the operator-facing ApprovalService (OpenApprovalsPage
// is served by the approvals page, see extraServices.withApprovalsPage).
type approvalService struct {
	airlockv1.UnimplementedApprovalServiceServer
	x *executor.Executor
}

func (s *approvalService) ListApprovals(ctx context.Context, req *airlockv1.ListApprovalsRequest) (*airlockv1.ListApprovalsResponse, error) {
	as, err := s.x.ListApprovals(ctx, callerOf(ctx), req)
	if err != nil {
		return nil, grpcError(err)
	}
	return &airlockv1.ListApprovalsResponse{Approvals: as}, nil
}

func (s *approvalService) GetApproval(ctx context.Context, req *airlockv1.GetApprovalRequest) (*airlockv1.Approval, error) {
	a, err := s.x.GetApproval(ctx, callerOf(ctx), req.GetApprovalId())
	if err != nil {
		return nil, grpcError(err)
	}
	return a, nil
}

func (s *approvalService) Approve(ctx context.Context, req *airlockv1.DecideApprovalRequest) (*airlockv1.Approval, error) {
	a, err := s.x.Approve(ctx, callerOf(ctx), req.GetApprovalId(), req.GetReason())
	if err != nil {
		return nil, grpcError(err)
	}
	return a, nil
}

func (s *approvalService) Deny(ctx context.Context, req *airlockv1.DecideApprovalRequest) (*airlockv1.Approval, error) {
	a, err := s.x.Deny(ctx, callerOf(ctx), req.GetApprovalId(), req.GetReason())
	if err != nil {
		return nil, grpcError(err)
	}
	return a, nil
}

func (s *approvalService) WatchApprovals(req *airlockv1.WatchApprovalsRequest, ss grpc.ServerStreamingServer[airlockv1.ApprovalEvent]) error {
	ctx := ss.Context()
	err := s.x.WatchApprovals(ctx, callerOf(ctx), req, func(a *airlockv1.Approval) error {
		return ss.Send(&airlockv1.ApprovalEvent{Approval: a})
	})
	if err == nil || ctx.Err() != nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return grpcError(err)
}

// parseApprovers compiles the --approvers patterns.
func parseApprovers(list []string) ([]identity.Pattern, error) {
	return parsePatterns("--approvers", list)
}

// parsePatterns compiles the SPIFFE ID patterns of flag: each value may
// hold several, comma-separated. Every bad pattern is reported.
func parsePatterns(flag string, list []string) ([]identity.Pattern, error) {
	var out []identity.Pattern
	var errs []error
	for _, s := range list {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			pat, err := identity.ParsePattern(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", flag, err))
				continue
			}
			out = append(out, pat)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
