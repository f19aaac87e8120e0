package server

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/store"
)

// Bounds of the audit service.
const (
	// AuditPage is how many records StreamAudit reads from the store at a
	// time.
	AuditPage = 500
	// AuditPollInterval is how often a following StreamAudit polls the
	// store for new records.
	AuditPollInterval = 200 * time.Millisecond
	// maxAuditFilter bounds each filter string of StreamAudit.
	maxAuditFilter = 2048
	// MaxAuditStreams bounds the concurrent StreamAudit calls, and
	// MaxAuditStreamsPerCaller those of one caller: each follow polls the
	// store until its client goes away.
	MaxAuditStreams          = 32
	MaxAuditStreamsPerCaller = 4
)

// Auditors decides who may read the audit log through the AuditService:
// the log names every caller, their tasks and tools, so only operator
// identities may read it.
type Auditors struct {
	patterns []identity.Pattern
}

// NewAuditors compiles the SPIFFE ID patterns of the identities that may
// read the audit log (a value may hold several, comma-separated, like
// --approvers). With no pattern the auditors are the local operators
// (executor.LocalOperators, the default approvers too): the executor's own
// effective uid and root on the unix socket, who can read the store anyway.
func NewAuditors(patterns []string) (*Auditors, error) {
	ps, err := parsePatterns("--auditors", patterns)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		ps = executor.LocalOperators()
	}
	return &Auditors{patterns: ps}, nil
}

// Allowed reports whether c may read the audit log.
func (a *Auditors) Allowed(c identity.Caller) bool {
	if a == nil || c.SpiffeID == "" {
		return false
	}
	for _, p := range a.patterns {
		if p.Match(c) {
			return true
		}
	}
	return false
}

// check returns PermissionDenied unless c is an auditor.
func (a *Auditors) check(c identity.Caller) error {
	if a.Allowed(c) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s may not read the audit log: the executor's operator adds it with `airlock serve --auditors PATTERN`", c.SpiffeID)
}

// auditService implements the AuditService over the store.
type auditService struct {
	airlockv1.UnimplementedAuditServiceServer
	st       store.Store
	auditors *Auditors
	// poll is the follow interval (AuditPollInterval).
	poll time.Duration

	mu      sync.Mutex
	streams map[string]int // open StreamAudit calls per caller
	total   int
}

// openStream admits one more StreamAudit call of caller, or refuses it
// with ResourceExhausted. release gives the slot back.
func (s *auditService) openStream(caller string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		s.streams = map[string]int{}
	}
	if s.streams[caller] >= MaxAuditStreamsPerCaller {
		return nil, status.Errorf(codes.ResourceExhausted, "%s has %d audit streams open, the most one caller may: close one first", caller, MaxAuditStreamsPerCaller)
	}
	if s.total >= MaxAuditStreams {
		return nil, status.Errorf(codes.ResourceExhausted, "%d audit streams are open, the most this executor serves: try again later", s.total)
	}
	s.streams[caller]++
	s.total++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.streams[caller]--; s.streams[caller] <= 0 {
			delete(s.streams, caller)
		}
		s.total--
	}, nil
}

var _ airlockv1.AuditServiceServer = (*auditService)(nil)

// auditFilter checks and converts the filter of a StreamAudit request.
func auditFilter(req *airlockv1.StreamAuditRequest) (store.AuditFilter, error) {
	f := store.AuditFilter{TaskID: req.GetTaskId(), Caller: req.GetCaller(), Tool: req.GetTool(), Effect: req.GetEffect()}
	for name, v := range map[string]string{"task_id": f.TaskID, "caller": f.Caller, "tool": f.Tool, "effect": f.Effect} {
		if len(v) > maxAuditFilter {
			return f, status.Errorf(codes.InvalidArgument, "%s is %d bytes: at most %d", name, len(v), maxAuditFilter)
		}
	}
	switch f.Effect {
	case "", "allow", "deny", "require_approval":
	default:
		return f, status.Errorf(codes.InvalidArgument, "effect %q: use allow, deny or require_approval", f.Effect)
	}
	if req.GetAfterSeq() < 0 {
		return f, status.Errorf(codes.InvalidArgument, "after_seq %d: use 0 (from the first event) or a sequence number", req.GetAfterSeq())
	}
	return f, nil
}

// StreamAudit sends the matching records in chain order, then, with follow,
// polls the store for new ones until the client goes away.
func (s *auditService) StreamAudit(req *airlockv1.StreamAuditRequest, ss airlockv1.AuditService_StreamAuditServer) error {
	ctx := ss.Context()
	c := callerOf(ctx)
	if err := s.auditors.check(c); err != nil {
		return err
	}
	f, err := auditFilter(req)
	if err != nil {
		return err
	}
	release, err := s.openStream(c.SpiffeID)
	if err != nil {
		return err
	}
	defer release()
	poll := s.poll
	if poll <= 0 {
		poll = AuditPollInterval
	}
	after := req.GetAfterSeq()
	var timer *time.Timer
	for {
		recs, err := s.st.AuditFiltered(ctx, after, f, AuditPage)
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Errorf(codes.Unavailable, "read the audit log: %v", err)
		}
		for _, r := range recs {
			if err := ss.Send(&airlockv1.AuditEvent{Seq: r.Seq, Hash: r.Hash, Json: string(r.Body)}); err != nil {
				return err
			}
			after = r.Seq
		}
		if len(recs) == AuditPage {
			continue // more is stored: read on without waiting
		}
		if !req.GetFollow() {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(poll)
			defer timer.Stop()
		} else {
			timer.Reset(poll)
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-timer.C:
		}
	}
}

// VerifyAudit verifies the whole chain.
func (s *auditService) VerifyAudit(ctx context.Context, _ *airlockv1.VerifyAuditRequest) (*airlockv1.VerifyAuditResponse, error) {
	if err := s.auditors.check(callerOf(ctx)); err != nil {
		return nil, err
	}
	rep := store.Verify(ctx, s.st)
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	resp := &airlockv1.VerifyAuditResponse{Ok: rep.OK(), Events: rep.Count, Head: rep.Head.Hash}
	if !rep.OK() {
		resp.Problem = rep.String()
	}
	return resp, nil
}
