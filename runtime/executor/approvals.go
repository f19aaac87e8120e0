package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/internal/ids"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
	"github.com/airlock-dev/airlock/runtime/store"
)

// Defaults and bounds of approvals.
const (
	DefaultApprovalTTL        = time.Hour
	DefaultApprovalWaitMax    = 5 * time.Minute
	DefaultApprovalPoll       = 500 * time.Millisecond
	DefaultApprovalStaleClaim = 15 * time.Minute
	// MaxApprovalReason bounds an approver's reason.
	MaxApprovalReason = 1 << 10
	// MaxWatchStreams bounds the concurrent WatchApprovals streams.
	MaxWatchStreams = 64
	// MaxWatchStreamsPerCaller bounds the concurrent WatchApprovals
	// streams of one caller.
	MaxWatchStreamsPerCaller = 4
	// watchReserved is how many of MaxWatchStreams only approvers may
	// open: planners cannot take every watch and blind the operators.
	watchReserved = 16
	// maxApprovalRuns bounds the approved intents the loop runs at once.
	maxApprovalRuns = 16
	// approvalsPerRound bounds the approvals the loop handles per round.
	approvalsPerRound = 100
	// waitPoll and watchPoll are how often waiters and watchers read the
	// store (which several executors share).
	waitPoll  = 200 * time.Millisecond
	watchPoll = 250 * time.Millisecond
	// watchWindow bounds what one watch poll reads.
	watchWindow = 1000
)

// Audit event types of approval decisions.
const (
	TypeApprovalApprove = "approval.approve"
	TypeApprovalDeny    = "approval.deny"
	TypeApprovalExpire  = "approval.expire"
)

// ApprovalError is an approvals request the executor refuses; Code is the
// gRPC code it maps to (NotFound, PermissionDenied, FailedPrecondition,
// InvalidArgument, ResourceExhausted).
type ApprovalError struct {
	Code    codes.Code
	Message string
}

func (e *ApprovalError) Error() string { return e.Message }

// approvalState is the executor's approvals machinery.
type approvalState struct {
	ctx     context.Context // runs approved intents; canceled by Close
	cancel  context.CancelFunc
	done    chan struct{} // closed when the loop has exited
	wg      sync.WaitGroup
	sem     chan struct{} // bounds the loop's runs
	claimID string        // this executor's claims

	mu      sync.Mutex
	running map[string]bool // approval ids this executor is running
	// watches counts the open WatchApprovals streams per caller;
	// watchTotal and watchPlanners count them all and those of callers
	// that are not approvers (guarded by mu).
	watches                   map[string]int
	watchTotal, watchPlanners int
}

// startApprovals applies the approval defaults and starts the loop that
// runs approved intents nobody waits for, expires pending approvals and
// settles claims left by an executor that died mid-run.
func (e *Executor) startApprovals() {
	cfg := &e.cfg
	if cfg.ApprovalTTL <= 0 {
		cfg.ApprovalTTL = DefaultApprovalTTL
	}
	if cfg.ApprovalWaitMax <= 0 {
		cfg.ApprovalWaitMax = DefaultApprovalWaitMax
	}
	if cfg.ApprovalPoll <= 0 {
		cfg.ApprovalPoll = DefaultApprovalPoll
	}
	if cfg.ApprovalStaleClaim <= 0 {
		cfg.ApprovalStaleClaim = DefaultApprovalStaleClaim
	}
	for _, t := range e.tools {
		if d := 2 * time.Duration(t.m.Spec.Limits.Timeout); d > cfg.ApprovalStaleClaim {
			cfg.ApprovalStaleClaim = d
		}
	}
	st := &e.approvals
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.done = make(chan struct{})
	st.sem = make(chan struct{}, maxApprovalRuns)
	st.watches = map[string]int{}
	st.claimID = e.runID
	st.running = map[string]bool{}
	go e.approvalLoop(st.ctx)
}

// stopApprovals stops the loop and waits for the intents it runs.
func (e *Executor) stopApprovals() {
	st := &e.approvals
	st.cancel()
	<-st.done
	st.wg.Wait()
}

