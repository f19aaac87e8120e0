package server

import (
	"context"
	"errors"

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

func streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, err := authenticate(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

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
	o, err := s.x.GetIntent(ctx, callerOf(ctx), req.GetIntentId())
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
