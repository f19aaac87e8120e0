package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/server/approvalsweb"
	"github.com/airlock-dev/airlock/runtime/store"
)

// extraServices are the services Run builds beside the executor: the
// audit reader and the approvals page.
type extraServices struct {
	audit *auditService
	page  *approvalsweb.Server // nil: --approvals-listen is off
}

// register adds the AuditService to gs.
func (e *extraServices) register(gs *grpc.Server) {
	airlockv1.RegisterAuditServiceServer(gs, e.audit)
}

// newExtraServices builds the audit service over st.
func newExtraServices(st store.Store, auditors *Auditors) *extraServices {
	return &extraServices{audit: &auditService{st: st, auditors: auditors}}
}

// withApprovalsPage returns the ApprovalService s with OpenApprovalsPage
// served by the approvals page (FailedPrecondition while it is off).
func (e *extraServices) withApprovalsPage(s airlockv1.ApprovalServiceServer) airlockv1.ApprovalServiceServer {
	return &pageService{ApprovalServiceServer: s, page: e.page}
}

// pageService serves OpenApprovalsPage and passes every other method of
// the ApprovalService to the executor's implementation.
type pageService struct {
	airlockv1.ApprovalServiceServer
	page *approvalsweb.Server
}

var _ airlockv1.ApprovalServiceServer = (*pageService)(nil)

// OpenApprovalsPage mints a one-time link to the approvals page bound to
// the calling identity.
func (p *pageService) OpenApprovalsPage(ctx context.Context, _ *airlockv1.OpenApprovalsPageRequest) (*airlockv1.OpenApprovalsPageResponse, error) {
	if p.page == nil {
		return nil, status.Error(codes.FailedPrecondition, "the approvals page is off: start `airlock serve` with --approvals-listen 127.0.0.1:PORT")
	}
	c := callerOf(ctx)
	url, exp, err := p.page.Mint(c)
	if err != nil {
		return nil, err
	}
	return &airlockv1.OpenApprovalsPageResponse{Url: url, ExpiresAt: timestamppb.New(exp)}, nil
}

// webApprovals adapts the executor to the page: its errors become gRPC
// statuses, mapped like the gRPC API maps them.
type webApprovals struct{ x approvalsweb.Approvals }

var (
	_ approvalsweb.Approvals = webApprovals{}
	_ approvalsweb.Approvals = (*executor.Executor)(nil)
)

func (w webApprovals) ListApprovals(ctx context.Context, c identity.Caller, req *airlockv1.ListApprovalsRequest) ([]*airlockv1.Approval, error) {
	as, err := w.x.ListApprovals(ctx, c, req)
	return as, webErr(err)
}

func (w webApprovals) GetApproval(ctx context.Context, c identity.Caller, id string) (*airlockv1.Approval, error) {
	a, err := w.x.GetApproval(ctx, c, id)
	return a, webErr(err)
}

func (w webApprovals) Approve(ctx context.Context, c identity.Caller, id, reason string) (*airlockv1.Approval, error) {
	a, err := w.x.Approve(ctx, c, id, reason)
	return a, webErr(err)
}

func (w webApprovals) Deny(ctx context.Context, c identity.Caller, id, reason string) (*airlockv1.Approval, error) {
	a, err := w.x.Deny(ctx, c, id, reason)
	return a, webErr(err)
}

func webErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return grpcError(err)
}

// startApprovalsPage serves the approvals page on addr (loopback, checked
// by approvalsweb.CheckAddr before anything was loaded). It returns the
// page and a function that stops it.
func startApprovalsPage(addr string, x *executor.Executor, log zerolog.Logger) (*approvalsweb.Server, func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--approvals-listen %s: %w", addr, err)
	}
	page, err := approvalsweb.New(approvalsweb.Config{Addr: l.Addr().String(), Approvals: webApprovals{x: x}, MayOpen: x.IsApprover, Logger: log})
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	srv := &http.Server{Handler: page, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() { _ = srv.Serve(l) }()
	log.Info().Str("addr", l.Addr().String()).Str("url", page.URL()+approvalsweb.Path).Msg("serving the approvals page: `airlock approvals open` prints a sign-in link")
	return page, func() { _ = srv.Close() }, nil
}
