package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/store"
)

// MaxIdempotencyKey bounds an idempotency key (printable ASCII).
const MaxIdempotencyKey = 128

// DefaultInterruptMargin is the default of Config.InterruptMargin.
const DefaultInterruptMargin = time.Minute

// Retention of idempotency records (Config.IdempotencyTTL).
const (
	// DefaultIdempotencyTTL is the default of Config.IdempotencyTTL.
	DefaultIdempotencyTTL = 24 * time.Hour
	// MinIdempotencyTTL is the least Config.IdempotencyTTL accepted.
	MinIdempotencyTTL = time.Hour
	// idempotencyPurgeBatch bounds the records one purge deletes.
	idempotencyPurgeBatch = 1000
	// idempotencyPurgeEvery is how often the reaper purges expired
	// records; while a purge fills its batch, it purges again each tick.
	idempotencyPurgeEvery = time.Minute
)

// IdempotencyTTLFloor is the least IdempotencyTTL that cfg accepts:
// MinIdempotencyTTL, or longer when an intent can live longer from the
// reservation of its key to its outcome: its approval may stay pending for
// ApprovalTTL, then its claim is settled only after the stale-claim time
// (ApprovalStaleClaim, at least twice the longest tool timeout), and a
// reservation without an outcome only after its tool's timeout and
// InterruptMargin. Purging a key sooner could let a resubmission run the
// intent a second time. Zero fields count as their defaults.
func IdempotencyTTLFloor(cfg Config) time.Duration {
	approvalTTL, stale, margin := cfg.ApprovalTTL, cfg.ApprovalStaleClaim, cfg.InterruptMargin
	if approvalTTL <= 0 {
		approvalTTL = DefaultApprovalTTL
	}
	if stale <= 0 {
		stale = DefaultApprovalStaleClaim
	}
	if margin <= 0 {
		margin = DefaultInterruptMargin
	}
	for _, m := range cfg.Tools {
		stale = max(stale, 2*time.Duration(m.Spec.Limits.Timeout))
	}
	return max(MinIdempotencyTTL, approvalTTL+stale+margin)
}

// resolveIdempotencyTTL applies the default of cfg.IdempotencyTTL and
// refuses a TTL below its floor.
func resolveIdempotencyTTL(cfg *Config) error {
	floor := IdempotencyTTLFloor(*cfg)
	switch {
	case cfg.IdempotencyTTL == 0:
		cfg.IdempotencyTTL = max(DefaultIdempotencyTTL, floor)
	case cfg.IdempotencyTTL < floor:
		return fmt.Errorf("idempotency TTL %s (--idempotency-ttl) is below its floor %s: keys must outlive %s and every intent that may still wait for approval (--approval-ttl) and run, or a resubmission could run an intent twice: set --idempotency-ttl to at least %s",
			cfg.IdempotencyTTL, floor, MinIdempotencyTTL, floor)
	}
	return nil
}

// purgeIdempotency deletes one batch of idempotency records older than
// the TTL and reports whether the batch was full (more may be due).
//
// The outcome markers ("outcome <intent id>") go too: a marker only
// decides which of an intent's outcome and its settlement as interrupted
// commits, and both happen within the intent's tool timeout and
// InterruptMargin of its reservation (or, for an approved intent, within
// the stale-claim time of its claim), far less than the TTL's floor. By
// the time a marker expires, the reservation it guards (older still) has
// expired too, so nothing can race for it any more.
func (e *Executor) purgeIdempotency(ctx context.Context, now time.Time) bool {
	n, err := e.cfg.Store.PurgeIdempotency(ctx, now.Add(-e.cfg.IdempotencyTTL), idempotencyPurgeBatch)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error().Err(err).Msg("could not purge expired idempotency keys: retrying")
		}
		return false
	}
	if n > 0 {
		e.log.Debug().Int("records", n).Dur("ttl", e.cfg.IdempotencyTTL).Msg("purged expired idempotency keys")
	}
	return n == idempotencyPurgeBatch
}

