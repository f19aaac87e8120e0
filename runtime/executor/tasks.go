package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/internal/ids"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/store"
)

var newID = ids.New

// MaxOpenTasks bounds the open tasks of one caller (as this executor
// counts them since it started).
const MaxOpenTasks = 1000

// Bounds of task fields.
const (
	maxPurpose    = 1 << 10
	maxLabels     = 32
	maxLabelBytes = 256
)

// TaskError is a task request the executor refuses; Code maps to a gRPC code.
type TaskError struct {
	Code    string // invalid_argument, not_found, permission_denied, failed_precondition
	Message string
}

func (e *TaskError) Error() string { return e.Message }

// BeginTask starts a task owned by caller.
func (e *Executor) BeginTask(ctx context.Context, caller identity.Caller, req *airlockv1.BeginTaskRequest) (*airlockv1.Task, error) {
	if len(req.GetPurpose()) > maxPurpose {
		return nil, &TaskError{"invalid_argument", fmt.Sprintf("purpose is %d bytes: keep it under %d", len(req.GetPurpose()), maxPurpose)}
	}
	if len(req.GetSensitivity()) > 64 {
		return nil, &TaskError{"invalid_argument", "sensitivity is longer than 64 bytes"}
	}
	if len(req.GetLabels()) > maxLabels {
		return nil, &TaskError{"invalid_argument", fmt.Sprintf("%d labels: at most %d", len(req.GetLabels()), maxLabels)}
	}
	for k, v := range req.GetLabels() {
		if k == "" || len(k) > maxLabelBytes || len(v) > maxLabelBytes {
			return nil, &TaskError{"invalid_argument", fmt.Sprintf("label %q: keys must be non-empty and keys and values at most %d bytes", clip(k, 64), maxLabelBytes)}
		}
	}
	ttl := e.cfg.DefaultTaskTTL
	if d := req.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return nil, &TaskError{"invalid_argument", "ttl must be a positive duration"}
		}
		ttl = d.AsDuration()
	}
	if ttl > e.cfg.MaxTaskTTL {
		ttl = e.cfg.MaxTaskTTL
	}
	now := time.Now().UTC()
	t := &store.Task{
		ID: newID("tsk"), Caller: caller.SpiffeID, Purpose: req.GetPurpose(), Sensitivity: req.GetSensitivity(),
		Labels: req.GetLabels(), StartedAt: now, ExpiresAt: now.Add(ttl),
	}
	e.mu.Lock()
	if e.openTasks[caller.SpiffeID] >= MaxOpenTasks {
		e.mu.Unlock()
		return nil, &TaskError{"resource_exhausted", fmt.Sprintf("%s has %d open tasks, the most one caller may have: end some with `airlock task end`", caller.SpiffeID, MaxOpenTasks)}
	}
	e.openTasks[caller.SpiffeID]++ // taken back if the commit fails
	e.mu.Unlock()
	ev := &audit.Event{
		ID: newID("evt"), Time: now, Type: audit.TypeTaskBegin, Executor: e.cfg.ExecutorID, Caller: caller.SpiffeID,
		TaskID: t.ID, Details: map[string]any{"purpose": clip(t.Purpose, maxLogString), "sensitivity": t.Sensitivity, "expires_at": t.ExpiresAt},
	}
	if err := e.commit(ctx, &store.Batch{Events: []*audit.Event{ev}, Tasks: []*store.Task{t}}); err != nil {
		e.mu.Lock()
		e.openTasks[caller.SpiffeID]--
		e.mu.Unlock()
		return nil, err
	}
	e.logEvent(ev)
	e.mu.Lock()
	e.tasks[t.ID] = t
	e.mu.Unlock()
	return taskProto(t), nil
}

