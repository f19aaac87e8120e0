package executor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// recordingSource is a credential source that records what it revoked,
// and whose issue blocks while block is set, until the call is canceled.
type recordingSource struct {
	mu      sync.Mutex
	revoked map[string]bool // by SourceRef
	issued  []string
	block   bool
	entered chan string // receives the lease id of a blocked issue
}

func (s *recordingSource) Name() string { return "rec" }

func (s *recordingSource) Issue(ctx context.Context, req credentials.IssueRequest) (*credentials.Credential, error) {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block {
		s.entered <- req.LeaseID
		<-ctx.Done()
		return nil, fmt.Errorf("issue canceled: %w", ctx.Err())
	}
	ref := "tok-" + req.LeaseID
	s.mu.Lock()
	s.issued = append(s.issued, ref)
	s.mu.Unlock()
	return &credentials.Credential{Value: ref, SourceRef: ref, ExpiresAt: req.NotAfter}, nil
}

func (s *recordingSource) Revoke(_ context.Context, c *credentials.Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[c.SourceRef] = true
	return nil
}

func (s *recordingSource) isRevoked(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoked[ref]
}

func (s *recordingSource) lastIssued(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.issued) == 0 {
		t.Fatal("nothing was issued")
	}
	return s.issued[len(s.issued)-1]
}

// twoExecutors starts executors A and B on ONE store, each with its own
// data directory and its own lease key (no shared key: B cannot revoke
// what A issued, so only A's following of the store can).
func twoExecutors(t *testing.T, src credentials.Source) (a, b *executor.Executor, st store.Store) {
	t.Helper()
	ctx := context.Background()
	jq := filepath.Join(testenv.Root(t), "build", "wasm", "jsonquery.wasm")
	mdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(mdir, "cred.query.yaml"), fmt.Appendf(nil, `apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: cred.query, version: 1.0.0, description: "json.query holding a task-scoped credential"}
spec:
  runtime:
    wasm: {module: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities:
    credentials:
      - {name: api, source: rec, inject: {env: {name: API_TOKEN}}}
  limits: {memory: 64MiB, timeout: 20s, output: 1MiB}
  risk: low
`, jq, testenv.SHA256File(t, jq)), 0o600); err != nil {
		t.Fatal(err)
	}
	tools, err := manifest.LoadDir(mdir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.LoadDir(testenv.Policy(t, "allow", testenv.AllowAll))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Compile(set.Policies, tools, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := credentials.NewRegistry(src)
	if err != nil {
		t.Fatal(err)
	}
	sandboxes := newSandboxes(t)
	start := func(id string) *executor.Executor {
		x, err := executor.New(ctx, executor.Config{Tools: tools, Policy: eng, Backend: sandboxes, Store: st,
			DataDir: t.TempDir(), ExecutorID: id, Credentials: reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close(ctx) })
		return x
	}
	return start("exec-a"), start("exec-b"), st
}

// waitFor polls cond until it holds; it fails the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %s", what)
		}
	}
}

func credCall(ctx context.Context, x *executor.Executor, me identity.Caller, task string) *airlockv1.Outcome {
	return x.Submit(ctx, me, &airlockv1.SubmitRequest{Tool: "cred.query", TaskId: task, Arguments: `{"filter":".","input":1}`})
}

