package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// writesNeedApproval allows everything, asks a human for every workspace
// write, and denies an approved write under recheck/ (the re-check sees
// approval.state).
const writesNeedApproval = testenv.WritesNeedApproval + `    - name: recheck-denies
      effect: deny
      when: 'approval.state == "approved" && tool.name == "workspace.write" && args.path.startsWith("recheck/")'
      message: '"recheck/ is closed once approved"'
`

var (
	planner  = mustCaller("spiffe://airlock.local/agent/planner")
	operator = mustCaller("spiffe://airlock.local/human/ann")
)

var humans = func() identity.Pattern {
	p, err := identity.ParsePattern("spiffe://airlock.local/human/*")
	if err != nil {
		panic(err)
	}
	return p
}()

func mustCaller(id string) identity.Caller {
	c, err := identity.Parse(id)
	if err != nil {
		panic(err)
	}
	return c
}

type approvalEnv struct {
	x     *executor.Executor
	st    store.Store
	data  string
	tools []*manifest.Manifest
	eng   *policy.Engine
}

func loadApprovalTools(t *testing.T, manifests string) ([]*manifest.Manifest, *policy.Engine) {
	t.Helper()
	all, err := manifest.LoadDir(manifests)
	if err != nil {
		t.Fatal(err)
	}
	// The wasm tools only: the test's backend is wasm.
	var tools []*manifest.Manifest
	for _, m := range all {
		if m.Spec.Runtime.Wasm != nil {
			tools = append(tools, m)
		}
	}
	return loadApprovalToolsFrom(t, tools)
}

// openApprovalEnv loads the tools and opens a real SQLite store, starting
// no executor.
func openApprovalEnv(t *testing.T) *approvalEnv {
	t.Helper()
	env := &approvalEnv{data: t.TempDir()}
	env.tools, env.eng = loadApprovalTools(t, testenv.BundledManifests(t))
	st, err := sqlite.Open(context.Background(), filepath.Join(env.data, "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	env.st = st
	return env
}

// newApprovalEnv opens a real SQLite store and starts an executor on it.
func newApprovalEnv(t *testing.T, cfg executor.Config) *approvalEnv {
	t.Helper()
	env := openApprovalEnv(t)
	env.x = env.start(t, cfg)
	return env
}

// start starts an executor on the env's store and data (cfg.Tools and
// cfg.Policy default to the env's).
func (env *approvalEnv) start(t *testing.T, cfg executor.Config) *executor.Executor {
	t.Helper()
	ctx := context.Background()
	backend := wasmBackend(t)
	if cfg.Tools == nil {
		cfg.Tools = env.tools
	}
	if cfg.Policy == nil {
		cfg.Policy = env.eng
	}
	if cfg.Approvers == nil {
		// The operator of these tests is a human SVID; a non-nil empty
		// list leaves the executor's default (the local operators).
		cfg.Approvers = []identity.Pattern{humans}
	}
	cfg.Backend, cfg.Store, cfg.DataDir, cfg.Egress = backend, env.st, env.data, egress.New(egress.Config{})
	x, err := executor.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { x.Close(ctx) }) })
	return x
}

func (env *approvalEnv) task(t *testing.T) string {
	t.Helper()
	tk, err := env.x.BeginTask(context.Background(), planner, &airlockv1.BeginTaskRequest{Purpose: "approvals test"})
	if err != nil {
		t.Fatal(err)
	}
	return tk.GetId()
}

func write(task, path, content string) *airlockv1.SubmitRequest {
	b, _ := json.Marshal(map[string]string{"path": path, "content": content})
	return &airlockv1.SubmitRequest{Tool: "workspace.write", TaskId: task, Arguments: string(b)}
}

func wantOutcome(t *testing.T, out *airlockv1.Outcome, status airlockv1.Status, code string) {
	t.Helper()
	if out.GetStatus() != status || out.GetError().GetCode() != code {
		t.Fatalf("outcome %s: got %v %q (%s), want %v %q", out.GetIntentId(), out.GetStatus(), out.GetError().GetCode(), out.GetError().GetMessage(), status, code)
	}
}