func (e *Executor) approvalLoop(ctx context.Context) {
	defer close(e.approvals.done)
	tick := time.NewTicker(e.cfg.ApprovalPoll)
	defer tick.Stop()
	for {
		// The first round runs at start: approved intents a previous run
		// left behind run now.
		e.approvalsRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// approvalsRound handles the approvals due now.
func (e *Executor) approvalsRound(ctx context.Context) {
	st := &e.approvals
	now := time.Now().UTC()
	due, err := e.cfg.Store.ApprovalsDue(ctx, now, e.cfg.ApprovalStaleClaim, approvalsPerRound)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error().Err(err).Msg("could not read the approvals due: retrying")
		}
		return
	}
	for _, a := range due {
		if ctx.Err() != nil {
			return
		}
		st.mu.Lock()
		busy := st.running[a.ID]
		st.mu.Unlock()
		if busy {
			continue
		}
		switch a.State {
		case store.ApprovalPending:
			if now.After(a.ExpiresAt) {
				if err := e.expireApproval(ctx, a); err != nil && !errors.Is(err, store.ErrConflict) {
					e.log.Error().Err(err).Str("approval", a.ID).Msg("could not expire an approval: retrying")
				}
			}
		case store.ApprovalApproved:
			select {
			case st.sem <- struct{}{}:
			default:
				continue // busy: the next round takes it
			}
			st.wg.Add(1)
			go func() {
				defer st.wg.Done()
				defer func() { <-st.sem }()
				e.runApproved(a)
			}()
		case store.ApprovalClaimed:
			if err := e.interruptApproval(ctx, a); err != nil && !errors.Is(err, store.ErrConflict) {
				e.log.Error().Err(err).Str("approval", a.ID).Msg("could not settle an interrupted approved intent: retrying")
			}
		}
	}
}

// requireApproval records a pending approval bound to the task, caller,
// tool, tool digest and these exact canonical arguments, with the
// decision event and the pending intent, in one batch.
func (c *call) requireApproval(ctx context.Context, canonical []byte) {
	e, t := c.e, c.tool
	now := time.Now().UTC()
	exp := now.Add(e.cfg.ApprovalTTL)
	if c.task != nil && c.task.ExpiresAt.Before(exp) {
		exp = c.task.ExpiresAt
	}
	a := &store.Approval{
		ID: newID("apr"), IntentID: c.out.IntentId, TaskID: c.req.GetTaskId(), Caller: c.caller.SpiffeID,
		Tool: t.m.Metadata.Name, ToolDigest: t.m.Digest(), ArgsSHA256: c.argsDigest, Arguments: canonical,
		Justification: clip(c.req.GetJustification(), maxLogString), Rules: c.decision.Rules,
		Message: clip(c.decision.Message, maxLogString), Risk: string(t.m.Spec.Risk), State: store.ApprovalPending,
		CreatedAt: now, ExpiresAt: exp, IdempotencyKey: c.req.GetIdempotencyKey(),
	}
	c.approvalNew = a
	c.out.ApprovalId = a.ID
	msg := c.decision.Message
	if msg != "" {
		msg += ": "
	}
	msg += fmt.Sprintf("approval %s waits for an operator until %s (airlock approvals approve %s); ask for the outcome with GetIntent %s",
		a.ID, exp.Format(time.RFC3339), a.ID, a.IntentID)
	c.finishWith(ctx, audit.TypeDecision, airlockv1.Status_STATUS_PENDING_APPROVAL, outcomeError("approval_required", msg, ""), "")
}

// waitBound caps a requested wait (nil or non-positive: no wait).
func (e *Executor) waitBound(d *durationpb.Duration) time.Duration {
	if d == nil || d.CheckValid() != nil {
		return 0
	}
	w := d.AsDuration()
	if w <= 0 {
		return 0
	}
	return min(w, e.cfg.ApprovalWaitMax)
}

// waitDecision waits (at most wait, and while ctx lives) until the
// approval of a pending intent is decided. Approved: the intent runs now,
// exactly once (here, or wherever it was claimed first), and its final
// outcome returns. Denied or expired: the denied outcome. Still pending
// when the wait is over: the pending outcome.
func (e *Executor) waitDecision(ctx context.Context, _ identity.Caller, pending *airlockv1.Outcome, wait time.Duration) *airlockv1.Outcome {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	current := func() *airlockv1.Outcome {
		if o, err := e.storedOutcome(context.WithoutCancel(ctx), pending.GetIntentId()); err == nil {
			return o
		}
		return pending
	}
	for {
		a, err := e.cfg.Store.Approval(ctx, pending.GetApprovalId())
		if err != nil {
			return current()
		}
		switch a.State {
		case store.ApprovalPending:
			if time.Now().After(a.ExpiresAt) {
				if err := e.expireApproval(ctx, a); err == nil || errors.Is(err, store.ErrConflict) {
					continue
				}
			}
		case store.ApprovalApproved:
			if out, ran := e.runApproved(a); ran {
				return out
			}
		case store.ApprovalClaimed:
			// Running elsewhere (or here, by the loop): wait for its outcome.
		default:
			return current()
		}
		select {
		case <-ctx.Done():
			return current()
		case <-deadline.C:
			return current()
		case <-time.After(waitPoll):
		}
	}
}

