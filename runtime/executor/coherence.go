package executor

// Coherence of several executors sharing one store.
//
// Each executor caches the tasks it has seen; the store is the truth. When
// another executor ends a task, this one must stop at once: refuse the
// task's new calls, cancel its calls in flight here, and revoke at their
// source the leases it issued here. Three mechanisms do it:
//
//   - every call of a task re-reads the task from the store when the cached
//     copy may be stale (freshTask): a task ended anywhere is refused here
//     from the moment its end is committed, not after a cache expiry;
//   - a follower tails the audit chain (the change feed both stores already
//     have: one totally ordered chain, appended under a lock, so reading
//     after the last seen seq never skips an event) every FollowInterval
//     and reacts to each task.end: endedElsewhere cancels the task's calls
//     here, revokes its open leases and removes its workspace here;
//   - EndTask, GetTask and the TTL reaper check the store before acting on
//     a cached task, so a task ended elsewhere is never ended twice here.
//
// An executor alone on its store (Config.SoleExecutor: serve with the
// embedded SQLite store) needs neither the per-call read nor the follower.
//
// The lease references are sealed with Config.LeaseKey, which every
// executor of a deployment shares, so any of them can revoke any lease
// (the executor that ended the task does so first; this one revokes what
// it issued after that, or what the other could not).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/store"
)

// FollowInterval is how often an executor reads the audit chain for tasks
// that other executors ended.
const FollowInterval = 200 * time.Millisecond

const (
	// followPage bounds one read of the audit chain by the follower.
	followPage = 1000
	// recentEndsKeep is how long the follower remembers the end of a task
	// it had not cached, in case a load of that task from the store was in
	// flight and caches it afterwards.
	recentEndsKeep = time.Minute
	// maxRecentEnds bounds that memory.
	maxRecentEnds = 100000
	// followErrorEvery bounds how often a failing follower logs.
	followErrorEvery = 30 * time.Second
)

// taskEndMarker finds task.end events in canonical bodies without parsing
// every record.
var taskEndMarker = []byte(`"type":"` + audit.TypeTaskEnd + `"`)

// leaseSealer returns the key that seals lease references: the shared
// Config.LeaseKey, else this executor's own key in DataDir/keys.
func (e *Executor) leaseSealer() (*credentials.Sealer, error) {
	if e.cfg.LeaseKey != nil {
		return e.cfg.LeaseKey, nil
	}
	return credentials.LoadOrCreateSealer(filepath.Join(e.cfg.DataDir, "keys"))
}

