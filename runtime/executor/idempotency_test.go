package executor_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/store"
)

// spin is a json.query that never ends: only its timeout or its caller
// stops it.
var spin = &airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":"0 | until(false; . + 1)","input":{}}`}

// withKey returns a copy of req with an idempotency key.
func withKey(req *airlockv1.SubmitRequest, key string) *airlockv1.SubmitRequest {
	return &airlockv1.SubmitRequest{Tool: req.Tool, Arguments: req.Arguments, TaskId: req.TaskId, IdempotencyKey: key}
}

// newIdemEnv is newApprovalEnv on a store whose commits can be made to
// fail.
func newIdemEnv(t *testing.T, cfg executor.Config) (*approvalEnv, *brokenStore) {
	t.Helper()
	env := openApprovalEnv(t)
	bs := &brokenStore{Store: env.st}
	env.st = bs
	env.x = env.start(t, cfg)
	return env, bs
}

// toolsWithTimeout loads the env's tools again with json.query's timeout
// set to d.
func toolsWithTimeout(t *testing.T, d time.Duration) []*manifest.Manifest {
	t.Helper()
	tools, _ := loadApprovalTools(t, testenv.BundledManifests(t))
	for _, m := range tools {
		if m.Metadata.Name == "json.query" {
			m.Spec.Limits.Timeout = manifest.Duration(d)
		}
	}
	return tools
}

// reserve commits what an executor killed between an intent's decision
// and its outcome leaves: the decision event and the idempotency
// reservation, and no outcome. It returns the intent id.
func (env *approvalEnv) reserve(t *testing.T, req *airlockv1.SubmitRequest, runID string, at time.Time) string {
	t.Helper()
	var m *manifest.Manifest
	for _, tm := range env.tools {
		if tm.Metadata.Name == req.Tool {
			m = tm
		}
	}
	args, err := m.ValidateArgs([]byte(req.Arguments))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(manifest.Canonical(args))
	intent := ids.New("int")
	ev := &audit.Event{ID: ids.New("evt"), Time: at, Type: audit.TypeDecision, Executor: "gone", Caller: planner.SpiffeID,
		IntentID: intent, TaskID: req.TaskId, ArgsSHA256: hex.EncodeToString(sum[:]), Tool: &audit.ToolRef{Name: req.Tool},
		Decision: &audit.Decision{Effect: "allow"}}
	rec := &store.IdempotencyRecord{Caller: planner.SpiffeID, Key: req.IdempotencyKey, IntentID: intent, TaskID: req.TaskId,
		Tool: req.Tool, ArgsSHA256: ev.ArgsSHA256, CreatedAt: at, Executor: runID}
	if err := env.st.Commit(context.Background(), []*store.Batch{{Events: []*audit.Event{ev}, Idempotency: []*store.IdempotencyRecord{rec}}}); err != nil {
		t.Fatal(err)
	}
	return intent
}

// A reservation older than its tool's timeout and the margin, with no
// outcome, is settled as interrupted once, whoever asks and however many
// ask at once; resubmissions then return that one outcome.
func TestStaleReservationSettledOnce(t *testing.T) {
	env, _ := newIdemEnv(t, executor.Config{ExecutorID: "exec-a", InterruptMargin: time.Minute})
	x2 := env.start(t, executor.Config{ExecutorID: "exec-b", InterruptMargin: time.Minute})
	ctx := context.Background()
	req := withKey(&airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".a","input":{"a":1}}`}, "stale-1")
	intent := env.reserve(t, req, "exec-gone/run_old", time.Now().Add(-2*time.Minute))

	var wg sync.WaitGroup
	outs := make([]*airlockv1.Outcome, 8)
	for i := range outs {
		x := env.x
		if i%2 == 1 {
			x = x2
		}
		wg.Go(func() { outs[i] = x.Submit(ctx, planner, req) })
	}
	wg.Wait()
	for _, o := range outs {
		wantOutcome(t, o, airlockv1.Status_STATUS_FAILED, "interrupted")
		if o.GetIntentId() != intent || o.GetAuditEventId() == "" || o.GetAuditEventId() != outs[0].GetAuditEventId() {
			t.Fatalf("resubmissions got %v and %v: want intent %s under one audit event", o, outs[0], intent)
		}
	}
	if n := executions(t, env.st, intent); n != 1 {
		t.Fatalf("%d execution events for the interrupted intent, want 1", n)
	}
	got, err := env.x.GetIntent(ctx, planner, intent)
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, got, airlockv1.Status_STATUS_FAILED, "interrupted")
	// A resubmission with other arguments is still refused.
	other := env.x.Submit(ctx, planner, withKey(&airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".b","input":{}}`}, "stale-1"))
	wantOutcome(t, other, airlockv1.Status_STATUS_INVALID, "idempotency_key_reused")
}