// GetIntentWait is GetIntent that, when the intent is pending approval and
// wait is positive, waits (capped by Config.ApprovalWaitMax) for the
// decision and returns the outcome then.
func (e *Executor) GetIntentWait(ctx context.Context, caller identity.Caller, id string, wait *durationpb.Duration) (*airlockv1.Outcome, error) {
	out, err := e.GetIntent(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if out.GetStatus() == airlockv1.Status_STATUS_PENDING_APPROVAL && out.GetApprovalId() != "" {
		if w := e.waitBound(wait); w > 0 {
			return e.waitDecision(ctx, caller, out, w), nil
		}
	}
	return out, nil
}

// storedOutcome reads an intent's stored outcome.
func (e *Executor) storedOutcome(ctx context.Context, id string) (*airlockv1.Outcome, error) {
	in, err := e.cfg.Store.Intent(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &airlockv1.Outcome{}
	if err := proto.Unmarshal(in.Outcome, out); err != nil {
		return nil, fmt.Errorf("decode stored outcome of intent %s: %w", id, err)
	}
	return out, nil
}

// runApproved claims an approved intent and runs it, exactly once across
// every executor sharing the store. ran is false when the claim went to
// someone else (or the store refused it): nothing ran here.
func (e *Executor) runApproved(a *store.Approval) (out *airlockv1.Outcome, ran bool) {
	st := &e.approvals
	st.mu.Lock()
	if st.running[a.ID] {
		st.mu.Unlock()
		return nil, false
	}
	st.running[a.ID] = true
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.running, a.ID)
		st.mu.Unlock()
	}()
	ctx := st.ctx
	err := e.commit(ctx, &store.Batch{ApprovalChanges: []*store.ApprovalChange{{
		ID: a.ID, From: []store.ApprovalState{store.ApprovalApproved}, To: store.ApprovalClaimed,
		At: time.Now().UTC(), ClaimedBy: st.claimID,
	}}})
	if err != nil {
		if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			e.log.Error().Err(err).Str("approval", a.ID).Msg("could not claim an approved intent: retrying")
		}
		return nil, false
	}
	e.log.Info().Str("approval", a.ID).Str("intent", a.IntentID).Str("claim", st.claimID).Msg("running an approved intent")
	c := &call{
		e: e, start: time.Now(), claimed: a,
		req: &airlockv1.SubmitRequest{Tool: a.Tool, Arguments: string(a.Arguments), TaskId: a.TaskID, Justification: a.Justification},
		out: &airlockv1.Outcome{IntentId: a.IntentID, TaskId: a.TaskID, Tool: a.Tool, ApprovalId: a.ID},
	}
	c.runApproved(ctx)
	return c.out, true
}