func wantApprovalErr(t *testing.T, err error, code codes.Code) {
	t.Helper()
	var ae *executor.ApprovalError
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("got error %v, want an ApprovalError %v", err, code)
	}
}

// executions counts the execution events the audit chain holds for an
// intent: how many times its tool ran (or was recorded as interrupted).
func executions(t *testing.T, st store.Store, intent string) int {
	t.Helper()
	n := 0
	var after int64
	for {
		recs, err := st.AuditRecords(context.Background(), after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return n
		}
		for _, r := range recs {
			var ev struct {
				Type     string `json:"type"`
				IntentID string `json:"intent_id"`
			}
			if err := json.Unmarshal(r.Body, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type == "execution" && ev.IntentID == intent {
				n++
			}
			after = r.Seq
		}
	}
}

func (env *approvalEnv) file(t *testing.T, task, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.data, "workspaces", task, path))
	if err != nil {
		t.Fatalf("read workspace file %s: %v", path, err)
	}
	return string(b)
}

func TestApprovalCoversOnlyItsArguments(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{})
	ctx := context.Background()
	task := env.task(t)

	a := env.x.Submit(ctx, planner, write(task, "a.txt", "A"))
	wantOutcome(t, a, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	b := env.x.Submit(ctx, planner, write(task, "a.txt", "B"))
	wantOutcome(t, b, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	if a.GetApprovalId() == "" || a.GetApprovalId() == b.GetApprovalId() {
		t.Fatalf("other arguments must make another approval: %q %q", a.GetApprovalId(), b.GetApprovalId())
	}
	shown, err := env.x.GetApproval(ctx, operator, a.GetApprovalId())
	if err != nil {
		t.Fatal(err)
	}
	if shown.GetArguments() != `{"content":"A","path":"a.txt"}` || shown.GetRisk() != "medium" ||
		strings.Join(shown.GetRules(), ",") != "approvals/writes-need-approval" || shown.GetCaller() != planner.SpiffeID {
		t.Fatalf("approval shows %v", shown)
	}

	// The requester cannot approve its own intent.
	_, err = env.x.Approve(ctx, planner, a.GetApprovalId(), "")
	wantApprovalErr(t, err, codes.PermissionDenied)

	got, err := env.x.Approve(ctx, operator, a.GetApprovalId(), "looks fine")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != airlockv1.ApprovalState_APPROVAL_STATE_APPROVED || got.GetApprover() != operator.SpiffeID {
		t.Fatalf("approved: %v", got)
	}
	out, err := env.x.GetIntentWait(ctx, planner, a.GetIntentId(), durationpb.New(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_OK, "")
	if out.GetIntentId() != a.GetIntentId() || out.GetApprovalId() != a.GetApprovalId() || strings.TrimSpace(out.GetOutput()) != `{"bytes":1}` {
		t.Fatalf("final outcome: %v", out)
	}
	if s := env.file(t, task, "a.txt"); s != "A" {
		t.Fatalf("the approved write wrote %q", s)
	}
	// Approving again returns the approval and runs nothing twice.
	again, err := env.x.Approve(ctx, operator, a.GetApprovalId(), "")
	if err != nil || again.GetState() != airlockv1.ApprovalState_APPROVAL_STATE_APPROVED {
		t.Fatalf("approve twice: %v %v", again, err)
	}
	if n := executions(t, env.st, a.GetIntentId()); n != 1 {
		t.Fatalf("the approved intent ran %d times", n)
	}
	// B is still pending: approval A did not cover it.
	pb, err := env.x.GetIntent(ctx, planner, b.GetIntentId())
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, pb, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	if n := executions(t, env.st, b.GetIntentId()); n != 0 {
		t.Fatalf("arguments B ran %d times under approval A", n)
	}
	// Another caller cannot read the planner's intent; an approver sees it listed.
	list, err := env.x.ListApprovals(ctx, operator, &airlockv1.ListApprovalsRequest{})
	if err != nil || len(list) != 1 || list[0].GetId() != b.GetApprovalId() {
		t.Fatalf("pending list: %v %v", list, err)
	}
}

func TestDenyAndExpiryCannotBeRevived(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{ApprovalTTL: 300 * time.Millisecond, ApprovalPoll: 50 * time.Millisecond})
	ctx := context.Background()
	task := env.task(t)

	d := env.x.Submit(ctx, planner, write(task, "d.txt", "D"))
	_, err := env.x.Deny(ctx, operator, d.GetApprovalId(), "")
	wantApprovalErr(t, err, codes.InvalidArgument)
	if _, err := env.x.Deny(ctx, operator, d.GetApprovalId(), "not today"); err != nil {
		t.Fatal(err)
	}
	out, err := env.x.GetIntent(ctx, planner, d.GetIntentId())
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_DENIED, "approval_denied")
	if !strings.Contains(out.GetError().GetMessage(), "not today") {
		t.Fatalf("the denial lacks the reason: %q", out.GetError().GetMessage())
	}
	_, err = env.x.Approve(ctx, operator, d.GetApprovalId(), "")
	wantApprovalErr(t, err, codes.FailedPrecondition)

	// Nobody decides: the loop expires it; approving then fails.
	e := env.x.Submit(ctx, planner, write(task, "e.txt", "E"))
	out, err = env.x.GetIntentWait(ctx, planner, e.GetIntentId(), durationpb.New(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_DENIED, "approval_expired")
	_, err = env.x.Approve(ctx, operator, e.GetApprovalId(), "")
	wantApprovalErr(t, err, codes.FailedPrecondition)
	for _, id := range []string{d.GetIntentId(), e.GetIntentId()} {
		if n := executions(t, env.st, id); n != 0 {
			t.Fatalf("intent %s ran %d times", id, n)
		}
	}
	_, err = env.x.Approve(ctx, operator, "apr_nope", "")
	wantApprovalErr(t, err, codes.NotFound)
}

func TestWaitingSubmitGetsTheFinalOutcome(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{})
	ctx := context.Background()
	task := env.task(t)
	req := write(task, "w.txt", "W")
	req.ApprovalWait = durationpb.New(time.Minute)
	done := make(chan *airlockv1.Outcome, 1)
	go func() { done <- env.x.Submit(ctx, planner, req) }()
	// The operator watches for the approval and approves it.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	werr := env.x.WatchApprovals(wctx, operator, &airlockv1.WatchApprovalsRequest{TaskId: task}, func(a *airlockv1.Approval) error {
		if a.GetState() != airlockv1.ApprovalState_APPROVAL_STATE_PENDING {
			return nil
		}
		if _, err := env.x.Approve(ctx, operator, a.GetId(), "ok"); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if werr != nil && !errors.Is(werr, context.Canceled) {
		t.Fatal(werr)
	}
	out := <-done
	wantOutcome(t, out, airlockv1.Status_STATUS_OK, "")
	if s := env.file(t, task, "w.txt"); s != "W" {
		t.Fatalf("wrote %q", s)
	}

	// The re-check evaluates policy with approval = approved: a deny wins.
	r := env.x.Submit(ctx, planner, write(task, "recheck/x.txt", "X"))
	wantOutcome(t, r, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	if _, err := env.x.Approve(ctx, operator, r.GetApprovalId(), ""); err != nil {
		t.Fatal(err)
	}
	out, err := env.x.GetIntentWait(ctx, planner, r.GetIntentId(), durationpb.New(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_DENIED, "denied")
	if n := executions(t, env.st, r.GetIntentId()); n != 0 {
		t.Fatalf("denied on re-check but ran %d times", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{})
	ctx := context.Background()
	task := env.task(t)
	q := &airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".a","input":{"a":1}}`, IdempotencyKey: "key-1"}
	first := env.x.Submit(ctx, planner, q)
	wantOutcome(t, first, airlockv1.Status_STATUS_OK, "")
	// Same call, whitespace aside: the first outcome, not a second run.
	second := env.x.Submit(ctx, planner, &airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{ "input":{"a":1}, "filter":".a" }`, IdempotencyKey: "key-1"})
	if second.GetIntentId() != first.GetIntentId() || second.GetOutput() != first.GetOutput() {
		t.Fatalf("resubmission: %v, first %v", second, first)
	}
	if n := executions(t, env.st, first.GetIntentId()); n != 1 {
		t.Fatalf("ran %d times", n)
	}
	other := env.x.Submit(ctx, planner, &airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".b","input":{}}`, IdempotencyKey: "key-1"})
	wantOutcome(t, other, airlockv1.Status_STATUS_INVALID, "idempotency_key_reused")
	// Keys are per caller.
	mine := env.x.Submit(ctx, operator, q)
	wantOutcome(t, mine, airlockv1.Status_STATUS_OK, "")
	if mine.GetIntentId() == first.GetIntentId() {
		t.Fatal("another caller's key answered")
	}
	bad := env.x.Submit(ctx, planner, &airlockv1.SubmitRequest{Tool: "json.query", Arguments: `{"filter":".","input":{}}`, IdempotencyKey: "has space"})
	wantOutcome(t, bad, airlockv1.Status_STATUS_INVALID, "invalid_idempotency_key")

	// A pending approval: the resubmission returns it, and after the
	// approval both see the one final outcome; the write ran once.
	w := write(task, "i.txt", "I")
	w.IdempotencyKey = "key-2"
	p1 := env.x.Submit(ctx, planner, w)
	wantOutcome(t, p1, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	p2 := env.x.Submit(ctx, planner, w)
	if p2.GetIntentId() != p1.GetIntentId() || p2.GetApprovalId() != p1.GetApprovalId() {
		t.Fatalf("resubmitted pending: %v vs %v", p2, p1)
	}
	if _, err := env.x.Approve(ctx, operator, p1.GetApprovalId(), ""); err != nil {
		t.Fatal(err)
	}
	w.ApprovalWait = durationpb.New(time.Minute)
	p3 := env.x.Submit(ctx, planner, w)
	wantOutcome(t, p3, airlockv1.Status_STATUS_OK, "")
	if p3.GetIntentId() != p1.GetIntentId() {
		t.Fatalf("final outcome under another intent: %v", p3)
	}
	if n := executions(t, env.st, p1.GetIntentId()); n != 1 {
		t.Fatalf("ran %d times", n)
	}

	// Concurrent submissions with one key run once.
	var wg sync.WaitGroup
	outs := make([]*airlockv1.Outcome, 8)
	for i := range outs {
		wg.Go(func() {
			outs[i] = env.x.Submit(ctx, planner, &airlockv1.SubmitRequest{Tool: "workspace.list", TaskId: task, Arguments: `{}`, IdempotencyKey: "key-3"})
		})
	}
	wg.Wait()
	for _, o := range outs {
		if o.GetIntentId() != outs[0].GetIntentId() || o.GetStatus() != airlockv1.Status_STATUS_OK {
			t.Fatalf("concurrent resubmissions: %v vs %v", o, outs[0])
		}
	}
	if n := executions(t, env.st, outs[0].GetIntentId()); n != 1 {
		t.Fatalf("ran %d times", n)
	}
}

// An approved intent left by an executor that stopped runs once when
// another starts on the store; one whose module changed since does not run.
func TestApprovedIntentSurvivesRestartAndStaleModuleFails(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{ApprovalPoll: time.Hour})
	ctx := context.Background()
	task := env.task(t)
	a := env.x.Submit(ctx, planner, write(task, "r.txt", "R"))
	if _, err := env.x.Approve(ctx, operator, a.GetApprovalId(), ""); err != nil {
		t.Fatal(err)
	}
	if err := env.x.Close(ctx); err != nil { // the loop never ran it
		t.Fatal(err)
	}
	if n := executions(t, env.st, a.GetIntentId()); n != 0 {
		t.Fatalf("ran %d times before the restart", n)
	}
	// A restart with the same tools: the loop runs it, once.
	x2 := env.start(t, executor.Config{ApprovalPoll: time.Hour})
	out, err := x2.GetIntentWait(ctx, planner, a.GetIntentId(), durationpb.New(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_OK, "")
	if n := executions(t, env.st, a.GetIntentId()); n != 1 {
		t.Fatalf("ran %d times", n)
	}

	// Approved, then the executor restarts with workspace.write naming
	// another module: the approval does not cover it.
	s := x2.Submit(ctx, planner, write(task, "s.txt", "S"))
	if _, err := x2.Approve(ctx, operator, s.GetApprovalId(), ""); err != nil {
		t.Fatal(err)
	}
	if err := x2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var tools []*manifest.Manifest
	for _, m := range env.tools {
		if m.Metadata.Name != "workspace.write" {
			tools = append(tools, m)
		}
	}
	src, err := os.ReadFile(filepath.Join(testenv.BundledManifests(t), "workspace.write.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	jq := filepath.Join(testenv.Root(t), "build", "wasm", "jsonquery.wasm")
	old := regexp.MustCompile(`sha256: "[0-9a-f]{64}"`)
	text := strings.Replace(string(src), "../../build/wasm/workspace.wasm", jq, 1)
	text = old.ReplaceAllString(text, `sha256: "`+testenv.SHA256File(t, jq)+`"`)
	if err := os.WriteFile(filepath.Join(dir, "workspace.write.yaml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err := manifest.LoadFile(filepath.Join(dir, "workspace.write.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tools = append(tools, changed)
	_, eng := loadApprovalToolsFrom(t, tools)
	x3 := env.start(t, executor.Config{Tools: tools, Policy: eng})
	out, err = x3.GetIntentWait(ctx, planner, s.GetIntentId(), durationpb.New(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_FAILED, "approval_stale")
	if n := executions(t, env.st, s.GetIntentId()); n != 0 {
		t.Fatalf("a changed module ran %d times under the approval", n)
	}
	if _, err := os.Stat(filepath.Join(env.data, "workspaces", task, "s.txt")); !os.IsNotExist(err) {
		t.Fatalf("s.txt exists: %v", err)
	}
}

func loadApprovalToolsFrom(t *testing.T, tools []*manifest.Manifest) ([]*manifest.Manifest, *policy.Engine) {
	t.Helper()
	set, err := policy.LoadDir(testenv.Policy(t, "approvals", writesNeedApproval))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Compile(set.Policies, tools, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tools, eng
}

// Ending a task expires its pending approvals: nobody is asked to approve
// work whose task is gone, and the planner learns why.
func TestTaskEndExpiresItsApprovals(t *testing.T) {
	env := newApprovalEnv(t, executor.Config{})
	ctx := context.Background()
	task, other := env.task(t), env.task(t)
	p := env.x.Submit(ctx, planner, write(task, "p.txt", "P"))
	q := env.x.Submit(ctx, planner, write(other, "q.txt", "Q"))
	wantOutcome(t, p, airlockv1.Status_STATUS_PENDING_APPROVAL, "approval_required")
	if _, err := env.x.EndTask(ctx, planner, task, "done"); err != nil {
		t.Fatal(err)
	}
	out, err := env.x.GetIntent(ctx, planner, p.GetIntentId())
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, airlockv1.Status_STATUS_DENIED, "task_ended")
	a, err := env.x.GetApproval(ctx, operator, p.GetApprovalId())
	if err != nil {
		t.Fatal(err)
	}
	if a.GetState() != airlockv1.ApprovalState_APPROVAL_STATE_EXPIRED {
		t.Fatalf("the approval of the ended task is %v, want expired", a.GetState())
	}
	_, err = env.x.Approve(ctx, operator, p.GetApprovalId(), "")
	wantApprovalErr(t, err, codes.FailedPrecondition)
	// Another task's approval is untouched.
	if a, err := env.x.GetApproval(ctx, operator, q.GetApprovalId()); err != nil || a.GetState() != airlockv1.ApprovalState_APPROVAL_STATE_PENDING {
		t.Fatalf("another task's approval: %v %v", a.GetState(), err)
	}
	if n := executions(t, env.st, p.GetIntentId()); n != 0 {
		t.Fatalf("the intent of the ended task ran %d times", n)
	}
}