// EndTask ends a task of caller, removes its workspace, and refuses its
// later intents.
func (e *Executor) EndTask(ctx context.Context, caller identity.Caller, id, reason string) (*airlockv1.Task, error) {
	t, err := e.ownedTask(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	// Another executor may have ended it: then it is not ended twice.
	if open, err := e.openHere(ctx, t); err != nil {
		return nil, err
	} else if !open {
		e.mu.Lock()
		at := t.EndedAt
		e.mu.Unlock()
		return nil, &TaskError{"failed_precondition", fmt.Sprintf("task %s already ended at %s", t.ID, at.Format(time.RFC3339))}
	}
	if err := e.endTask(ctx, t, caller.SpiffeID, clip(reason, maxLogString)); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return taskProto(t), nil
}

func (e *Executor) endTask(ctx context.Context, t *store.Task, by, reason string) error {
	// Claim the end under the lock: from here no new call of the task is
	// admitted (underTask refuses it), and a concurrent end (the reaper and
	// EndTask) finds it taken.
	now := time.Now().UTC()
	e.mu.Lock()
	if !t.EndedAt.IsZero() {
		at := t.EndedAt
		e.mu.Unlock()
		return &TaskError{"failed_precondition", fmt.Sprintf("task %s already ended at %s", t.ID, at.Format(time.RFC3339))}
	}
	t.EndedAt = now
	ended := *t
	e.mu.Unlock()
	ev := &audit.Event{
		ID: newID("evt"), Time: now, Type: audit.TypeTaskEnd, Executor: e.cfg.ExecutorID, Caller: by,
		TaskID: t.ID, Details: map[string]any{"reason": reason, "calls": ended.CallCount},
	}
	if err := e.commit(ctx, &store.Batch{Events: []*audit.Event{ev}, Tasks: []*store.Task{&ended}}); err != nil {
		e.mu.Lock()
		t.EndedAt = time.Time{}
		e.mu.Unlock()
		return err
	}
	e.logEvent(ev)
	// Its calls in flight end, and every credential leased to it is
	// revoked at its source. A revocation that fails is retried by the
	// reaper (the lease stays due). Its pending approvals expire.
	e.cancelTask(t.ID)
	e.endTaskApprovals(ctx, t.ID)
	if e.leaser != nil {
		if n, err := e.leaser.RevokeTask(context.WithoutCancel(ctx), t.ID, reason); err != nil {
			e.log.Error().Err(err).Str("task", t.ID).Int("revoked", n).Msg("could not revoke every lease of the task: retrying")
		}
	}
	if err := os.RemoveAll(filepath.Join(e.wsRoot, t.ID)); err != nil {
		e.log.Warn().Err(err).Str("task", t.ID).Msg("could not remove the task workspace")
	}
	// The store has it; the cache keeps only tasks that may still run.
	e.mu.Lock()
	delete(e.tasks, t.ID)
	if e.openTasks[t.Caller] > 0 {
		e.openTasks[t.Caller]--
	}
	if e.openTasks[t.Caller] == 0 {
		delete(e.openTasks, t.Caller)
	}
	e.mu.Unlock()
	return nil
}

// GetTask returns a task of caller.
func (e *Executor) GetTask(ctx context.Context, caller identity.Caller, id string) (*airlockv1.Task, error) {
	t, err := e.ownedTask(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if _, err := e.openHere(ctx, t); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return taskProto(t), nil
}

// lookupTask returns the cached task, loading it from the store on a miss.
func (e *Executor) lookupTask(ctx context.Context, id string) (*store.Task, error) {
	if !ids.Valid("tsk", id) {
		return nil, store.ErrNotFound
	}
	e.mu.Lock()
	t, ok := e.tasks[id]
	e.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := e.cfg.Store.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if cached, ok := e.tasks[id]; ok {
		t = cached
	} else {
		e.tasks[id] = t
	}
	e.mu.Unlock()
	return t, nil
}

func (e *Executor) ownedTask(ctx context.Context, caller identity.Caller, id string) (*store.Task, error) {
	t, err := e.lookupTask(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &TaskError{"not_found", fmt.Sprintf("task %q not found: begin one with `airlock task begin`", clip(id, 64))}
	}
	if err != nil {
		return nil, fmt.Errorf("load task %s: %w", id, err)
	}
	if t.Caller != caller.SpiffeID {
		// Do not tell a stranger whether the task exists.
		return nil, &TaskError{"not_found", fmt.Sprintf("task %q not found: begin one with `airlock task begin`", clip(id, 64))}
	}
	return t, nil
}

// taskFor checks the task an intent names; a non-nil *airlockv1.Error means
// the intent is refused with the given status.
func (e *Executor) taskFor(ctx context.Context, caller identity.Caller, id string) (*store.Task, *airlockv1.Error, airlockv1.Status) {
	// Read through to the store: another executor may have ended it.
	t, ended, err := e.freshTask(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, outcomeError("unknown_task", fmt.Sprintf("task %q not found: begin one with `airlock task begin`", clip(id, 64)), "task_id"), airlockv1.Status_STATUS_INVALID
	case err != nil:
		return nil, outcomeError("internal", "load task: "+err.Error(), "task_id"), airlockv1.Status_STATUS_FAILED
	}
	if t.Caller != caller.SpiffeID {
		return nil, outcomeError("task_not_owned", fmt.Sprintf("task %s belongs to another caller: use a task you began", id), "task_id"), airlockv1.Status_STATUS_DENIED
	}
	e.mu.Lock()
	expires := t.ExpiresAt
	e.mu.Unlock()
	if !ended.IsZero() {
		return nil, outcomeError("task_ended", fmt.Sprintf("task %s ended at %s: begin a new task", id, ended.Format(time.RFC3339)), "task_id"), airlockv1.Status_STATUS_INVALID
	}
	if time.Now().After(expires) {
		return nil, outcomeError("task_expired", fmt.Sprintf("task %s expired at %s: begin a new task", id, expires.Format(time.RFC3339)), "task_id"), airlockv1.Status_STATUS_INVALID
	}
	return t, nil, 0
}

// workspace returns the task's workspace directory, creating it.
func (e *Executor) workspace(taskID string) (string, error) {
	if !ids.Valid("tsk", taskID) {
		return "", fmt.Errorf("task id %q is not a valid workspace name", taskID)
	}
	dir := filepath.Join(e.wsRoot, taskID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create workspace of task %s: %w", taskID, err)
	}
	return dir, nil
}

// reapExpiredTasks ends tasks whose TTL ran out, revokes the leases due
// and purges the idempotency records older than Config.IdempotencyTTL.
func (e *Executor) reapExpiredTasks(ctx context.Context) {
	defer close(e.reaperDone)
	// Tasks that other executors end are followed in the shared store
	// (a sole executor has nothing to follow).
	if !e.cfg.SoleExecutor {
		followDone := make(chan struct{})
		go func() { defer close(followDone); e.follow(ctx) }()
		defer func() { <-followDone }()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastRevoke, lastPurge time.Time
	purgeMore := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			var due []*store.Task
			e.mu.Lock()
			for _, t := range e.tasks {
				if t.EndedAt.IsZero() && now.After(t.ExpiresAt) {
					due = append(due, t)
				}
			}
			e.mu.Unlock()
			for _, t := range due {
				// Another executor may have ended it already.
				if open, err := e.openHere(ctx, t); err != nil || !open {
					continue
				}
				if err := e.endTask(ctx, t, "airlock", "ttl expired"); err != nil {
					e.log.Error().Err(err).Str("task", t.ID).Msg("could not end an expired task")
				}
			}
			if e.leaser != nil && now.Sub(lastRevoke) >= 10*time.Second {
				lastRevoke = now
				if _, err := e.leaser.RevokeDue(ctx); err != nil {
					e.log.Error().Err(err).Msg("could not revoke every lease due: retrying")
				}
			}
			if purgeMore || now.Sub(lastPurge) >= idempotencyPurgeEvery {
				lastPurge = now
				purgeMore = e.purgeIdempotency(ctx, now)
			}
		}
	}
}

func taskProto(t *store.Task) *airlockv1.Task {
	p := &airlockv1.Task{
		Id: t.ID, Caller: t.Caller, Purpose: t.Purpose, Sensitivity: t.Sensitivity, Labels: t.Labels,
		StartedAt: timestamppb.New(t.StartedAt), ExpiresAt: timestamppb.New(t.ExpiresAt), CallCount: t.CallCount,
	}
	if !t.EndedAt.IsZero() {
		p.EndedAt = timestamppb.New(t.EndedAt)
	}
	return p
}

// RevokeCredentials revokes every credential leased to a task of caller at
// its source and cancels the task's calls in flight. The task stays open.
func (e *Executor) RevokeCredentials(ctx context.Context, caller identity.Caller, id, reason string) (int, error) {
	t, err := e.ownedTask(ctx, caller, id)
	if err != nil {
		return 0, err
	}
	e.cancelTask(t.ID)
	if e.leaser == nil {
		return 0, nil
	}
	if reason == "" {
		reason = "revoked by " + caller.SpiffeID
	}
	n, err := e.leaser.RevokeTask(context.WithoutCancel(ctx), t.ID, clip(reason, maxLogString))
	if err != nil {
		return n, fmt.Errorf("revoke the credentials of task %s: %w: the failed leases stay due and are retried", t.ID, err)
	}
	return n, nil
}