// outcomeMarkerPrefix starts the key of an intent's outcome marker. The
// space keeps it apart from every key a caller can submit.
const outcomeMarkerPrefix = "outcome "

// DefaultExecutorID is the executor id used when none is configured: the
// hostname and a random suffix, so that two executors on one host, and two
// runs of one executor, never share an id.
func DefaultExecutorID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "airlock"
	}
	return clip(host, 100) + "-" + newID("x")[2:8]
}

// CheckExecutorID says what is wrong with an operator's executor id (nil:
// nothing): 1 to 128 characters among letters, digits, '.', '_', ':' and '-'.
func CheckExecutorID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("executor id %q: use 1 to 128 characters", clip(id, 140))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return fmt.Errorf("executor id %q has %q at offset %d: use letters, digits, '.', '_', ':' and '-' only", id, c, i)
		}
	}
	return nil
}

// outcomeMarker is the record that the first final outcome of an intent
// whose idempotency key was reserved ahead of its outcome inserts with it:
// its own outcome, or the interruption a resubmission records. The store
// inserts it once, so of the two only one commits.
func outcomeMarker(caller, intentID, argsDigest string) *store.IdempotencyRecord {
	return &store.IdempotencyRecord{Caller: caller, Key: outcomeMarkerPrefix + intentID, IntentID: intentID,
		ArgsSHA256: argsDigest, CreatedAt: time.Now().UTC()}
}

// setInflight marks an intent of this run as reserved and running (or not).
func (e *Executor) setInflight(id string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.inflight[id] = true
	} else {
		delete(e.inflight, id)
	}
}

// settledElsewhere handles the outcome of an intent that a resubmission
// settled as interrupted while it ran (its executor looked gone): the
// audit chain still gets what happened here (events, without the intent
// record), and the caller gets the stored outcome, so that every client
// sees the one outcome the store holds.
func (c *call) settledElsewhere(ctx context.Context, events []*audit.Event) {
	e := c.e
	e.log.Warn().Str("intent", c.out.IntentId).Msg("the intent was settled as interrupted while it ran: recording what ran, returning the stored outcome")
	if err := e.commit(context.WithoutCancel(ctx), &store.Batch{Events: events}); err != nil {
		c.fail(airlockv1.Status_STATUS_FAILED, outcomeError("audit_unavailable",
			"the outcome could not be recorded, so it is withheld: "+err.Error(), ""))
		return
	}
	for _, ev := range events {
		e.logEvent(ev)
	}
	out, err := e.storedOutcome(context.WithoutCancel(ctx), c.out.IntentId)
	if err != nil {
		c.fail(airlockv1.Status_STATUS_FAILED, outcomeError("store_unavailable",
			"the stored outcome of intent "+c.out.IntentId+" could not be read: "+err.Error(), ""))
		return
	}
	c.out = out
}

// checkIdempotencyKey says what is wrong with a key (nil: nothing, or no key).
func checkIdempotencyKey(key string) *airlockv1.Error {
	if len(key) > MaxIdempotencyKey {
		return outcomeError("invalid_idempotency_key",
			fmt.Sprintf("idempotency_key is %d bytes: use at most %d printable ASCII characters", len(key), MaxIdempotencyKey), "idempotency_key")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return outcomeError("invalid_idempotency_key",
				fmt.Sprintf("idempotency_key has a byte 0x%02x at offset %d: use printable ASCII without spaces (a UUID, say)", key[i], i), "idempotency_key")
		}
	}
	return nil
}

