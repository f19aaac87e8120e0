package e2e

// Hostile tools through the whole pipeline: a real executor (server.Run on a
// real unix socket, real manifests in a temp dir pinned to the modules' real
// digests, real wazero, real SQLite) facing modules that lie about their
// digest, do not parse, import what they were not granted, loop, eat memory,
// overflow their stack, flood their output, print garbage, fail, snoop
// around the host and arrive in a burst. Each bad call must end with a clear
// error, the daemon must keep serving, and the audit chain must verify.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/internal/wasmtest"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// goGuest returns the path of the Go test guest sandbox/wasm/testdata/name
// built for wasip1 (built once per machine, then cached; never modified).
func goGuest(t *testing.T, name string) string {
	t.Helper()
	path, err := wasmtest.BuildGoCached(filepath.Join(testenv.Root(t), "sandbox", "wasm", "testdata", name))
	if err != nil {
		t.Fatalf("build guest %s: %v", name, err)
	}
	return path
}

// rawGuest writes a canned module into t's temp dir and returns its path.
func rawGuest(t *testing.T, name string, bin []byte) string {
	t.Helper()
	path, _ := wasmtest.WriteModule(t, name, bin)
	return path
}

// goodEcho is the well-behaved tool every hostile test checks the executor
// with: the canned Echo module returns its (canonical) input; its output
// schema accepts any JSON.
func goodEcho(t *testing.T) testenv.ToolManifest {
	return testenv.ToolManifest{Name: "good.echo", Module: rawGuest(t, "good-echo", wasmtest.Echo())}
}

// hostileEnv is an executor under test and every outcome it returned, for
// the audit check at the end.
type hostileEnv struct {
	t    *testing.T
	x    *testenv.Executor
	n    atomic.Int64
	mu   sync.Mutex
	outs []*airlockv1.Outcome
}

func startHostile(t *testing.T, tools ...testenv.ToolManifest) *hostileEnv {
	t.Helper()
	x := testenv.Start(t, testenv.Options{
		Manifests: testenv.Manifests(t, tools...),
		Policies:  testenv.Policy(t, "allow", testenv.AllowAll),
	})
	return &hostileEnv{t: t, x: x}
}

// call submits an intent and records its outcome. It is safe for
// concurrent use; a transport error (the daemon died or hung past a
// minute) fails the test.
func (h *hostileEnv) call(ctx context.Context, tool, args string, opts ...client.SubmitOption) (*airlockv1.Outcome, error) {
	out, err := h.x.Client.Submit(ctx, tool, args, opts...)
	if err != nil {
		return nil, fmt.Errorf("submit %s: %w", tool, err)
	}
	h.mu.Lock()
	h.outs = append(h.outs, out)
	h.mu.Unlock()
	return out, nil
}