// A task begun and used on A and ended on B: A refuses its next call at
// once, A's call in flight is canceled, and the lease A issued (which B
// cannot unseal without a shared key) is revoked at its source by A.
func TestTaskEndedOnAnotherExecutor(t *testing.T) {
	src := &recordingSource{revoked: map[string]bool{}, entered: make(chan string, 1)}
	a, b, st := twoExecutors(t, src)
	ctx := context.Background()
	me := identity.FromUID(1000)

	task, err := a.BeginTask(ctx, me, &airlockv1.BeginTaskRequest{Purpose: "coherence"})
	if err != nil {
		t.Fatal(err)
	}
	if out := credCall(ctx, a, me, task.GetId()); out.GetStatus() != airlockv1.Status_STATUS_OK {
		t.Fatalf("first call on A: %v", out)
	}
	tokA := src.lastIssued(t)
	// A call on A in flight: blocked in its source until canceled.
	src.mu.Lock()
	src.block = true
	src.mu.Unlock()
	inflight := make(chan *airlockv1.Outcome, 1)
	go func() { inflight <- credCall(ctx, a, me, task.GetId()) }()
	<-src.entered
	src.mu.Lock()
	src.block = false
	src.mu.Unlock()

	ended, err := b.EndTask(ctx, me, task.GetId(), "done on B")
	if err != nil || ended.GetEndedAt() == nil {
		t.Fatalf("end on B: %v %v", ended, err)
	}
	// At once: the very next call on A is refused, before any follower pass
	// could have run.
	out := credCall(ctx, a, me, task.GetId())
	if out.GetStatus() != airlockv1.Status_STATUS_INVALID || out.GetError().GetCode() != "task_ended" {
		t.Fatalf("call on A right after the end on B: %v", out)
	}
	// The call in flight on A is canceled (not left to run).
	var got *airlockv1.Outcome
	select {
	case got = <-inflight:
	case <-time.After(time.Minute):
		t.Fatal("the call in flight on A was not canceled within a minute of the end on B")
	}
	if got.GetStatus() != airlockv1.Status_STATUS_FAILED || !strings.Contains(got.GetError().GetMessage(), "canceled") {
		t.Fatalf("the call in flight on A: %v", got)
	}
	// B could not unseal A's lease reference; A revokes it at the source.
	waitFor(t, "A revokes the lease it issued", func() bool { return src.isRevoked(tokA) })
	waitFor(t, "no lease of the task stays open", func() bool {
		open, err := st.OpenLeases(ctx, task.GetId())
		return err == nil && len(open) == 0
	})
	recs, err := st.AuditRecords(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ends, revokesByA int
	for _, r := range recs {
		body := string(r.Body)
		if strings.Contains(body, `"type":"task.end"`) {
			ends++
		}
		if strings.Contains(body, `"type":"credential.revoke"`) && strings.Contains(body, `"executor":"exec-a"`) && strings.Contains(body, `"lease_id"`) &&
			!strings.Contains(body, `"failed"`) {
			revokesByA++
		}
	}
	if ends != 1 || revokesByA == 0 {
		t.Fatalf("audit: %d task.end events (want 1), %d revocations by A (want some)", ends, revokesByA)
	}
	// A does not end it a second time, and says when it ended.
	var te *executor.TaskError
	if _, err := a.EndTask(ctx, me, task.GetId(), "again on A"); !errors.As(err, &te) || te.Code != "failed_precondition" {
		t.Fatalf("end on A after the end on B: %v", err)
	}
	if got, err := a.GetTask(ctx, me, task.GetId()); err != nil || got.GetEndedAt() == nil {
		t.Fatalf("get on A: %v %v", got, err)
	}
	if rep := store.Verify(ctx, st); !rep.OK() {
		t.Fatal(rep.String())
	}
}

// A task A has cached, ended on B while A is idle: A's follower ends it
// here without any call (the lease is revoked, the workspace is removed),
// and A's TTL reaper will not end it again.
func TestFollowerEndsIdleTask(t *testing.T) {
	src := &recordingSource{revoked: map[string]bool{}, entered: make(chan string, 1)}
	a, b, st := twoExecutors(t, src)
	ctx := context.Background()
	me := identity.FromUID(1000)
	task, err := a.BeginTask(ctx, me, &airlockv1.BeginTaskRequest{Purpose: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	if out := credCall(ctx, a, me, task.GetId()); out.GetStatus() != airlockv1.Status_STATUS_OK {
		t.Fatalf("call on A: %v", out)
	}
	tok := src.lastIssued(t)
	if _, err := b.EndTask(ctx, me, task.GetId(), "idle end"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's follower revokes A's lease", func() bool { return src.isRevoked(tok) })
	// Exactly one task.end: A reacted to B's, it did not write its own.
	recs, err := st.AuditRecords(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if strings.Contains(string(r.Body), `"type":"task.end"`) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d task.end events, want 1", n)
	}
}

// taskReads counts the reads of a task from the store.
type taskReads struct {
	store.Store
	n atomic.Int64
}

func (s *taskReads) Task(ctx context.Context, id string) (*store.Task, error) {
	s.n.Add(1)
	return s.Store.Task(ctx, id)
}

// callCountExecutors starts n executors on one counting store, with a
// policy that allows a task three calls (task.call_count counts the calls
// of every executor).
func callCountExecutors(t *testing.T, sole bool, n int) (*taskReads, []*executor.Executor) {
	t.Helper()
	ctx := context.Background()
	tools, err := manifest.LoadDir(testenv.BundledManifests(t))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.LoadDir(testenv.Policy(t, "count", `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: count}
spec:
  match: {tools: ["*"]}
  rules:
    - {name: three-calls, effect: deny, when: 'task.id != "" && task.call_count >= 3', message: '"three calls per task"'}
    - {name: allow-all, effect: allow, when: 'true'}
`))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Compile(set.Policies, tools, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &taskReads{Store: db}
	sandboxes := newSandboxes(t)
	var xs []*executor.Executor
	for i := range n {
		x, err := executor.New(ctx, executor.Config{Tools: tools, Policy: eng, Backend: sandboxes, Store: st,
			DataDir: t.TempDir(), ExecutorID: fmt.Sprintf("exec-%d", i), SoleExecutor: sole, Egress: egress.New(egress.Config{})})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close(ctx) })
		xs = append(xs, x)
	}
	return st, xs
}

func wcCall(ctx context.Context, x *executor.Executor, me identity.Caller, task string) *airlockv1.Outcome {
	return x.Submit(ctx, me, &airlockv1.SubmitRequest{Tool: "text.wc", TaskId: task, Arguments: `{"text":"a b"}`})
}

// task.call_count counts the calls of a task on every executor sharing the
// store: A's third call is denied after one call on A and one on B.
func TestCallCountAcrossExecutors(t *testing.T) {
	_, xs := callCountExecutors(t, false, 2)
	a, b := xs[0], xs[1]
	ctx := context.Background()
	me := identity.FromUID(1000)
	task, err := a.BeginTask(ctx, me, &airlockv1.BeginTaskRequest{Purpose: "count"})
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range []*executor.Executor{a, b, b} {
		if out := wcCall(ctx, x, me, task.GetId()); out.GetStatus() != airlockv1.Status_STATUS_OK {
			t.Fatalf("call %d: %v", i+1, out)
		}
	}
	out := wcCall(ctx, a, me, task.GetId())
	if out.GetStatus() != airlockv1.Status_STATUS_DENIED || !strings.Contains(out.GetError().GetMessage(), "three calls") {
		t.Fatalf("A's fourth call of the task (three made, two on B): %v", out)
	}
}

// With Config.SoleExecutor a call of a cached task does not read the task
// from the store (the cache is the truth), and task.call_count still
// counts every call; without it, every such call reads it.
func TestSoleExecutorTrustsItsCache(t *testing.T) {
	for _, sole := range []bool{true, false} {
		t.Run(fmt.Sprintf("sole=%v", sole), func(t *testing.T) {
			st, xs := callCountExecutors(t, sole, 1)
			x := xs[0]
			ctx := context.Background()
			me := identity.FromUID(1000)
			task, err := x.BeginTask(ctx, me, &airlockv1.BeginTaskRequest{Purpose: "sole"})
			if err != nil {
				t.Fatal(err)
			}
			before := st.n.Load()
			for i := range 3 {
				if out := wcCall(ctx, x, me, task.GetId()); out.GetStatus() != airlockv1.Status_STATUS_OK {
					t.Fatalf("call %d: %v", i+1, out)
				}
			}
			if out := wcCall(ctx, x, me, task.GetId()); out.GetStatus() != airlockv1.Status_STATUS_DENIED {
				t.Fatalf("the fourth call of the task: %v", out)
			}
			// Shared: every call reads the task (the follower's first pass
			// may read it once more). Sole: no call does.
			reads := st.n.Load() - before
			if sole && reads != 0 || !sole && reads < 4 {
				t.Fatalf("%d reads of the task from the store for 4 calls (sole %v): want 0 when sole, at least 4 when shared", reads, sole)
			}
			// Ending it still refuses its next call.
			if _, err := x.EndTask(ctx, me, task.GetId(), "done"); err != nil {
				t.Fatal(err)
			}
			if out := wcCall(ctx, x, me, task.GetId()); out.GetError().GetCode() != "task_ended" {
				t.Fatalf("a call after the end: %v", out)
			}
		})
	}
}