// replay answers a submission whose (caller, key) is already reserved:
// the same tool, task and arguments get the first intent's outcome (after
// waiting for its approval as the request asks); anything else is refused
// as idempotency_key_reused. Nothing runs a second time.
func (e *Executor) replay(ctx context.Context, caller identity.Caller, req *airlockv1.SubmitRequest, rec *store.IdempotencyRecord) *airlockv1.Outcome {
	if why := e.sameIntent(req, rec); why != "" {
		c := &call{e: e, caller: caller, req: req, start: time.Now(),
			out: &airlockv1.Outcome{IntentId: newID("int"), TaskId: req.GetTaskId(), Tool: req.GetTool()}}
		if t, ok := e.tools[req.GetTool()]; ok {
			c.tool = t
		}
		c.reject(ctx, airlockv1.Status_STATUS_INVALID, outcomeError("idempotency_key_reused",
			fmt.Sprintf("idempotency_key was first used for intent %s with other %s: use a new key for a new intent", rec.IntentID, why), "idempotency_key"))
		return c.out
	}
	out, err := e.storedOutcome(ctx, rec.IntentID)
	if errors.Is(err, store.ErrNotFound) {
		// The first submission is still running (its outcome is stored
		// when it ends), or its executor stopped mid-run.
		out, err = e.awaitReserved(ctx, rec)
	}
	if err != nil {
		code, msg := "store_unavailable", "the outcome of intent "+rec.IntentID+" could not be read: "+err.Error()
		if errors.Is(err, store.ErrNotFound) {
			code = "idempotency_in_progress"
			msg = fmt.Sprintf("the first submission with this idempotency_key (intent %s) is still running and the request's deadline came first: submit again with the same key (or a longer deadline) to get its outcome", rec.IntentID)
		}
		return &airlockv1.Outcome{IntentId: rec.IntentID, TaskId: rec.TaskID, Tool: rec.Tool, Status: airlockv1.Status_STATUS_FAILED,
			Error: outcomeError(code, msg, ""), Duration: durationpb.New(0)}
	}
	if out.GetStatus() == airlockv1.Status_STATUS_PENDING_APPROVAL && out.GetApprovalId() != "" {
		if w := e.waitBound(req.GetApprovalWait()); w > 0 {
			return e.waitDecision(ctx, caller, out, w)
		}
	}
	return out
}

// sameIntent says how req differs from the reserved intent ("" if it does not).
func (e *Executor) sameIntent(req *airlockv1.SubmitRequest, rec *store.IdempotencyRecord) string {
	if req.GetTool() != rec.Tool {
		return "tool"
	}
	if req.GetTaskId() != rec.TaskID {
		return "task"
	}
	t, ok := e.tools[rec.Tool]
	if !ok {
		return "tool"
	}
	args, err := t.m.ValidateArgs([]byte(req.GetArguments()))
	if err != nil {
		return "arguments"
	}
	sum := sha256.Sum256(manifest.Canonical(args))
	if hex.EncodeToString(sum[:]) != rec.ArgsSHA256 {
		return "arguments"
	}
	return ""
}

// awaitReserved waits, while ctx lives, for the outcome of an intent
// whose idempotency key is reserved. An intent whose executor is gone
// (gone says why) is settled as interrupted, at most once across the
// executors sharing the store, and that outcome returns. It returns
// store.ErrNotFound when ctx ends first.
func (e *Executor) awaitReserved(ctx context.Context, rec *store.IdempotencyRecord) (*airlockv1.Outcome, error) {
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	for {
		if why := e.gone(rec, time.Now()); why != "" {
			return e.settleInterrupted(ctx, rec, why)
		}
		select {
		case <-ctx.Done():
			return nil, store.ErrNotFound
		case <-tick.C:
		}
		out, err := e.storedOutcome(ctx, rec.IntentID)
		if !errors.Is(err, store.ErrNotFound) {
			return out, err
		}
	}
}

// gone says why the intent that reserved rec (and has no outcome) can no
// longer get one from its executor, or "" while it may: this run reserved
// it and no longer runs it (its outcome could not be recorded); an
// earlier run of this executor id reserved it (ids are unique among live
// executors, so that run is gone); or its tool's timeout and
// Config.InterruptMargin have passed since it was reserved.
func (e *Executor) gone(rec *store.IdempotencyRecord, now time.Time) string {
	if rec.Executor == e.runID {
		e.mu.Lock()
		running := e.inflight[rec.IntentID]
		e.mu.Unlock()
		if !running {
			return "this executor stopped running it before its outcome was recorded"
		}
		return ""
	}
	if i := strings.LastIndexByte(rec.Executor, '/'); i > 0 && rec.Executor[:i] == clip(e.cfg.ExecutorID, 200) {
		return fmt.Sprintf("executor %s restarted since its run %s reserved it", rec.Executor[:i], rec.Executor[i+1:])
	}
	limit := e.toolTimeout(rec.Tool) + e.cfg.InterruptMargin
	if now.Sub(rec.CreatedAt) > limit {
		return fmt.Sprintf("it has had no outcome for more than %s (its tool's timeout and a margin) since it was reserved at %s", limit, rec.CreatedAt.Format(time.RFC3339))
	}
	return ""
}