// runApproved runs a claimed approved intent from the re-check on: the
// tool must be the approved module, the task still open and the caller's,
// the arguments the approved ones, and policy (with approval = approved)
// must still allow it. Whatever the outcome, it is stored under the
// intent's id and the approval becomes done, in one batch.
func (c *call) runApproved(ctx context.Context) {
	e, a := c.e, c.claimed
	c.argsDigest = a.ArgsSHA256
	stale := func(msg string) {
		c.reject(ctx, airlockv1.Status_STATUS_FAILED, outcomeError("approval_stale",
			msg+": the approval covers only what was approved, so the tool did not run; submit again to ask for a new approval", ""))
	}
	caller, err := identity.Parse(a.Caller)
	if err != nil {
		c.reject(ctx, airlockv1.Status_STATUS_FAILED, outcomeError("internal", "the approval's caller is not a SPIFFE ID: "+err.Error(), ""))
		return
	}
	c.caller = caller
	t, ok := e.tools[a.Tool]
	if !ok {
		stale(fmt.Sprintf("tool %s is no longer loaded", a.Tool))
		return
	}
	if d := t.m.Digest(); d != a.ToolDigest {
		stale(fmt.Sprintf("tool %s changed since approval %s (module %s, approved %s)", a.Tool, a.ID, clip(d, 16), clip(a.ToolDigest, 16)))
		return
	}
	c.tool = t
	if a.TaskID != "" {
		// taskFor reads the task from the store: it may have ended on
		// another executor.
		task, oerr, status := e.taskFor(ctx, caller, a.TaskID)
		if oerr != nil {
			c.reject(ctx, status, oerr)
			return
		}
		c.task = task
	}
	args, err := t.m.ValidateArgs(a.Arguments)
	if err != nil {
		stale("the approved arguments no longer fit the tool's input schema: " + errMessage(err))
		return
	}
	canonical := manifest.Canonical(args)
	if sum := sha256.Sum256(canonical); hex.EncodeToString(sum[:]) != a.ArgsSHA256 {
		stale("the stored arguments do not match their approved digest")
		return
	}
	d := c.decide(ctx, args, &policy.Approval{State: policy.ApprovalApproved, Approver: a.Approver})
	if d.Effect != policy.Allow {
		c.reject(ctx, airlockv1.Status_STATUS_DENIED, outcomeError("denied", d.Message, ""))
		return
	}
	c.execute(ctx, canonical)
}

// approvalEvent is the audit event of an approval decision by actor.
func (e *Executor) approvalEvent(typ string, a *store.Approval, actor, reason string) *audit.Event {
	ev := &audit.Event{
		ID: newID("evt"), Time: time.Now().UTC(), Type: typ, Executor: e.cfg.ExecutorID, Caller: actor,
		TaskID: a.TaskID, IntentID: a.IntentID, ArgsSHA256: a.ArgsSHA256,
		Tool:    &audit.ToolRef{Name: a.Tool, Digest: a.ToolDigest},
		Details: map[string]any{"approval_id": a.ID, "requester": a.Caller, "approver": actor},
	}
	if reason != "" {
		ev.Details["reason"] = clip(reason, MaxApprovalReason)
	}
	return ev
}

// settle stores the final outcome of an intent whose approval was denied,
// expired or interrupted, with the approval's guarded change and its audit
// event, in one batch.
func (e *Executor) settle(ctx context.Context, a *store.Approval, ch *store.ApprovalChange, ev *audit.Event, status airlockv1.Status, oerr *airlockv1.Error) error {
	out, err := e.storedOutcome(ctx, a.IntentID)
	if errors.Is(err, store.ErrNotFound) {
		out, err = &airlockv1.Outcome{IntentId: a.IntentID, TaskId: a.TaskID, Tool: a.Tool, ApprovalId: a.ID}, nil
	}
	if err != nil {
		return err
	}
	out.Status, out.Error, out.Output, out.AuditEventId = status, oerr, "", ev.ID
	ev.Status = status.Name()
	ev.Error = &audit.ErrorInfo{Code: oerr.Code, Message: clip(oerr.Message, MaxErrorMessage)}
	rec, err := proto.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode outcome: %w", err)
	}
	b := &store.Batch{
		Events: []*audit.Event{ev},
		Intents: []*store.Intent{{ID: a.IntentID, TaskID: a.TaskID, Caller: a.Caller, Tool: a.Tool,
			Status: status.Name(), Created: a.CreatedAt, Outcome: rec}},
		ApprovalChanges: []*store.ApprovalChange{ch},
	}
	if err := e.commit(context.WithoutCancel(ctx), b); err != nil {
		return err
	}
	e.logEvent(ev)
	return nil
}

// expireApproval moves a pending approval past its expiry to expired; its
// intent is denied with code approval_expired.
func (e *Executor) expireApproval(ctx context.Context, a *store.Approval) error {
	now := time.Now().UTC()
	ev := e.approvalEvent(TypeApprovalExpire, a, "airlock", "expired")
	ch := &store.ApprovalChange{ID: a.ID, From: []store.ApprovalState{store.ApprovalPending}, To: store.ApprovalExpired,
		At: now, Approver: "airlock", Reason: "expired"}
	return e.settle(ctx, a, ch, ev, airlockv1.Status_STATUS_DENIED, outcomeError("approval_expired",
		fmt.Sprintf("nobody decided approval %s before it expired at %s, so the tool did not run: submit again to ask for a new approval", a.ID, a.ExpiresAt.Format(time.RFC3339)), ""))
}

