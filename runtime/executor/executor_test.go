package executor_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
	"github.com/airlock-dev/airlock/sandbox"
	"github.com/airlock-dev/airlock/sandbox/plugin"
	"github.com/airlock-dev/airlock/sandbox/wasm"
)

// brokenStore is a real SQLite store whose commits can be made to fail, as
// when the disk is full.
type brokenStore struct {
	store.Store
	broken atomic.Bool
}

func (s *brokenStore) Commit(ctx context.Context, b []*store.Batch) error {
	if s.broken.Load() {
		return errors.New("disk I/O error: the disk is full")
	}
	return s.Store.Commit(ctx, b)
}

// wasmBackend starts a WASM backend, closed when t ends.
func wasmBackend(t *testing.T) *wasm.Backend {
	t.Helper()
	ctx := context.Background()
	backend, err := wasm.New(ctx, wasm.Config{CacheDir: testenv.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close(ctx) })
	return backend
}

// newSandboxes starts the WASM and plugin backends, closed when t ends.
// The bundled sqlite.query is a plugin tool: prepared (its binary
// verified), never started by these tests.
func newSandboxes(t *testing.T) *sandbox.Mux {
	t.Helper()
	ctx := context.Background()
	plugins, err := plugin.New(ctx, plugin.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plugins.Close(ctx) })
	return &sandbox.Mux{Wasm: wasmBackend(t), Plugin: plugins}
}

func newExecutor(t *testing.T) (*executor.Executor, *brokenStore, string) {
	t.Helper()
	ctx := context.Background()
	root := testenv.Root(t)
	tools, err := manifest.LoadDir(testenv.BundledManifests(t))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.LoadDir(filepath.Join(root, "manifests", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Compile(set.Policies, tools, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(data, "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bs := &brokenStore{Store: st}
	sandboxes := newSandboxes(t)
	x, err := executor.New(ctx, executor.Config{Tools: tools, Policy: eng, Backend: sandboxes, Store: bs, DataDir: data,
		Egress: egress.New(egress.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close(ctx) })
	return x, bs, data
}

// When the store cannot record, nothing with side effects runs and no
// output is released.
func TestStoreDownFailsClosed(t *testing.T) {
	x, bs, data := newExecutor(t)
	ctx := context.Background()
	me := identity.FromUID(1000)
	task, err := x.BeginTask(ctx, me, &airlockv1.BeginTaskRequest{Purpose: "store down"})
	if err != nil {
		t.Fatal(err)
	}

	bs.broken.Store(true)
	out := x.Submit(ctx, me, &airlockv1.SubmitRequest{Tool: "workspace.write", TaskId: task.GetId(),
		Arguments: `{"path":"a.txt","content":"must not be written"}`})
	if out.GetStatus() != airlockv1.Status_STATUS_FAILED || out.GetError().GetCode() != "audit_unavailable" || out.GetOutput() != "" {
		t.Fatalf("workspace.write with the store down: %v", out)
	}
	if _, err := os.Stat(filepath.Join(data, "workspaces", task.GetId(), "a.txt")); !os.IsNotExist(err) {
		t.Fatalf("the tool ran although its decision could not be recorded: %v", err)
	}
	// A side-effect-free tool may run, but its output is withheld.
	out = x.Submit(ctx, me, &airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".","input":"secret result"}`})
	if out.GetStatus() != airlockv1.Status_STATUS_FAILED || out.GetError().GetCode() != "audit_unavailable" || out.GetOutput() != "" || out.GetAuditEventId() != "" {
		t.Fatalf("json.query with the store down: %v", out)
	}
	// A refused intent is not recorded either, and says so.
	out = x.Submit(ctx, me, &airlockv1.SubmitRequest{Tool: "nope", Arguments: `{}`})
	if out.GetError().GetCode() != "audit_unavailable" {
		t.Fatalf("unknown tool with the store down: %v", out)
	}

	bs.broken.Store(false)
	out = x.Submit(ctx, me, &airlockv1.SubmitRequest{Tool: "workspace.write", TaskId: task.GetId(),
		Arguments: `{"path":"a.txt","content":"now"}`})
	if out.GetStatus() != airlockv1.Status_STATUS_OK {
		t.Fatalf("after the store recovered: %v", out)
	}
	if rep := store.Verify(ctx, bs.Store); !rep.OK() {
		t.Fatal(rep.String())
	}
}

// A task belongs to the caller that began it.
func TestTaskBelongsToItsCaller(t *testing.T) {
	x, _, _ := newExecutor(t)
	ctx := context.Background()
	a, b := identity.FromUID(1000), identity.FromUID(1001)
	task, err := x.BeginTask(ctx, a, &airlockv1.BeginTaskRequest{Purpose: "a's"})
	if err != nil {
		t.Fatal(err)
	}
	out := x.Submit(ctx, b, &airlockv1.SubmitRequest{Tool: "workspace.list", TaskId: task.GetId(), Arguments: `{}`})
	if out.GetStatus() != airlockv1.Status_STATUS_DENIED || out.GetError().GetCode() != "task_not_owned" {
		t.Fatalf("b used a's task: %v", out)
	}
	var te *executor.TaskError
	if _, err := x.EndTask(ctx, b, task.GetId(), ""); !errors.As(err, &te) || te.Code != "not_found" {
		t.Fatalf("b ended a's task: %v", err)
	}
	if _, err := x.GetTask(ctx, b, task.GetId()); !errors.As(err, &te) || te.Code != "not_found" {
		t.Fatalf("b read a's task: %v", err)
	}
	out = x.Submit(ctx, a, &airlockv1.SubmitRequest{Tool: "workspace.list", TaskId: task.GetId(), Arguments: `{}`})
	if out.GetStatus() != airlockv1.Status_STATUS_OK {
		t.Fatalf("a's own call: %v", out)
	}
	if _, err := x.GetIntent(ctx, b, out.GetIntentId()); !errors.As(err, &te) || te.Code != "not_found" {
		t.Fatalf("b read a's intent: %v", err)
	}
}

// Ending a task while its calls run leaves nothing behind: no call is
// admitted after the end, and the workspace is removed once the calls in
// flight are gone.
func TestEndTaskWhileCallsRun(t *testing.T) {
	x, _, data := newExecutor(t)
	ctx := context.Background()
	me := identity.FromUID(1000)
	for round := 0; round < 3; round++ {
		task, err := x.BeginTask(ctx, me, &airlockv1.BeginTaskRequest{Purpose: "race"})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					out := x.Submit(ctx, me, &airlockv1.SubmitRequest{Tool: "workspace.write", TaskId: task.GetId(),
						Arguments: `{"path":"f.txt","content":"x"}`})
					switch out.GetStatus() {
					case airlockv1.Status_STATUS_OK, airlockv1.Status_STATUS_INVALID, airlockv1.Status_STATUS_FAILED:
					default:
						t.Errorf("unexpected outcome %v", out)
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		if _, err := x.EndTask(ctx, me, task.GetId(), "race"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if _, err := os.Stat(filepath.Join(data, "workspaces", task.GetId())); !os.IsNotExist(err) {
			t.Fatalf("round %d: the ended task's workspace is still there (%v)", round, err)
		}
	}
}