// toolTimeout is the timeout of a loaded tool, or the longest of all when
// it is not loaded here.
func (e *Executor) toolTimeout(name string) time.Duration {
	if t, ok := e.tools[name]; ok {
		return time.Duration(t.m.Spec.Limits.Timeout)
	}
	var longest time.Duration
	for _, t := range e.tools {
		longest = max(longest, time.Duration(t.m.Spec.Limits.Timeout))
	}
	return longest
}

// settleInterrupted records the intent that reserved rec as failed with
// code interrupted: its execution event, its intent record and its
// outcome marker in one batch, so that of this and any other settlement
// or a late outcome only one commits. The stored outcome returns.
func (e *Executor) settleInterrupted(ctx context.Context, rec *store.IdempotencyRecord, why string) (*airlockv1.Outcome, error) {
	now := time.Now().UTC()
	ev := &audit.Event{
		ID: newID("evt"), Time: now, Type: audit.TypeExecution, Executor: e.cfg.ExecutorID, Caller: rec.Caller,
		TaskID: rec.TaskID, IntentID: rec.IntentID, ArgsSHA256: rec.ArgsSHA256, Tool: &audit.ToolRef{Name: rec.Tool},
		Status:  airlockv1.Status_STATUS_FAILED.Name(),
		Details: map[string]any{"reserved_by": clip(rec.Executor, maxLogString), "reason": why},
	}
	if t, ok := e.tools[rec.Tool]; ok {
		ev.Tool.Version, ev.Tool.Digest = t.m.Metadata.Version, t.m.Digest()
	}
	oerr := outcomeError("interrupted", fmt.Sprintf("intent %s (the first submission with this idempotency_key) has no outcome and never will: %s. Its tool may or may not have run, and airlock does not run it twice: check its effects, and submit with a new key if needed",
		rec.IntentID, why), "")
	ev.Error = &audit.ErrorInfo{Code: oerr.Code, Message: clip(oerr.Message, MaxErrorMessage)}
	out := &airlockv1.Outcome{IntentId: rec.IntentID, TaskId: rec.TaskID, Tool: rec.Tool, Status: airlockv1.Status_STATUS_FAILED,
		Error: oerr, AuditEventId: ev.ID, Duration: durationpb.New(0)}
	body, err := proto.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode outcome: %w", err)
	}
	b := &store.Batch{
		Events: []*audit.Event{ev},
		Intents: []*store.Intent{{ID: rec.IntentID, TaskID: rec.TaskID, Caller: rec.Caller, Tool: rec.Tool,
			Status: out.Status.Name(), Created: rec.CreatedAt, Outcome: body}},
		Idempotency: []*store.IdempotencyRecord{outcomeMarker(rec.Caller, rec.IntentID, rec.ArgsSHA256)},
	}
	if rec.TaskID != "" {
		// The call counts against its task: it may have run.
		b.CallCounts = map[string]int64{rec.TaskID: 1}
	}
	err = e.commit(context.WithoutCancel(ctx), b)
	switch {
	case err == nil:
		if rec.TaskID != "" {
			e.mu.Lock()
			if t, ok := e.tasks[rec.TaskID]; ok {
				t.CallCount++
			}
			e.mu.Unlock()
		}
		e.logEvent(ev)
		return out, nil
	case errors.Is(err, store.ErrConflict):
		// Its outcome, or another settlement, came first: that one holds.
		return e.storedOutcome(context.WithoutCancel(ctx), rec.IntentID)
	default:
		return nil, err
	}
}