// endTaskApprovals expires the pending approvals of a task that ended: an
// operator is never asked to approve work whose task is gone, and the
// planner waiting on them learns why. An approved intent not yet claimed
// fails with task_ended when it is picked up (the run re-reads the task).
func (e *Executor) endTaskApprovals(ctx context.Context, taskID string) {
	ctx = context.WithoutCancel(ctx)
	as, err := e.cfg.Store.Approvals(ctx, store.ApprovalFilter{
		TaskID: taskID, States: []store.ApprovalState{store.ApprovalPending}, Limit: store.MaxApprovalsLimit,
	})
	if err != nil {
		e.log.Error().Err(err).Str("task", taskID).Msg("could not read the pending approvals of an ended task: they expire on their own")
		return
	}
	for _, a := range as {
		ev := e.approvalEvent(TypeApprovalExpire, a, "airlock", "task ended")
		ch := &store.ApprovalChange{ID: a.ID, From: []store.ApprovalState{store.ApprovalPending}, To: store.ApprovalExpired,
			At: time.Now().UTC(), Approver: "airlock", Reason: "task ended"}
		err := e.settle(ctx, a, ch, ev, airlockv1.Status_STATUS_DENIED, outcomeError("task_ended",
			fmt.Sprintf("task %s ended before anyone decided approval %s, so the tool did not run: begin a new task", taskID, a.ID), "task_id"))
		if err != nil && !errors.Is(err, store.ErrConflict) {
			e.log.Error().Err(err).Str("approval", a.ID).Msg("could not expire the approval of an ended task: it expires on its own")
		}
	}
}

// interruptApproval settles an approved intent whose claim went stale (its
// executor died mid-run): the tool may or may not have run, and it is
// never run again (at most once). The intent fails with code interrupted.
func (e *Executor) interruptApproval(ctx context.Context, a *store.Approval) error {
	ev := &audit.Event{
		ID: newID("evt"), Time: time.Now().UTC(), Type: audit.TypeExecution, Executor: e.cfg.ExecutorID, Caller: a.Caller,
		TaskID: a.TaskID, IntentID: a.IntentID, ArgsSHA256: a.ArgsSHA256, Tool: &audit.ToolRef{Name: a.Tool, Digest: a.ToolDigest},
		Details: map[string]any{"approval_id": a.ID, "claimed_by": clip(a.ClaimedBy, maxLogString)},
	}
	ch := &store.ApprovalChange{ID: a.ID, From: []store.ApprovalState{store.ApprovalClaimed}, To: store.ApprovalDone,
		At: time.Now().UTC(), IntentStatus: airlockv1.Status_STATUS_FAILED.Name()}
	return e.settle(ctx, a, ch, ev, airlockv1.Status_STATUS_FAILED, outcomeError("interrupted",
		fmt.Sprintf("the executor running approved intent %s (claim %s at %s) stopped before its outcome was recorded: the tool may or may not have run, and airlock does not run it twice; check its effects and submit again if needed",
			a.IntentID, clip(a.ClaimedBy, 200), a.ClaimedAt.Format(time.RFC3339)), ""))
}

// LocalOperators are the approvers (and auditors) when the operator names
// none: the identity of the executor's own effective uid on the unix socket
// and root's (spiffe://airlock.local/uid/0). Those identities exist only
// on the unix socket (mTLS refuses SVIDs under spiffe://airlock.local/uid/),
// and both can read the executor's data directory anyway, so defaulting to
// them adds no one. Remote callers decide only when --approvers names them.
func LocalOperators() []identity.Pattern {
	ids := []identity.Caller{identity.FromUID(uint32(os.Geteuid()))}
	if os.Geteuid() != 0 {
		ids = append(ids, identity.FromUID(0))
	}
	out := make([]identity.Pattern, 0, len(ids))
	for _, c := range ids {
		p, err := identity.ParsePattern(c.SpiffeID)
		if err != nil {
			panic(fmt.Sprintf("local operator %s: %v", c.SpiffeID, err)) // a constant form: cannot happen
		}
		out = append(out, p)
	}
	return out
}

// IsApprover reports whether caller may see every approval and decide
// them (Config.Approvers; by default the local operators). It does not
// say the caller may decide a given approval: nobody decides their own.
func (e *Executor) IsApprover(caller identity.Caller) bool {
	return e.mayReview(caller)
}