// A reservation by an earlier run of the same executor id is settled at
// once (that run is gone); one as fresh by another executor is not: the
// resubmission waits for it until its deadline and records nothing.
func TestRestartSettlesItsOwnReservations(t *testing.T) {
	env, _ := newIdemEnv(t, executor.Config{ExecutorID: "exec-a", InterruptMargin: time.Hour})
	ctx := context.Background()
	mine := withKey(&airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".a","input":{"a":1}}`}, "restart-1")
	intent := env.reserve(t, mine, "exec-a/run_previous", time.Now())
	out := env.x.Submit(ctx, planner, mine)
	wantOutcome(t, out, airlockv1.Status_STATUS_FAILED, "interrupted")
	if out.GetIntentId() != intent || !strings.Contains(out.GetError().GetMessage(), "restarted") {
		t.Fatalf("outcome %v", out)
	}

	theirs := withKey(&airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".a","input":{"a":2}}`}, "restart-2")
	other := env.reserve(t, theirs, "exec-b/run_live", time.Now())
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	out = env.x.Submit(wctx, planner, theirs)
	wantOutcome(t, out, airlockv1.Status_STATUS_FAILED, "idempotency_in_progress")
	if out.GetAuditEventId() != "" {
		t.Fatalf("an unsettled wait has an audit event: %v", out)
	}
	if n := executions(t, env.st, other); n != 0 {
		t.Fatalf("%d execution events for an intent another executor may still run", n)
	}
	if _, err := env.st.Intent(ctx, other); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("intent %s got an outcome: %v", other, err)
	}
}