func (h *hostileEnv) submit(tool, args string, opts ...client.SubmitOption) *airlockv1.Outcome {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := h.call(ctx, tool, args, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// stillServes proves the executor still runs a good tool call and returns
// exactly its result.
func (h *hostileEnv) stillServes(t *testing.T) {
	t.Helper()
	n := h.n.Add(1)
	out := h.submit("good.echo", fmt.Sprintf(`{"after":"bad call","n":%d}`, n))
	v := wantOK(t, out)
	if v["n"] != float64(n) || v["after"] != "bad call" {
		t.Fatalf("good call after a bad one returned %q", out.GetOutput())
	}
}

// verifyAudit stops the executor, then opens its store and checks that the
// audit chain verifies and that every outcome returned was recorded with
// its status.
func (h *hostileEnv) verifyAudit(t *testing.T) {
	t.Helper()
	if err := h.x.Stop(); err != nil {
		t.Fatalf("the executor stopped with an error: %v", err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(h.x.Data, "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("open the executor's store: %v", err)
	}
	defer st.Close()
	rep := store.Verify(ctx, st)
	if !rep.OK() {
		t.Fatalf("the audit chain does not verify: %s", rep)
	}
	if rep.Count < int64(len(h.outs)) {
		t.Fatalf("the audit chain has %d records for %d outcomes", rep.Count, len(h.outs))
	}
	for _, o := range h.outs {
		in, err := st.Intent(ctx, o.GetIntentId())
		if err != nil {
			t.Fatalf("intent %s (%s) is not in the store: %v", o.GetIntentId(), o.GetTool(), err)
		}
		if want := client.StatusName(o.GetStatus()); in.Status != want {
			t.Fatalf("intent %s stored as %s, returned as %s", o.GetIntentId(), in.Status, want)
		}
	}
	t.Logf("audit chain verified: %d records, %d outcomes", rep.Count, len(h.outs))
}

// secret returns a random string that cannot appear anywhere by chance.
func secret(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func TestHostileDigestMismatchAtLoad(t *testing.T) {
	path, sum := wasmtest.WriteModule(t, "pinned", wasmtest.Echo())
	pinned := strings.Repeat("ab", 32)
	dir := testenv.Manifests(t, goodEcho(t), testenv.ToolManifest{Name: "hostile.pinned", Module: path, SHA256: pinned})
	_, err := testenv.TryStart(t, testenv.Options{Manifests: dir, Policies: testenv.Policy(t, "allow", testenv.AllowAll), Quiet: true})
	if err == nil {
		t.Fatal("the executor started with a module whose digest does not match its pin")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{filepath.Join(dir, "hostile.pinned.yaml"), path, sum, pinned} {
		mustContain(t, err.Error(), want)
	}
}

func TestHostileModuleReplacedWhileServing(t *testing.T) {
	bin := wasmtest.Echo()
	path, sum := wasmtest.WriteModule(t, "rug", bin)
	h := startHostile(t, goodEcho(t), testenv.ToolManifest{Name: "hostile.rug", Module: path, Timeout: "300ms"})
	wantOK(t, h.submit("hostile.rug", `{"v":1}`))

	// The attacker swaps in a module of their own: a valid one, which would
	// spin (and time out) if it ever ran.
	evil := wasmtest.Spin()
	if err := os.WriteFile(path, evil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // refused again, not just once
		out := h.submit("hostile.rug", `{"v":2}`)
		wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "module")
		msg := out.GetError().GetMessage()
		for _, want := range []string{"changed on disk", path, sum, wasmtest.Sum(evil), "restore it"} {
			mustContain(t, msg, want)
		}
		if out.GetOutput() != "" {
			t.Fatalf("a refused module returned output %q", out.GetOutput())
		}
		h.stillServes(t)
	}

	// Removed: refused, saying it cannot be read.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	out := h.submit("hostile.rug", `{"v":3}`)
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "module")
	mustContain(t, out.GetError().GetMessage(), "cannot be read")
	h.stillServes(t)

	// Restored: the pinned module runs again.
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	v := wantOK(t, h.submit("hostile.rug", `{"v":4}`))
	if v["v"] != float64(4) {
		t.Fatalf("restored module returned %v", v)
	}
	h.verifyAudit(t)
}

func TestHostileModuleRefusedAtLoad(t *testing.T) {
	cases := []struct {
		name    string
		bin     []byte
		network []string
		want    []string
	}{
		{"garbage", wasmtest.Garbage(), nil, []string{"does not parse as WebAssembly", "wasip1"}},
		{"truncated", wasmtest.Truncated(), nil, []string{"WebAssembly", "rebuild"}},
		{"env.evil", wasmtest.ImportEnvEvil(), nil, []string{"env.evil", "not granted"}},
		{"http without network", wasmtest.ImportAirlockHTTP(), nil, []string{"airlock_v1.http_request", "grants no network"}},
		{"http with network", wasmtest.ImportAirlockHTTP(), []string{"api.example.com"}, []string{"airlock_v1.http_request", "not provided"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := rawGuest(t, "bad", c.bin)
			dir := testenv.Manifests(t, goodEcho(t), testenv.ToolManifest{Name: "hostile.bad", Module: path, Network: c.network})
			_, err := testenv.TryStart(t, testenv.Options{Manifests: dir, Policies: testenv.Policy(t, "allow", testenv.AllowAll), Quiet: true})
			if err == nil {
				t.Fatal("the executor started with a module it must refuse")
			}
			t.Logf("error: %v", err)
			// The file to fix, the module and the tool are all named.
			for _, want := range append([]string{filepath.Join(dir, "hostile.bad.yaml"), path, "hostile.bad"}, c.want...) {
				mustContain(t, err.Error(), want)
			}
			// Only the bad tool is blamed.
			if strings.Contains(err.Error(), "good.echo") {
				t.Fatalf("the error blames the good tool too: %v", err)
			}
		})
	}
}

func TestHostileToolsFailClosed(t *testing.T) {
	h := startHostile(t,
		goodEcho(t),
		testenv.ToolManifest{Name: "hostile.spin", Module: rawGuest(t, "spin", wasmtest.Spin()), Timeout: "300ms"},
		testenv.ToolManifest{Name: "hostile.gospin", Module: goGuest(t, "spin"), Timeout: "300ms", Memory: "32MiB"},
		testenv.ToolManifest{Name: "hostile.startloop", Module: rawGuest(t, "startloop", wasmtest.StartLoop()), Timeout: "300ms"},
		testenv.ToolManifest{Name: "hostile.grow", Module: rawGuest(t, "grow", wasmtest.GrowForever()), Memory: "4MiB"},
		testenv.ToolManifest{Name: "hostile.alloc", Module: goGuest(t, "alloc"), Memory: "24MiB", Timeout: "20s"},
		testenv.ToolManifest{Name: "hostile.recurse", Module: rawGuest(t, "recurse", wasmtest.Recurse())},
		testenv.ToolManifest{Name: "hostile.gorecurse", Module: goGuest(t, "recurse"), Memory: "24MiB", Timeout: "20s"},
		// The floods have long timeouts: the cap, not the deadline, must stop them.
		testenv.ToolManifest{Name: "hostile.flood", Module: rawGuest(t, "flood", wasmtest.Flood(1024)), OutputLimit: "64KiB", Timeout: "20s"},
		testenv.ToolManifest{Name: "hostile.floodout", Module: goGuest(t, "floodout"), OutputLimit: "256KiB", Timeout: "20s", Memory: "32MiB"},
		testenv.ToolManifest{Name: "hostile.flooderr", Module: goGuest(t, "flooderr"), OutputLimit: "256KiB", Timeout: "20s", Memory: "32MiB"},
		testenv.ToolManifest{Name: "hostile.nonjson", Module: goGuest(t, "nonjson"), Memory: "32MiB"},
		testenv.ToolManifest{Name: "hostile.exit3", Module: goGuest(t, "exit3"), Memory: "32MiB"},
		// Valid JSON of the wrong shape: the echo of {} lacks "result".
		testenv.ToolManifest{Name: "hostile.wrongshape", Module: rawGuest(t, "wrongshape", wasmtest.Echo()), Output: "{type: object, required: [result]}"},
	)
	cases := []struct {
		tool    string
		status  airlockv1.Status
		code    string
		msg     []string
		atLeast time.Duration // the outcome cannot end before this
		exact   string        // when set, the whole message
	}{
		{"hostile.spin", airlockv1.Status_STATUS_TIMEOUT, "timeout", []string{"deadline", "300ms", "stopped"}, 300 * time.Millisecond, ""},
		{"hostile.gospin", airlockv1.Status_STATUS_TIMEOUT, "timeout", []string{"deadline", "300ms", "stopped"}, 300 * time.Millisecond, ""},
		{"hostile.startloop", airlockv1.Status_STATUS_TIMEOUT, "timeout", []string{"deadline", "300ms"}, 300 * time.Millisecond, ""},
		{"hostile.grow", airlockv1.Status_STATUS_FAILED, "memory_limit", []string{"limits.memory", "4194304 bytes"}, 0, ""},
		{"hostile.alloc", airlockv1.Status_STATUS_FAILED, "memory_limit", []string{"limits.memory", "25165824 bytes"}, 0, ""},
		// A raw stack overflow is a wasm trap (wazero's call stack bound).
		{"hostile.recurse", airlockv1.Status_STATUS_FAILED, "trap", []string{"hostile.recurse", "trapped"}, 0, ""},
		// Go grows goroutine stacks in linear memory: the memory limit
		// stops the endless recursion before Go's 1 GB stack limit does.
		{"hostile.gorecurse", airlockv1.Status_STATUS_FAILED, "memory_limit", []string{"limits.memory", "25165824 bytes"}, 0, ""},
		{"hostile.flood", airlockv1.Status_STATUS_FAILED, "output_limit", []string{"stdout", "limits.output", "65536 bytes"}, 0, ""},
		{"hostile.floodout", airlockv1.Status_STATUS_FAILED, "output_limit", []string{"stdout", "limits.output", "262144 bytes"}, 0, ""},
		{"hostile.flooderr", airlockv1.Status_STATUS_FAILED, "output_limit", []string{"stderr", "cap", "stopped"}, 0, ""},
		{"hostile.nonjson", airlockv1.Status_STATUS_FAILED, "invalid_output", []string{"hostile.nonjson", "refused", "JSON"}, 0, ""},
		{"hostile.exit3", airlockv1.Status_STATUS_FAILED, "tool_error", nil, 0, "exit3: the frobnicator is broken"},
		{"hostile.wrongshape", airlockv1.Status_STATUS_FAILED, "invalid_output", []string{"hostile.wrongshape", "refused", "result"}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			out := h.submit(c.tool, `{}`)
			t.Logf("%s: %v %s: %s (%v)", c.tool, out.GetStatus(), out.GetError().GetCode(), out.GetError().GetMessage(), out.GetDuration().AsDuration())
			wantStatus(t, out, c.status, c.code)
			msg := out.GetError().GetMessage()
			for _, want := range c.msg {
				mustContain(t, msg, want)
			}
			if c.exact != "" && msg != c.exact {
				t.Fatalf("message %q, want exactly %q", msg, c.exact)
			}
			if out.GetOutput() != "" {
				t.Fatalf("a failed call returned output (%d bytes): %.200q", len(out.GetOutput()), out.GetOutput())
			}
			if d := out.GetDuration().AsDuration(); d < c.atLeast {
				t.Fatalf("ended after %v, before its %v deadline", d, c.atLeast)
			}
			if out.GetDecision().GetEffect() != airlockv1.Effect_EFFECT_ALLOW {
				t.Fatalf("decision %v: the call should have been allowed and run", out.GetDecision())
			}
			h.stillServes(t)
		})
	}
	h.verifyAudit(t)
}

// snoopReport is the snoop guest's output.
type snoopReport struct {
	Found  map[string]string `json:"found"`
	Errors map[string]string `json:"errors"`
	Env    []string          `json:"env"`
	Args   []string          `json:"args"`
}

func TestHostileSnoopFindsNothing(t *testing.T) {
	envSecret := secret("env-secret")
	t.Setenv("AIRLOCK_HOSTILE_SECRET", envSecret)
	h := startHostile(t, goodEcho(t), testenv.ToolManifest{
		Name: "hostile.snoop", Module: goGuest(t, "snoop"), Memory: "32MiB", Timeout: "10s", OutputLimit: "1MiB",
		Input:     "{type: object, additionalProperties: false, required: [other], properties: {other: {type: string, maxLength: 64}}}",
		Output:    "{type: object, required: [found, errors]}",
		Workspace: "read-write",
		Env:       map[string]string{"TOOL_MODE": "snoop"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	taskA, err := h.x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "snoop around"})
	if err != nil {
		t.Fatal(err)
	}
	taskB, err := h.x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "hold a secret"})
	if err != nil {
		t.Fatal(err)
	}
	wsRoot := filepath.Join(h.x.Data, "workspaces")
	wsA, wsB := filepath.Join(wsRoot, taskA.GetId()), filepath.Join(wsRoot, taskB.GetId())
	fileSecret := secret("TOPSECRET-of-task-b")
	for _, d := range []string{wsA, wsB} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(wsB, "secret.txt"), []byte(fileSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	// Links a careless host left in task A's workspace, towards task B's.
	if err := os.Symlink("../"+taskB.GetId(), filepath.Join(wsA, "hostlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(wsB, "secret.txt"), filepath.Join(wsA, "hostfile")); err != nil {
		t.Fatal(err)
	}

	out := h.submit("hostile.snoop", fmt.Sprintf(`{"other":%q}`, taskB.GetId()), client.WithTask(taskA.GetId()))
	wantStatus(t, out, airlockv1.Status_STATUS_OK, "")
	raw := out.GetOutput()
	for _, leak := range []string{fileSecret, "TOPSECRET", envSecret, "AIRLOCK_HOSTILE_SECRET", "root:", h.x.Data, h.x.Socket, "airlock.db"} {
		if strings.Contains(raw, leak) {
			t.Errorf("the guest found %q:\n%s", leak, raw)
		}
	}
	var r snoopReport
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("snoop output %q: %v", raw, err)
	}
	t.Logf("snoop found %q\nerrors %q", r.Found, r.Errors)

	allowed := map[string]bool{"write /workspace/mine.txt": true, "read /workspace/mine.txt": true, "ls /workspace": true}
	var found []string
	for k, v := range r.Found {
		if !allowed[k] {
			found = append(found, fmt.Sprintf("%s => %q", k, v))
		}
	}
	sort.Strings(found)
	if len(found) > 0 {
		t.Errorf("the guest reached outside its workspace:\n%s", strings.Join(found, "\n"))
	}
	// Every escape it tried failed, each with an error of its own.
	for _, attempt := range []string{
		"ls /", "read /etc/passwd", "ls ..", "read /proc/self/environ",
		"ls /workspace/../" + taskB.GetId(), "read /workspace/../" + taskB.GetId() + "/secret.txt",
		"read /workspace/hostlink/secret.txt", "read /workspace/hostfile",
	} {
		if _, ok := r.Errors[attempt]; !ok {
			t.Errorf("attempt %q did not fail (errors: %v)", attempt, r.Errors)
		}
	}
	if r.Found["read /workspace/mine.txt"] != "mine" {
		t.Errorf("the guest could not use its own workspace: %v", r.Errors)
	}
	if strings.Join(r.Env, ",") != "TOOL_MODE=snoop" {
		t.Errorf("guest env %q, want only the manifest's TOOL_MODE=snoop", r.Env)
	}
	// On the host: its own file is in its workspace, none of the links it
	// tried exist, and task B's workspace is untouched.
	if b, err := os.ReadFile(filepath.Join(wsA, "mine.txt")); err != nil || string(b) != "mine" {
		t.Errorf("task A's workspace file: %q %v", b, err)
	}
	for _, n := range []string{"x", "y", "z", "w", "h"} {
		if _, err := os.Lstat(filepath.Join(wsA, n)); err == nil {
			t.Errorf("the guest created link %s in its workspace", n)
		}
	}
	if es, err := os.ReadDir(wsB); err != nil || len(es) != 1 {
		t.Errorf("task B's workspace changed: %v %v", es, err)
	}
	if b, err := os.ReadFile(filepath.Join(wsB, "secret.txt")); err != nil || string(b) != fileSecret {
		t.Errorf("task B's secret changed: %q %v", b, err)
	}
	// The snoop is refused without a task (it works in a workspace).
	wantStatus(t, h.submit("hostile.snoop", `{"other":"x"}`), airlockv1.Status_STATUS_INVALID, "task_required")
	h.stillServes(t)
	h.verifyAudit(t)
}

func TestHostileBurst(t *testing.T) {
	const calls = 100
	h := startHostile(t, goodEcho(t), testenv.ToolManifest{
		Name: "hostile.gospin", Module: goGuest(t, "spin"), Timeout: "300ms", Concurrency: 2, Memory: "32MiB",
	})
	var wg sync.WaitGroup
	outs := make([]*airlockv1.Outcome, calls)
	errs := make([]error, calls)
	// A call that hangs hits this deadline and fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = h.call(ctx, "hostile.gospin", fmt.Sprintf(`{"i":%d}`, i))
		}()
	}
	// While the burst waits on the spinning tool's two slots, other tools
	// still run: callers queued on one tool hold no sandbox-wide slots.
	time.Sleep(100 * time.Millisecond)
	h.stillServes(t)
	wg.Wait()
	counts := map[string]int{}
	for i := range calls {
		if errs[i] != nil {
			t.Fatalf("call %d did not end with an outcome: %v", i, errs[i])
		}
		o := outs[i]
		code := o.GetError().GetCode()
		switch {
		case o.GetStatus() == airlockv1.Status_STATUS_TIMEOUT && code == "timeout":
		case o.GetStatus() == airlockv1.Status_STATUS_FAILED && code == "busy":
			// Busy on the tool's own bound (limits.concurrency), never on
			// the sandbox-wide one: only two instances ever run.
			msg := o.GetError().GetMessage()
			mustContain(t, msg, "stayed busy until the deadline")
			mustContain(t, msg, "limits.concurrency")
		default:
			t.Fatalf("call %d: %v %q (%s), want timeout or busy", i, o.GetStatus(), code, o.GetError().GetMessage())
		}
		if o.GetIntentId() == "" || o.GetAuditEventId() == "" {
			t.Fatalf("call %d lacks its ids: %v", i, o)
		}
		counts[code]++
	}
	t.Logf("burst of %d: %v", calls, counts)
	// Someone took a slot first and spun until its deadline.
	if counts["timeout"] == 0 {
		t.Fatalf("no call ran: %v", counts)
	}
	// The slots were released: a lone call runs (and times out) again
	// rather than finding the tool busy.
	wantStatus(t, h.submit("hostile.gospin", `{}`), airlockv1.Status_STATUS_TIMEOUT, "timeout")
	h.stillServes(t)
	h.verifyAudit(t)
}