// freshTask returns the task a call names, as taskFor needs it, with the
// time it ended according to the store. A task this executor has cached
// may have been ended by another executor since: it is read again from the
// store, so that such a task is refused at once. (The follower then ends
// its calls and leases here.) A task just loaded from the store is fresh,
// and so is every cached task when Config.SoleExecutor says no other
// executor writes the store.
func (e *Executor) freshTask(ctx context.Context, id string) (t *store.Task, endedAt time.Time, err error) {
	e.mu.Lock()
	t, cached := e.tasks[id]
	if cached && e.cfg.SoleExecutor {
		endedAt = t.EndedAt
		e.mu.Unlock()
		return t, endedAt, nil
	}
	e.mu.Unlock()
	if !cached {
		t, err = e.lookupTask(ctx, id)
		if err != nil {
			return nil, time.Time{}, err
		}
		e.mu.Lock()
		endedAt = t.EndedAt
		e.mu.Unlock()
		return t, endedAt, nil
	}
	st, err := e.cfg.Store.Task(ctx, id)
	if err != nil {
		return nil, time.Time{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Calls counted by every executor, for CEL's task.call_count.
	if st.CallCount > t.CallCount {
		t.CallCount = st.CallCount
	}
	endedAt = t.EndedAt
	if endedAt.IsZero() {
		endedAt = st.EndedAt
	}
	return t, endedAt, nil
}

// endedInStore reports whether the store says the cached task t has ended
// (by another executor); if so it ends the task here (endedElsewhere)
// before returning. A store error is returned: the caller must not act on
// the task then.
func (e *Executor) endedInStore(ctx context.Context, t *store.Task) (bool, error) {
	st, err := e.cfg.Store.Task(ctx, t.ID)
	if err != nil {
		return false, fmt.Errorf("load task %s: %w", t.ID, err)
	}
	if st.EndedAt.IsZero() {
		return false, nil
	}
	if !e.endedElsewhere(ctx, t.ID, st.EndedAt, "ended by another executor") {
		// Not cached (any more): only this copy needs to know.
		e.mu.Lock()
		if t.EndedAt.IsZero() {
			t.EndedAt = st.EndedAt
		}
		e.mu.Unlock()
	}
	return true, nil
}

// endedElsewhere ends here a task that another executor ended: it marks
// the cached task ended (so no call of it is admitted here any more),
// cancels its calls in flight here and waits for them (bounded), revokes
// at their source its leases still open (those this executor issued after
// the other one revoked, or that the other could not revoke), removes its
// workspace here, and drops it from the cache. A task that is not cached,
// or already ending here, is left alone: it reports whether it acted.
func (e *Executor) endedElsewhere(ctx context.Context, id string, at time.Time, reason string) bool {
	e.mu.Lock()
	t, ok := e.tasks[id]
	if !ok || !t.EndedAt.IsZero() {
		e.mu.Unlock()
		return false
	}
	if at.IsZero() {
		at = time.Now().UTC()
	}
	t.EndedAt = at
	caller := t.Caller
	e.mu.Unlock()
	e.log.Info().Str("task", id).Str("reason", clip(reason, maxLogString)).
		Msg("task ended on another executor: canceling its calls and revoking its leases here")
	e.cancelTask(id)
	if e.leaser != nil {
		if n, err := e.leaser.RevokeTask(context.WithoutCancel(ctx), id, "task ended on another executor"); err != nil {
			e.log.Error().Err(err).Str("task", id).Int("revoked", n).Msg("could not revoke every lease of a task ended on another executor: retrying")
		} else if n > 0 {
			e.log.Info().Str("task", id).Int("revoked", n).Msg("revoked the leases of a task ended on another executor")
		}
	}
	if err := os.RemoveAll(filepath.Join(e.wsRoot, id)); err != nil {
		e.log.Warn().Err(err).Str("task", id).Msg("could not remove the task workspace")
	}
	e.mu.Lock()
	delete(e.tasks, id)
	if e.openTasks[caller] > 0 {
		e.openTasks[caller]--
	}
	if e.openTasks[caller] == 0 {
		delete(e.openTasks, caller)
	}
	e.mu.Unlock()
	return true
}

// follower tails the audit chain for task.end events.
type follower struct {
	e    *Executor
	last int64 // seq of the last record read
	// recent holds task.end events of tasks that were not cached when
	// read, by task id, with when they were read.
	recent map[string]followedEnd
	// handlers are the endedElsewhere calls in flight: one slow task does
	// not hold up the others.
	handlers chan struct{}
	errAt    time.Time
}

type followedEnd struct {
	at, seen time.Time
	reason   string
}

// follow runs the follower until ctx ends. It starts at the end of the
// chain (the cache holds nothing older) and then checks the tasks cached
// meanwhile against the store once.
func (e *Executor) follow(ctx context.Context) {
	f := &follower{e: e, recent: map[string]followedEnd{}, handlers: make(chan struct{}, 16)}
	defer func() {
		// Wait for the handlers in flight.
		for range cap(f.handlers) {
			f.handlers <- struct{}{}
		}
	}()
	tick := time.NewTicker(FollowInterval)
	defer tick.Stop()
	started := false
	for {
		var err error
		if !started {
			if err = f.start(ctx); err == nil {
				started = true
			}
		} else {
			err = f.pass(ctx)
		}
		if err != nil && ctx.Err() == nil {
			f.logError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (f *follower) logError(err error) {
	now := time.Now()
	if now.Sub(f.errAt) < followErrorEvery {
		return
	}
	f.errAt = now
	f.e.log.Error().Err(err).Msg("cannot follow the shared store: tasks ended on other executors are still refused at each call, but their calls here are not canceled until the store answers")
}

// start reads the chain's last seq, then checks every task cached so far
// against the store (those cached before the follower knew where to start).
func (f *follower) start(ctx context.Context) error {
	recs, err := f.e.cfg.Store.AuditTail(ctx, 1)
	if err != nil {
		return fmt.Errorf("read the end of the audit chain: %w", err)
	}
	if len(recs) > 0 {
		f.last = recs[0].Seq
	}
	f.e.mu.Lock()
	var open []*store.Task
	for _, t := range f.e.tasks {
		if t.EndedAt.IsZero() {
			open = append(open, t)
		}
	}
	f.e.mu.Unlock()
	var errs []error
	for _, t := range open {
		if _, err := f.e.endedInStore(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pass reads every record appended since the last pass and ends here the
// tasks that ended elsewhere.
func (f *follower) pass(ctx context.Context) error {
	for {
		recs, err := f.e.cfg.Store.AuditRecords(ctx, f.last, followPage)
		if err != nil {
			return fmt.Errorf("read the audit chain after seq %d: %w", f.last, err)
		}
		for _, r := range recs {
			f.last = r.Seq
			if !bytes.Contains(r.Body, taskEndMarker) {
				continue
			}
			var ev struct {
				Type     string         `json:"type"`
				TaskID   string         `json:"task_id"`
				Time     time.Time      `json:"time"`
				Executor string         `json:"executor"`
				Details  map[string]any `json:"details"`
			}
			if err := json.Unmarshal(r.Body, &ev); err != nil || ev.Type != audit.TypeTaskEnd || ev.TaskID == "" {
				continue
			}
			reason, _ := ev.Details["reason"].(string)
			end := followedEnd{at: ev.Time, seen: time.Now(), reason: fmt.Sprintf("%s (on executor %s)", reason, ev.Executor)}
			if !f.handle(ctx, ev.TaskID, end) && len(f.recent) < maxRecentEnds {
				f.recent[ev.TaskID] = end
			}
		}
		if len(recs) < followPage {
			break
		}
	}
	// Tasks whose end was read before a load of them from the store
	// cached them.
	now := time.Now()
	for id, end := range f.recent {
		if f.handle(ctx, id, end) || now.Sub(end.seen) > recentEndsKeep {
			delete(f.recent, id)
		}
	}
	return nil
}

// handle starts endedElsewhere for a task this executor has cached open;
// it reports whether the task was cached (open or not).
func (f *follower) handle(ctx context.Context, id string, end followedEnd) bool {
	f.e.mu.Lock()
	t, ok := f.e.tasks[id]
	open := ok && t.EndedAt.IsZero()
	f.e.mu.Unlock()
	if !open {
		return ok
	}
	f.handlers <- struct{}{}
	go func() {
		defer func() { <-f.handlers }()
		f.e.endedElsewhere(ctx, id, end.at, end.reason)
	}()
	return true
}

// openHere reports whether the task t (cached here) is still open: not
// ended here, and not ended by another executor according to the store. A
// task the store says ended is ended here first (endedElsewhere).
func (e *Executor) openHere(ctx context.Context, t *store.Task) (bool, error) {
	e.mu.Lock()
	ended := !t.EndedAt.IsZero()
	e.mu.Unlock()
	if ended {
		return false, nil
	}
	elsewhere, err := e.endedInStore(ctx, t)
	if err != nil {
		return false, err
	}
	return !elsewhere, nil
}