// waitReserved waits until the key is reserved and returns its intent,
// which has no outcome yet.
func waitReserved(t *testing.T, st store.Store, key string) string {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		rec, err := st.Idempotency(ctx, planner.SpiffeID, key)
		if err == nil {
			return rec.IntentID
		}
		if !errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("key %s was not reserved: %v", key, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A resubmission while the first submission runs waits for it and gets
// its outcome; the tool ran once.
func TestResubmissionWaitsForRunningIntent(t *testing.T) {
	env, _ := newIdemEnv(t, executor.Config{Tools: toolsWithTimeout(t, time.Second)})
	ctx := context.Background()
	req := withKey(spin, "running-1")
	first := make(chan *airlockv1.Outcome, 1)
	go func() { first <- env.x.Submit(ctx, planner, req) }()
	intent := waitReserved(t, env.st, "running-1")
	second := env.x.Submit(ctx, planner, req)
	f := <-first
	wantOutcome(t, f, airlockv1.Status_STATUS_TIMEOUT, "timeout")
	if second.GetIntentId() != intent || f.GetIntentId() != intent || second.GetStatus() != f.GetStatus() || second.GetAuditEventId() != f.GetAuditEventId() {
		t.Fatalf("resubmission %v, first %v", second, f)
	}
	if n := executions(t, env.st, intent); n != 1 {
		t.Fatalf("ran %d times", n)
	}
}

// An intent this run reserved whose outcome could not be recorded (the
// store failed) is settled at once by a resubmission.
func TestAbandonedReservationSettled(t *testing.T) {
	env, bs := newIdemEnv(t, executor.Config{Tools: toolsWithTimeout(t, time.Minute), InterruptMargin: time.Hour})
	req := withKey(spin, "abandoned-1")
	rctx, cancel := context.WithCancel(context.Background())
	first := make(chan *airlockv1.Outcome, 1)
	go func() { first <- env.x.Submit(rctx, planner, req) }()
	intent := waitReserved(t, env.st, "abandoned-1")
	bs.broken.Store(true)
	cancel()
	f := <-first
	wantOutcome(t, f, airlockv1.Status_STATUS_FAILED, "audit_unavailable")
	bs.broken.Store(false)
	out := env.x.Submit(context.Background(), planner, req)
	wantOutcome(t, out, airlockv1.Status_STATUS_FAILED, "interrupted")
	if out.GetIntentId() != intent || out.GetAuditEventId() == "" {
		t.Fatalf("outcome %v", out)
	}
	if n := executions(t, env.st, intent); n != 1 {
		t.Fatalf("%d execution events, want the interruption only", n)
	}
}

// When another executor settles an intent as interrupted while it still
// runs here, its late outcome does not replace the settled one: its
// execution event is recorded, and its caller gets the stored outcome.
func TestLateOutcomeAfterSettlement(t *testing.T) {
	env, _ := newIdemEnv(t, executor.Config{ExecutorID: "exec-a", Tools: toolsWithTimeout(t, time.Minute)})
	// exec-b believes json.query times out at once: it settles the intent
	// that exec-a runs.
	x2 := env.start(t, executor.Config{ExecutorID: "exec-b", Tools: toolsWithTimeout(t, time.Millisecond), InterruptMargin: time.Millisecond})
	req := withKey(spin, "late-1")
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan *airlockv1.Outcome, 1)
	go func() { first <- env.x.Submit(rctx, planner, req) }()
	intent := waitReserved(t, env.st, "late-1")
	settled := x2.Submit(context.Background(), planner, req)
	wantOutcome(t, settled, airlockv1.Status_STATUS_FAILED, "interrupted")
	cancel() // exec-a's run ends now, after the settlement
	f := <-first
	wantOutcome(t, f, airlockv1.Status_STATUS_FAILED, "interrupted")
	if f.GetIntentId() != intent || f.GetAuditEventId() != settled.GetAuditEventId() {
		t.Fatalf("late outcome %v, settled %v", f, settled)
	}
	if n := executions(t, env.st, intent); n != 2 {
		t.Fatalf("%d execution events, want the settlement and the late run", n)
	}
	stored, err := env.x.GetIntent(context.Background(), planner, intent)
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetAuditEventId() != settled.GetAuditEventId() {
		t.Fatalf("stored outcome %v, want the settled one", stored)
	}
}

// An approved intent claimed by an executor that died mid-run is settled
// once, as failed with code interrupted, and never run; a fresh claim is
// left alone.
func TestStaleApprovalClaimInterrupted(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{ApprovalPoll: time.Hour})
	ctx := context.Background()
	task := env.task(t)
	var claims []*airlockv1.Outcome
	for _, p := range []string{"stale.txt", "fresh.txt"} {
		a := env.x.Submit(ctx, planner, write(task, p, "C"))
		wantOutcome(t, a, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
		claims = append(claims, a)
	}
	// Approved only once the executor is closed: its loop's first round
	// (which runs at start, whatever ApprovalPoll says) never sees them.
	if err := env.x.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A dead executor claimed the first an hour ago; a live one claims the
	// second now.
	for i, at := range []time.Time{time.Now().Add(-time.Hour), time.Now()} {
		err := env.st.Commit(ctx, []*store.Batch{{ApprovalChanges: []*store.ApprovalChange{{
			ID: claims[i].GetApprovalId(), From: []store.ApprovalState{store.ApprovalPending}, To: store.ApprovalApproved,
			At: at.UTC(), Approver: operator.SpiffeID,
		}}}, {ApprovalChanges: []*store.ApprovalChange{{
			ID: claims[i].GetApprovalId(), From: []store.ApprovalState{store.ApprovalApproved}, To: store.ApprovalClaimed,
			At: at.UTC(), ClaimedBy: "dead-host/run_x",
		}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // two executors in turn: the second settles nothing again
		x := env.start(t, executor.Config{ApprovalPoll: time.Hour, ApprovalStaleClaim: time.Minute})
		out, err := x.GetIntentWait(ctx, planner, claims[0].GetIntentId(), durationpb.New(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, out, airlockv1.Status_STATUS_FAILED, "interrupted")
		if err := x.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := executions(t, env.st, claims[0].GetIntentId()); n != 1 {
		t.Fatalf("%d execution events for the stale claim, want 1 (the interruption)", n)
	}
	a, err := env.st.Approval(ctx, claims[0].GetApprovalId())
	if err != nil {
		t.Fatal(err)
	}
	if a.State != store.ApprovalDone || a.IntentStatus != airlockv1.Status_STATUS_FAILED.Name() {
		t.Fatalf("stale claim: %s %s", a.State, a.IntentStatus)
	}
	for _, p := range []string{"stale.txt", "fresh.txt"} {
		if m, _ := filepath.Glob(filepath.Join(env.data, "workspaces", task, p)); len(m) != 0 {
			t.Fatalf("%s was written: an interrupted claim must never run", p)
		}
	}
	fresh, err := env.st.Approval(ctx, claims[1].GetApprovalId())
	if err != nil {
		t.Fatal(err)
	}
	if fresh.State != store.ApprovalClaimed || executions(t, env.st, claims[1].GetIntentId()) != 0 {
		t.Fatalf("a fresh claim was settled: %s", fresh.State)
	}
}

// An idempotency key older than IdempotencyTTL is purged, with its
// intent's outcome marker, by the executor in the background; submitted
// again, it starts a new intent that runs. A key younger than the TTL is
// kept and still answers with its first intent.
func TestExpiredIdempotencyKeyPurged(t *testing.T) {
	ctx := context.Background()
	env := openApprovalEnv(t)
	// What earlier runs left: a key reserved 2h ago (past the TTL below)
	// with its outcome marker, and one reserved 30m ago (within it).
	oldReq := withKey(&airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".a","input":{"a":1}}`}, "ttl-old")
	freshReq := withKey(&airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".a","input":{"a":2}}`}, "ttl-fresh")
	oldAt := time.Now().Add(-2 * time.Hour)
	oldIntent := env.reserve(t, oldReq, "exec-gone/run_old", oldAt)
	marker := "outcome " + oldIntent
	if err := env.st.Commit(ctx, []*store.Batch{{Idempotency: []*store.IdempotencyRecord{{Caller: planner.SpiffeID, Key: marker,
		IntentID: oldIntent, CreatedAt: oldAt.Add(time.Second)}}}}); err != nil {
		t.Fatal(err)
	}
	freshIntent := env.reserve(t, freshReq, "exec-gone/run_old", time.Now().Add(-30*time.Minute))

	// The least TTL these approval settings allow.
	cfg := executor.Config{ExecutorID: "exec-a", IdempotencyTTL: time.Hour, ApprovalTTL: 30 * time.Minute}
	if f := executor.IdempotencyTTLFloor(cfg); f != time.Hour {
		t.Fatalf("floor %s, want 1h", f)
	}
	env.x = env.start(t, cfg)
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := env.st.Idempotency(ctx, planner.SpiffeID, "ttl-old")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("the expired key was not purged: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := env.st.Idempotency(ctx, planner.SpiffeID, marker); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the expired outcome marker: %v, want purged", err)
	}
	if rec, err := env.st.Idempotency(ctx, planner.SpiffeID, "ttl-fresh"); err != nil || rec.IntentID != freshIntent {
		t.Fatalf("the key within its TTL: %+v, %v; want kept for intent %s", rec, err, freshIntent)
	}

	// The expired key starts a new intent, which runs once.
	out := env.x.Submit(ctx, planner, oldReq)
	wantOutcome(t, out, airlockv1.Status_STATUS_OK, "")
	if out.GetIntentId() == oldIntent || !strings.Contains(out.GetOutput(), `"results":[1]`) {
		t.Fatalf("resubmission after the TTL: %v; want a new intent that ran", out)
	}
	if n := executions(t, env.st, out.GetIntentId()); n != 1 {
		t.Fatalf("the new intent ran %d times", n)
	}
	if rec, err := env.st.Idempotency(ctx, planner.SpiffeID, "ttl-old"); err != nil || rec.IntentID != out.GetIntentId() {
		t.Fatalf("the key after resubmission: %+v, %v; want bound to %s", rec, err, out.GetIntentId())
	}
	// The same submission again replays the new intent.
	again := env.x.Submit(ctx, planner, oldReq)
	if again.GetIntentId() != out.GetIntentId() || again.GetAuditEventId() != out.GetAuditEventId() {
		t.Fatalf("replay %v, want the outcome of %s", again, out.GetIntentId())
	}
	// The key within its TTL still answers with its first intent (settled
	// as interrupted: its executor is gone), not a new one.
	fresh := env.x.Submit(ctx, planner, freshReq)
	wantOutcome(t, fresh, airlockv1.Status_STATUS_FAILED, "interrupted")
	if fresh.GetIntentId() != freshIntent {
		t.Fatalf("the key within its TTL started intent %s, want %s", fresh.GetIntentId(), freshIntent)
	}
}

// IdempotencyTTL is refused below its floor, naming the flag; zero takes
// the default, never below the floor.
func TestIdempotencyTTLFloor(t *testing.T) {
	// A zero TTL with a day-long ApprovalTTL starts: the default rises to
	// the floor rather than refusing.
	env := newApprovalEnv(t, executor.Config{ApprovalTTL: 24 * time.Hour})
	ctx := context.Background()
	backend := wasmBackend(t)
	longest := time.Duration(0)
	for _, m := range env.tools {
		longest = max(longest, time.Duration(m.Spec.Limits.Timeout))
	}
	stale := max(executor.DefaultApprovalStaleClaim, 2*longest)
	for _, tc := range []struct {
		cfg   executor.Config
		floor time.Duration
	}{
		{executor.Config{IdempotencyTTL: 30 * time.Minute, ApprovalTTL: time.Minute}, executor.MinIdempotencyTTL},
		{executor.Config{IdempotencyTTL: -time.Hour, ApprovalTTL: time.Minute}, executor.MinIdempotencyTTL},
		{executor.Config{IdempotencyTTL: time.Hour}, executor.DefaultApprovalTTL + stale + executor.DefaultInterruptMargin},
		{executor.Config{IdempotencyTTL: 24 * time.Hour, ApprovalTTL: 24 * time.Hour}, 24*time.Hour + stale + executor.DefaultInterruptMargin},
	} {
		tc.cfg.Tools, tc.cfg.Policy, tc.cfg.Store, tc.cfg.DataDir = env.tools, env.eng, env.st, t.TempDir()
		tc.cfg.Backend = backend
		if got := executor.IdempotencyTTLFloor(tc.cfg); got != tc.floor {
			t.Fatalf("floor of %+v: %s, want %s", tc.cfg, got, tc.floor)
		}
		x, err := executor.New(ctx, tc.cfg)
		if err == nil {
			x.Close(ctx)
			t.Fatalf("IdempotencyTTL %s was accepted below its floor %s", tc.cfg.IdempotencyTTL, tc.floor)
		}
		if !strings.Contains(err.Error(), "--idempotency-ttl") || !strings.Contains(err.Error(), "at least "+tc.floor.String()) {
			t.Fatalf("IdempotencyTTL %s: %v; want an error naming the flag and its floor %s", tc.cfg.IdempotencyTTL, err, tc.floor)
		}
	}
}