// mayReview reports whether caller matches Config.Approvers (defaulted to
// LocalOperators by New, so it is never empty).
func (e *Executor) mayReview(caller identity.Caller) bool {
	if caller.SpiffeID == "" {
		return false
	}
	for _, p := range e.cfg.Approvers {
		if p.Match(caller) {
			return true
		}
	}
	return false
}

// loadApproval loads an approval caller may see.
func (e *Executor) loadApproval(ctx context.Context, caller identity.Caller, id string) (*store.Approval, error) {
	notFound := &ApprovalError{codes.NotFound, fmt.Sprintf("approval %q not found: list them with `airlock approvals list`", clip(id, 64))}
	if !ids.Valid("apr", id) {
		return nil, notFound
	}
	a, err := e.cfg.Store.Approval(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("load approval %s: %w", id, err)
	}
	if !e.mayReview(caller) && a.Caller != caller.SpiffeID {
		return nil, notFound
	}
	return a, nil
}

// ListApprovals lists approvals, newest first: every approval for a
// caller that may review them, else the caller's own.
func (e *Executor) ListApprovals(ctx context.Context, caller identity.Caller, req *airlockv1.ListApprovalsRequest) ([]*airlockv1.Approval, error) {
	f, err := approvalFilter(req.GetStates(), req.GetTaskId(), int(req.GetLimit()), true)
	if err != nil {
		return nil, err
	}
	as, err := e.cfg.Store.Approvals(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	review := e.mayReview(caller)
	out := make([]*airlockv1.Approval, 0, len(as))
	for _, a := range as {
		if review || a.Caller == caller.SpiffeID {
			out = append(out, e.approvalProto(a))
		}
	}
	return out, nil
}

// approvalFilter builds a store filter; no states means pending only
// (pendingDefault) or every state.
func approvalFilter(states []airlockv1.ApprovalState, taskID string, limit int, pendingDefault bool) (store.ApprovalFilter, error) {
	if taskID != "" && !ids.Valid("tsk", taskID) {
		return store.ApprovalFilter{}, &ApprovalError{codes.InvalidArgument, fmt.Sprintf("task_id %q is not a task id", clip(taskID, 64))}
	}
	if limit < 0 || limit > 1000 {
		return store.ApprovalFilter{}, &ApprovalError{codes.InvalidArgument, fmt.Sprintf("limit %d: ask for at most 1000", limit)}
	}
	if limit == 0 {
		limit = 100
	}
	f := store.ApprovalFilter{TaskID: taskID, Limit: limit}
	if len(states) == 0 && pendingDefault {
		states = []airlockv1.ApprovalState{airlockv1.ApprovalState_APPROVAL_STATE_PENDING}
	}
	for _, s := range states {
		switch s {
		case airlockv1.ApprovalState_APPROVAL_STATE_PENDING:
			f.States = append(f.States, store.ApprovalPending)
		case airlockv1.ApprovalState_APPROVAL_STATE_APPROVED:
			f.States = append(f.States, store.ApprovalApproved, store.ApprovalClaimed, store.ApprovalDone)
		case airlockv1.ApprovalState_APPROVAL_STATE_DENIED:
			f.States = append(f.States, store.ApprovalDenied)
		case airlockv1.ApprovalState_APPROVAL_STATE_EXPIRED:
			f.States = append(f.States, store.ApprovalExpired)
		default:
			return store.ApprovalFilter{}, &ApprovalError{codes.InvalidArgument, fmt.Sprintf("states: %v is not a state: use pending, approved, denied or expired", s)}
		}
	}
	return f, nil
}

// GetApproval returns one approval with the exact arguments it covers.
func (e *Executor) GetApproval(ctx context.Context, caller identity.Caller, id string) (*airlockv1.Approval, error) {
	a, err := e.loadApproval(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return e.approvalProto(a), nil
}

// checkDecider refuses an approver that may not decide a.
func (e *Executor) checkDecider(approver identity.Caller, a *store.Approval) error {
	if approver.SpiffeID == "" {
		return &ApprovalError{codes.PermissionDenied, "the caller has no identity"}
	}
	if !e.mayReview(approver) {
		return &ApprovalError{codes.PermissionDenied, fmt.Sprintf("%s may not decide approvals: approvers are the executor's --approvers (default: the executor's own uid and root on the unix socket)", approver.SpiffeID)}
	}
	if approver.SpiffeID == a.Caller {
		return &ApprovalError{codes.PermissionDenied, fmt.Sprintf("%s submitted intent %s: another identity must decide its approval", approver.SpiffeID, a.IntentID)}
	}
	return nil
}

// Approve grants a pending approval as approver; the intent then runs
// exactly once (a waiting Submit or the approvals loop runs it). Approving
// an approved approval returns it and runs nothing again; a denied or
// expired one fails with FailedPrecondition.
func (e *Executor) Approve(ctx context.Context, approver identity.Caller, id, reason string) (*airlockv1.Approval, error) {
	return e.decideApproval(ctx, approver, id, reason, true)
}

// Deny refuses a pending approval as approver, with a reason (required);
// the intent is denied with it and the approval cannot be revived.
func (e *Executor) Deny(ctx context.Context, approver identity.Caller, id, reason string) (*airlockv1.Approval, error) {
	if reason == "" {
		return nil, &ApprovalError{codes.InvalidArgument, "reason is required to deny: say why (it is recorded and sent to the planner)"}
	}
	return e.decideApproval(ctx, approver, id, reason, false)
}

func (e *Executor) decideApproval(ctx context.Context, approver identity.Caller, id, reason string, approve bool) (*airlockv1.Approval, error) {
	if len(reason) > MaxApprovalReason {
		return nil, &ApprovalError{codes.InvalidArgument, fmt.Sprintf("reason is %d bytes: keep it under %d", len(reason), MaxApprovalReason)}
	}
	a, err := e.loadApproval(ctx, approver, id)
	if err != nil {
		return nil, err
	}
	if err := e.checkDecider(approver, a); err != nil {
		return nil, err
	}
	// A concurrent decision or expiry can move the approval between the
	// read and the guarded change: read again and decide on what is stored.
	for range 3 {
		switch a.State {
		case store.ApprovalPending:
			if time.Now().After(a.ExpiresAt) {
				if err := e.expireApproval(ctx, a); err != nil && !errors.Is(err, store.ErrConflict) {
					return nil, err
				}
				break
			}
			now := time.Now().UTC()
			var err error
			if approve {
				ev := e.approvalEvent(TypeApprovalApprove, a, approver.SpiffeID, reason)
				err = e.commit(ctx, &store.Batch{Events: []*audit.Event{ev}, ApprovalChanges: []*store.ApprovalChange{{
					ID: a.ID, From: []store.ApprovalState{store.ApprovalPending}, To: store.ApprovalApproved,
					At: now, Approver: approver.SpiffeID, Reason: reason,
				}}})
				if err == nil {
					e.logEvent(ev)
				}
			} else {
				ev := e.approvalEvent(TypeApprovalDeny, a, approver.SpiffeID, reason)
				ch := &store.ApprovalChange{ID: a.ID, From: []store.ApprovalState{store.ApprovalPending}, To: store.ApprovalDenied,
					At: now, Approver: approver.SpiffeID, Reason: reason}
				err = e.settle(ctx, a, ch, ev, airlockv1.Status_STATUS_DENIED, outcomeError("approval_denied",
					fmt.Sprintf("%s denied approval %s: %s", approver.SpiffeID, a.ID, reason), ""))
			}
			if err != nil && !errors.Is(err, store.ErrConflict) {
				return nil, err
			}
		case store.ApprovalApproved, store.ApprovalClaimed, store.ApprovalDone:
			if approve {
				return e.approvalProto(a), nil
			}
			return nil, &ApprovalError{codes.FailedPrecondition, fmt.Sprintf("approval %s was approved by %s: it cannot be denied any more", a.ID, a.Approver)}
		case store.ApprovalDenied:
			if !approve {
				return e.approvalProto(a), nil
			}
			return nil, &ApprovalError{codes.FailedPrecondition, fmt.Sprintf("approval %s was denied by %s: a denied approval cannot be revived; the planner must submit again", a.ID, a.Approver)}
		case store.ApprovalExpired:
			return nil, &ApprovalError{codes.FailedPrecondition, fmt.Sprintf("approval %s expired at %s: an expired approval cannot be revived; the planner must submit again", a.ID, a.ExpiresAt.Format(time.RFC3339))}
		default:
			return nil, fmt.Errorf("approval %s has an unknown state %q", a.ID, a.State)
		}
		if a, err = e.cfg.Store.Approval(ctx, a.ID); err != nil {
			return nil, fmt.Errorf("load approval %s: %w", id, err)
		}
	}
	return nil, &ApprovalError{codes.Aborted, fmt.Sprintf("approval %s kept changing while it was decided: try again", a.ID)}
}

// WatchApprovals sends every approval that matches the request (newest
// first, at most 1000), then each approval that appears or changes state,
// until ctx ends or send fails. A caller that may not review approvals
// sees only its own.
func (e *Executor) WatchApprovals(ctx context.Context, caller identity.Caller, req *airlockv1.WatchApprovalsRequest, send func(*airlockv1.Approval) error) error {
	f, err := approvalFilter(req.GetStates(), req.GetTaskId(), watchWindow, false)
	if err != nil {
		return err
	}
	review := e.mayReview(caller)
	release, err := e.approvals.openWatch(caller.SpiffeID, review)
	if err != nil {
		return err
	}
	defer release()
	seen := map[string]string{} // id -> state and intent status last sent
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	for {
		as, err := e.cfg.Store.Approvals(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch approvals: %w", err)
		}
		next := make(map[string]string, len(as))
		// Oldest first, so that a watcher sees changes in order.
		for i := len(as) - 1; i >= 0; i-- {
			a := as[i]
			if !review && a.Caller != caller.SpiffeID {
				continue
			}
			fp := string(a.State) + "/" + a.IntentStatus
			next[a.ID] = fp
			if seen[a.ID] == fp {
				continue
			}
			if err := send(e.approvalProto(a)); err != nil {
				return err
			}
		}
		seen = next
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// openWatch admits one more watch stream of caller, or refuses it with
// ResourceExhausted: at most MaxWatchStreamsPerCaller per caller and
// MaxWatchStreams in all, of which callers that are not approvers may hold
// all but watchReserved. release gives the slot back.
func (st *approvalState) openWatch(caller string, approver bool) (release func(), err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.watches[caller] >= MaxWatchStreamsPerCaller:
		return nil, &ApprovalError{codes.ResourceExhausted, fmt.Sprintf("%s has %d approval watches open, the most one caller may: close one, or poll ListApprovals", caller, MaxWatchStreamsPerCaller)}
	case st.watchTotal >= MaxWatchStreams, !approver && st.watchPlanners >= MaxWatchStreams-watchReserved:
		return nil, &ApprovalError{codes.ResourceExhausted, fmt.Sprintf("%d approval watches are open, the most this executor serves: close one, or poll ListApprovals", st.watchTotal)}
	}
	st.watches[caller]++
	st.watchTotal++
	if !approver {
		st.watchPlanners++
	}
	return func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.watches[caller]--; st.watches[caller] <= 0 {
			delete(st.watches, caller)
		}
		st.watchTotal--
		if !approver {
			st.watchPlanners--
		}
	}, nil
}

// approvalProto converts a stored approval. Claimed and done are approved
// to an operator; IntentStatus says whether it ran.
func (e *Executor) approvalProto(a *store.Approval) *airlockv1.Approval {
	p := &airlockv1.Approval{
		Id: a.ID, IntentId: a.IntentID, TaskId: a.TaskID, Caller: a.Caller, Tool: a.Tool, ToolDigest: a.ToolDigest,
		Risk: a.Risk, Arguments: string(a.Arguments), ArgumentsSha256: a.ArgsSHA256, Justification: a.Justification,
		Rules: a.Rules, Message: a.Message, CreatedAt: timestamppb.New(a.CreatedAt), ExpiresAt: timestamppb.New(a.ExpiresAt),
		Approver: a.Approver, Reason: a.Reason, IntentStatus: a.IntentStatus,
	}
	if t, ok := e.tools[a.Tool]; ok && t.m.Digest() == a.ToolDigest {
		p.ToolVersion = t.m.Metadata.Version
	}
	if !a.DecidedAt.IsZero() {
		p.DecidedAt = timestamppb.New(a.DecidedAt)
	}
	switch a.State {
	case store.ApprovalPending:
		p.State = airlockv1.ApprovalState_APPROVAL_STATE_PENDING
	case store.ApprovalApproved, store.ApprovalClaimed, store.ApprovalDone:
		p.State = airlockv1.ApprovalState_APPROVAL_STATE_APPROVED
	case store.ApprovalDenied:
		p.State = airlockv1.ApprovalState_APPROVAL_STATE_DENIED
	case store.ApprovalExpired:
		p.State = airlockv1.ApprovalState_APPROVAL_STATE_EXPIRED
	}
	return p
}
