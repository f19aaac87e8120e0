package wasm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/wasmtest"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
	"github.com/airlock-dev/airlock/sandbox/wasm"
)

// shared is one Backend for the whole test binary, so Go guests are
// compiled once; its on-disk cache persists across runs.
var (
	shared     *wasm.Backend
	sharedEcho sandbox.Tool
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	b, err := wasm.New(ctx, wasm.Config{CacheDir: filepath.Join(base, "airlock-wasmtest", "wazero")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared = b
	defer b.Close(ctx)
	dir, err := os.MkdirTemp("", "airlock-wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := wasmtest.Echo()
	path := filepath.Join(dir, "echo.wasm")
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sharedEcho, err = b.Prepare(ctx, newManifest("echo", path, wasmtest.Sum(bin)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// newManifest is a manifest with test limits: 32MiB, 5s, 1MiB.
func newManifest(name, path, sum string) *manifest.Manifest {
	return &manifest.Manifest{
		APIVersion: manifest.APIVersion,
		Kind:       manifest.KindTool,
		Metadata:   manifest.Metadata{Name: name, Version: "1.0.0"},
		Spec: manifest.Spec{
			Runtime: manifest.Runtime{Wasm: &manifest.WasmRuntime{Module: path, SHA256: sum}},
			Limits: manifest.Limits{
				Memory:  32 << 20,
				Timeout: manifest.Duration(5 * time.Second),
				Output:  1 << 20,
			},
			Risk: manifest.RiskLow,
		},
	}
}

type opt func(*manifest.Manifest)

func timeout(d time.Duration) opt {
	return func(m *manifest.Manifest) { m.Spec.Limits.Timeout = manifest.Duration(d) }
}

func memory(n int64) opt {
	return func(m *manifest.Manifest) { m.Spec.Limits.Memory = manifest.ByteSize(n) }
}

func output(n int64) opt {
	return func(m *manifest.Manifest) { m.Spec.Limits.Output = manifest.ByteSize(n) }
}

func concurrency(n int) opt {
	return func(m *manifest.Manifest) { m.Spec.Limits.Concurrency = n }
}

func workspace(access string) opt {
	return func(m *manifest.Manifest) {
		m.Spec.Capabilities.Filesystem = []manifest.FilesystemGrant{{Path: "workspace", Access: access}}
	}
}

func clock() opt { return func(m *manifest.Manifest) { m.Spec.Capabilities.Clock = true } }

func network() opt {
	return func(m *manifest.Manifest) {
		m.Spec.Capabilities.Network = []manifest.NetworkRule{{Host: "api.example.com"}}
	}
}

// prepareBin writes bin and prepares it on b.
func prepareBin(t *testing.T, b *wasm.Backend, name string, bin []byte, opts ...opt) (sandbox.Tool, error) {
	t.Helper()
	path, sum := wasmtest.WriteModule(t, name, bin)
	m := newManifest(name, path, sum)
	for _, o := range opts {
		o(m)
	}
	return b.Prepare(context.Background(), m)
}

func mustPrepareBin(t *testing.T, name string, bin []byte, opts ...opt) sandbox.Tool {
	t.Helper()
	tl, err := prepareBin(t, shared, name, bin, opts...)
	if err != nil {
		t.Fatalf("prepare %s: %v", name, err)
	}
	t.Cleanup(func() { _ = tl.Close(context.Background()) })
	return tl
}

// goTool builds testdata/<name> and prepares it on the shared backend.
func goTool(t *testing.T, name string, opts ...opt) sandbox.Tool {
	t.Helper()
	path, sum := wasmtest.BuildGo(t, filepath.Join("testdata", name))
	m := newManifest(name, path, sum)
	for _, o := range opts {
		o(m)
	}
	tl, err := shared.Prepare(context.Background(), m)
	if err != nil {
		t.Fatalf("prepare %s: %v", name, err)
	}
	t.Cleanup(func() { _ = tl.Close(context.Background()) })
	return tl
}

// wantKind asserts err is a *sandbox.Error of kind k and returns it.
func wantKind(t *testing.T, err error, k sandbox.ErrorKind) *sandbox.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want kind %s", k)
	}
	var se *sandbox.Error
	if !errors.As(err, &se) {
		t.Fatalf("got %T %v, want *sandbox.Error", err, err)
	}
	if se.Kind != k {
		t.Fatalf("got kind %s (%v), want %s", se.Kind, err, k)
	}
	return se
}

// assertHealthy runs a good call on the shared backend.
func assertHealthy(t *testing.T) {
	t.Helper()
	in := []byte(`{"still":"alive"}`)
	res, err := sharedEcho.Run(context.Background(), &sandbox.Call{Input: in})
	if err != nil {
		t.Fatalf("backend unhealthy after the bad call: %v", err)
	}
	if !bytes.Equal(res.Output, in) {
		t.Fatalf("backend unhealthy after the bad call: output %q", res.Output)
	}
}

func TestEcho(t *testing.T) {
	in := bytes.Repeat([]byte(`{"k":"v"},`), 20000) // more than one 64KiB read
	res, err := sharedEcho.Run(context.Background(), &sandbox.Call{Input: in})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Output, in) {
		t.Fatalf("echo returned %d bytes, want the %d given", len(res.Output), len(in))
	}
	if len(res.Stderr) != 0 || res.Duration <= 0 {
		t.Fatalf("stderr %q duration %v", res.Stderr, res.Duration)
	}
}

type echoOut struct {
	Input any      `json:"input"`
	Args  []string `json:"args"`
	Env   []string `json:"env"`
	Now   int64    `json:"now"`
	Rand  string   `json:"rand"`
}

func runGoEcho(t *testing.T, tl sandbox.Tool, call *sandbox.Call) echoOut {
	t.Helper()
	res, err := tl.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	var out echoOut
	if err := json.Unmarshal(res.Output, &out); err != nil {
		t.Fatalf("output %q: %v", res.Output, err)
	}
	return out
}

func TestGoEchoEnvArgsClockRandom(t *testing.T) {
	t.Setenv("AIRLOCK_HOST_SECRET", "host-secret-value")
	tl := goTool(t, "echo")
	call := &sandbox.Call{Input: []byte(`{"a":[1,2]}`), Env: map[string]string{"Z_LAST": "z", "A_FIRST": "a", "M": "x=y"}}
	a := runGoEcho(t, tl, call)
	b := runGoEcho(t, tl, call)
	if fmt.Sprint(a.Input) != "map[a:[1 2]]" {
		t.Fatalf("input %v", a.Input)
	}
	if len(a.Args) != 1 || a.Args[0] != "echo" {
		t.Fatalf("args %q, want [echo]", a.Args)
	}
	if want := []string{"A_FIRST=a", "M=x=y", "Z_LAST=z"}; strings.Join(a.Env, "\n") != strings.Join(want, "\n") {
		t.Fatalf("env %q, want exactly %q", a.Env, want)
	}
	if a.Rand == b.Rand || a.Rand == "0000000000000000" {
		t.Fatalf("random is not random: %s %s", a.Rand, b.Rand)
	}
	// No clock granted: the fake clock (2022-01-01).
	if fake := time.Date(2022, 1, 2, 0, 0, 0, 0, time.UTC).UnixNano(); a.Now > fake {
		t.Fatalf("guest saw the host clock (%v) without the clock grant", time.Unix(0, a.Now))
	}

	withClock := goTool(t, "echo", clock())
	c := runGoEcho(t, withClock, &sandbox.Call{Input: []byte(`1`)})
	if d := time.Since(time.Unix(0, c.Now)); d < 0 || d > time.Minute {
		t.Fatalf("guest clock %v with the clock grant, want now", time.Unix(0, c.Now))
	}
	if len(c.Env) != 0 {
		t.Fatalf("env %q, want none", c.Env)
	}
}

func TestConcurrentFreshInstances(t *testing.T) {
	tl := goTool(t, "echo")
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			in := fmt.Sprintf(`{"i":%d}`, i)
			res, err := tl.Run(context.Background(), &sandbox.Call{Input: []byte(in)})
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Contains(res.Output, []byte(fmt.Sprintf(`"input":{"i":%d}`, i))) {
				errs <- fmt.Errorf("call %d got %s", i, res.Output)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPrepareRefuses(t *testing.T) {
	cases := []struct {
		name string
		bin  []byte
		opts []opt
		want []string
	}{
		{"garbage", wasmtest.Garbage(), nil, []string{"garbage.wasm", "does not parse", "bad magic"}},
		{"truncated", wasmtest.Truncated(), nil, []string{"truncated.wasm", "does not parse"}},
		{"env-evil", wasmtest.ImportEnvEvil(), nil, []string{"env-evil.wasm", "env.evil", "not granted"}},
		{"airlock-no-network", wasmtest.ImportAirlockHTTP(), nil, []string{"airlock_v1.http_request", "grants no network"}},
		{"airlock-network", wasmtest.ImportAirlockHTTP(), []opt{network()}, []string{"airlock_v1.http_request", "not provided by this executor"}},
		{"wasi-unknown", wasmtest.ImportFunc("wasi_snapshot_preview1", "not_a_function"), nil, []string{"wasi_snapshot_preview1.not_a_function", "does not provide"}},
		{"min-memory", wasmtest.MinMemory(100), []opt{memory(1 << 20)}, []string{"min-memory.wasm", "minimum memory of 100 pages", "raise limits.memory"}},
		{"reactor", wasmtest.Reactor(), nil, []string{"reactor", "_initialize"}},
		{"no-entry", wasmtest.NoEntry(), nil, []string{"no _start"}},
		{"zero-memory", wasmtest.Echo(), []opt{memory(0)}, []string{"limits.memory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := prepareBin(t, shared, c.name, c.bin, c.opts...)
			se := wantKind(t, err, sandbox.KindModule)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", se.Error(), w)
				}
			}
			assertHealthy(t)
		})
	}
}

func TestPrepareDigestMismatch(t *testing.T) {
	path, sum := wasmtest.WriteModule(t, "pinned", wasmtest.Echo())
	bad := strings.Repeat("ab", 32)
	_, err := shared.Prepare(context.Background(), newManifest("pinned", path, bad))
	wantKind(t, err, sandbox.KindModule)
	for _, w := range []string{path, sum, bad} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	assertHealthy(t)
}

func TestStartSectionLoopEndsAtTimeout(t *testing.T) {
	tl := mustPrepareBin(t, "startloop", wasmtest.StartLoop(), timeout(300*time.Millisecond))
	start := time.Now()
	_, err := tl.Run(context.Background(), &sandbox.Call{})
	wantKind(t, err, sandbox.KindTimeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the loop ran %v past its 300ms timeout", d)
	}
	assertHealthy(t)
}

func TestSpinEndsAtTimeout(t *testing.T) {
	for name, tl := range map[string]sandbox.Tool{
		"raw": mustPrepareBin(t, "spin", wasmtest.Spin(), timeout(300*time.Millisecond)),
		"go":  goTool(t, "spin", timeout(300*time.Millisecond)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tl.Run(context.Background(), &sandbox.Call{Input: []byte(`{}`)})
			wantKind(t, err, sandbox.KindTimeout)
			assertHealthy(t)
		})
	}
}

func TestCallerCancelAndDeadline(t *testing.T) {
	tl := mustPrepareBin(t, "spin", wasmtest.Spin(), timeout(10*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := tl.Run(ctx, &sandbox.Call{})
	wantKind(t, err, sandbox.KindCanceled)

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = tl.Run(ctx, &sandbox.Call{})
	wantKind(t, err, sandbox.KindTimeout)
	assertHealthy(t)
}

func TestMemoryLimit(t *testing.T) {
	t.Run("raw memory.grow", func(t *testing.T) {
		tl := mustPrepareBin(t, "grow", wasmtest.GrowForever(), memory(4<<20))
		_, err := tl.Run(context.Background(), &sandbox.Call{})
		wantKind(t, err, sandbox.KindMemory)
		assertHealthy(t)
	})
	t.Run("go allocator", func(t *testing.T) {
		tl := goTool(t, "alloc", memory(24<<20))
		_, err := tl.Run(context.Background(), &sandbox.Call{})
		se := wantKind(t, err, sandbox.KindMemory)
		if !bytes.Contains(se.Stderr, []byte("out of memory")) {
			t.Errorf("stderr %q, want Go's out of memory", se.Stderr)
		}
		assertHealthy(t)
	})
}

func TestStackOverflow(t *testing.T) {
	t.Run("raw", func(t *testing.T) {
		tl := mustPrepareBin(t, "recurse", wasmtest.Recurse())
		_, err := tl.Run(context.Background(), &sandbox.Call{})
		wantKind(t, err, sandbox.KindTrap)
		assertHealthy(t)
	})
	t.Run("go", func(t *testing.T) {
		// Go grows goroutine stacks in linear memory: endless recursion
		// ends at the memory limit or Go's own stack limit.
		tl := goTool(t, "recurse", memory(24<<20))
		_, err := tl.Run(context.Background(), &sandbox.Call{})
		if k := sandbox.KindOf(err); k != sandbox.KindMemory && k != sandbox.KindExit {
			t.Fatalf("got %v, want memory_limit or tool_error", err)
		}
		assertHealthy(t)
	})
}

func TestOutputLimits(t *testing.T) {
	t.Run("raw 10MiB stdout", func(t *testing.T) {
		tl := mustPrepareBin(t, "flood", wasmtest.Flood(10<<10), output(1<<20))
		_, err := tl.Run(context.Background(), &sandbox.Call{})
		wantKind(t, err, sandbox.KindOutputLimit)
		assertHealthy(t)
	})
	t.Run("raw under the cap", func(t *testing.T) {
		tl := mustPrepareBin(t, "flood", wasmtest.Flood(64), output(1<<20))
		res, err := tl.Run(context.Background(), &sandbox.Call{})
		if err != nil || len(res.Output) != 64<<10 {
			t.Fatalf("got %v, want 64KiB of output", err)
		}
	})
	for _, name := range []string{"floodout", "flooderr"} {
		t.Run(name, func(t *testing.T) {
			// The timeout is long: the cap, not the deadline, must stop it.
			tl := goTool(t, name, output(256<<10), timeout(20*time.Second))
			start := time.Now()
			_, err := tl.Run(context.Background(), &sandbox.Call{})
			wantKind(t, err, sandbox.KindOutputLimit)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("stopped after %v, want promptly", d)
			}
			assertHealthy(t)
		})
	}
}

func TestNonJSONIsPassedThrough(t *testing.T) {
	// The sandbox returns stdout as is; the executor validates the JSON.
	res, err := goTool(t, "nonjson").Run(context.Background(), &sandbox.Call{})
	if err != nil {
		t.Fatal(err)
	}
	if json.Valid(res.Output) || string(res.Output) != "hello, this is not JSON {\n" {
		t.Fatalf("output %q", res.Output)
	}
}

func TestNonZeroExit(t *testing.T) {
	_, err := goTool(t, "exit3").Run(context.Background(), &sandbox.Call{})
	se := wantKind(t, err, sandbox.KindExit)
	if se.ExitCode != 3 || !bytes.Contains(se.Stderr, []byte("the frobnicator is broken")) || !strings.Contains(se.Message, "frobnicator") {
		t.Fatalf("exit %d stderr %q message %q", se.ExitCode, se.Stderr, se.Message)
	}
	assertHealthy(t)
}

type snoopReport struct {
	Found  map[string]string `json:"found"`
	Errors map[string]string `json:"errors"`
	Env    []string          `json:"env"`
	Args   []string          `json:"args"`
}

// snoopSetup makes base/task-a (the workspace, with host-made symlinks
// towards the sibling) and base/task-b (another task's, with a secret).
func snoopSetup(t *testing.T) (ws, other string) {
	base := t.TempDir()
	ws = filepath.Join(base, "task-a")
	other = filepath.Join(base, "task-b")
	for _, d := range []string{ws, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(other, "secret.txt"), []byte("TOPSECRET-of-task-b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../task-b", filepath.Join(ws, "hostlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, "secret.txt"), filepath.Join(ws, "hostfile")); err != nil {
		t.Fatal(err)
	}
	return ws, other
}

func runSnoop(t *testing.T, tl sandbox.Tool, ws string) snoopReport {
	t.Helper()
	res, err := tl.Run(context.Background(), &sandbox.Call{
		Input:     []byte(`{"other":"task-b"}`),
		TaskID:    "task-a",
		Workspace: ws,
		Env:       map[string]string{"TOOL_MODE": "snoop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"TOPSECRET", "host-secret-value", "root:"} {
		if bytes.Contains(res.Output, []byte(leak)) {
			t.Errorf("the guest found %q:\n%s", leak, res.Output)
		}
	}
	var r snoopReport
	if err := json.Unmarshal(res.Output, &r); err != nil {
		t.Fatalf("output %q: %v", res.Output, err)
	}
	t.Logf("snoop found %q\nerrors %q", r.Found, r.Errors)
	if strings.Join(r.Env, ",") != "TOOL_MODE=snoop" {
		t.Errorf("guest env %q, want only TOOL_MODE=snoop", r.Env)
	}
	return r
}

func TestSnoopFindsNothingOutsideItsWorkspace(t *testing.T) {
	t.Setenv("AIRLOCK_HOST_SECRET", "host-secret-value")
	ws, _ := snoopSetup(t)
	tl := goTool(t, "snoop", workspace(manifest.AccessReadWrite))
	r := runSnoop(t, tl, ws)

	allowed := map[string]bool{
		"write /workspace/mine.txt": true,
		"read /workspace/mine.txt":  true,
		"ls /workspace":             true,
	}
	var found []string
	for k, v := range r.Found {
		if !allowed[k] {
			found = append(found, fmt.Sprintf("%s => %q", k, v))
		}
	}
	sort.Strings(found)
	if len(found) > 0 {
		t.Errorf("the guest reached outside its workspace:\n%s\nerrors: %v", strings.Join(found, "\n"), r.Errors)
	}
	if r.Found["read /workspace/mine.txt"] != "mine" {
		t.Errorf("the guest could not use its own workspace: %v", r.Errors)
	}
	// Nothing the guest tried to link exists on the host.
	for _, n := range []string{"x", "y", "z", "w", "h"} {
		if _, err := os.Lstat(filepath.Join(ws, n)); err == nil {
			t.Errorf("the guest created link %s in its workspace", n)
		}
	}
	if b, err := os.ReadFile(filepath.Join(ws, "mine.txt")); err != nil || string(b) != "mine" {
		t.Errorf("workspace file: %q %v", b, err)
	}
	assertHealthy(t)
}

func TestWorkspaceReadOnly(t *testing.T) {
	ws, _ := snoopSetup(t)
	if err := os.WriteFile(filepath.Join(ws, "given.txt"), []byte("given"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runSnoop(t, goTool(t, "snoop", workspace(manifest.AccessReadOnly)), ws)
	if _, ok := r.Found["write /workspace/mine.txt"]; ok {
		t.Errorf("the guest wrote to a read-only workspace")
	}
	if _, err := os.Stat(filepath.Join(ws, "mine.txt")); err == nil {
		t.Errorf("mine.txt exists in a read-only workspace")
	}
	if !strings.Contains(r.Found["ls /workspace"], "given.txt") {
		t.Errorf("the guest cannot list its read-only workspace: %v %v", r.Found, r.Errors)
	}
}

func TestWorkspaceNotGranted(t *testing.T) {
	ws, _ := snoopSetup(t)
	r := runSnoop(t, goTool(t, "snoop"), ws)
	if len(r.Found) != 0 {
		t.Errorf("without the grant the guest found %v", r.Found)
	}
}

func TestModuleChangedOnDisk(t *testing.T) {
	bin := wasmtest.Echo()
	path, sum := wasmtest.WriteModule(t, "rug", bin)
	tl, err := shared.Prepare(context.Background(), newManifest("rug", path, sum))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close(context.Background())
	call := &sandbox.Call{Input: []byte(`"x"`)}
	if _, err := tl.Run(context.Background(), call); err != nil {
		t.Fatal(err)
	}
	// Swap in another module (same size, so only the content differs).
	evil := wasmtest.Echo()
	evil[len(evil)-2] ^= 0xff
	if err := os.WriteFile(path, evil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = tl.Run(context.Background(), call)
	se := wantKind(t, err, sandbox.KindModule)
	if !strings.Contains(se.Message, "changed on disk") || !strings.Contains(se.Message, sum) || !strings.Contains(se.Message, path) {
		t.Fatalf("message %q", se.Message)
	}
	// Still refused on the next call (no re-hash needed, no fallback).
	_, err = tl.Run(context.Background(), call)
	wantKind(t, err, sandbox.KindModule)
	// Removed: refused.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = tl.Run(context.Background(), call)
	wantKind(t, err, sandbox.KindModule)
	// Restored: works again.
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := tl.Run(context.Background(), call); err != nil || string(res.Output) != `"x"` {
		t.Fatalf("after restore: %v", err)
	}
}

func TestBusy(t *testing.T) {
	t.Run("per tool", func(t *testing.T) {
		tl := mustPrepareBin(t, "spin", wasmtest.Spin(), concurrency(1), timeout(10*time.Second))
		testBusy(t, tl)
	})
	t.Run("global", func(t *testing.T) {
		b, err := wasm.New(context.Background(), wasm.Config{MaxInstances: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close(context.Background())
		tl, err := prepareBin(t, b, "spin", wasmtest.Spin(), timeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		testBusy(t, tl)
	})
}

func testBusy(t *testing.T, tl sandbox.Tool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := tl.Run(ctx, &sandbox.Call{}); first <- err }()
	// Wait until the first call holds the slot: a second call is busy.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := tl.Run(cctx, &sandbox.Call{})
		ccancel()
		if sandbox.KindOf(err) == sandbox.KindBusy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never busy, last: %v", err)
		}
	}
	cancel()
	wantKind(t, <-first, sandbox.KindCanceled)
	assertHealthy(t)
}

func TestEnvValidation(t *testing.T) {
	_, err := sharedEcho.Run(context.Background(), &sandbox.Call{Env: map[string]string{"A=B": "c"}})
	wantKind(t, err, sandbox.KindInternal)
}

func TestClosedTool(t *testing.T) {
	tl, err := prepareBin(t, shared, "closing", wasmtest.Echo())
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = tl.Run(context.Background(), &sandbox.Call{})
	wantKind(t, err, sandbox.KindInternal)
	assertHealthy(t)
}

// TestCompilationCacheShared proves the runtimes of different tools share
// compiled code in memory, and that a new Backend reuses the disk cache.
func TestCompilationCacheShared(t *testing.T) {
	cacheDir := t.TempDir()
	listCache := func() map[string]time.Time {
		files := map[string]time.Time{}
		_ = filepath.WalkDir(cacheDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				fi, _ := d.Info()
				files[p] = fi.ModTime()
			}
			return nil
		})
		return files
	}
	bin := wasmtest.Echo()
	b1, err := wasm.New(context.Background(), wasm.Config{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prepareBin(t, b1, "one", bin); err != nil {
		t.Fatal(err)
	}
	first := listCache()
	if len(first) == 0 {
		t.Fatal("nothing written to the disk cache")
	}
	// Empty the disk cache: a second tool of the same module, with another
	// memory limit (so another runtime), must not compile it again.
	for p := range first {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	tl2, err := prepareBin(t, b1, "two", bin, memory(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if got := listCache(); len(got) != 0 {
		t.Fatalf("the second tool recompiled the module: %v", got)
	}
	if res, err := tl2.Run(context.Background(), &sandbox.Call{Input: []byte("2")}); err != nil || string(res.Output) != "2" {
		t.Fatalf("second tool: %v", err)
	}
	if err := b1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A restart: the first backend wrote the cache, the second reads it.
	b2, err := wasm.New(context.Background(), wasm.Config{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prepareBin(t, b2, "three", bin); err != nil {
		t.Fatal(err)
	}
	written := listCache()
	if len(written) == 0 {
		t.Fatal("nothing written to the disk cache")
	}
	b2.Close(context.Background())
	b3, err := wasm.New(context.Background(), wasm.Config{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Close(context.Background())
	tl3, err := prepareBin(t, b3, "four", bin)
	if err != nil {
		t.Fatal(err)
	}
	after := listCache()
	if fmt.Sprint(after) != fmt.Sprint(written) {
		t.Fatalf("the restarted backend rewrote the cache: before %v after %v", written, after)
	}
	if res, err := tl3.Run(context.Background(), &sandbox.Call{Input: []byte("4")}); err != nil || string(res.Output) != "4" {
		t.Fatalf("cached tool: %v", err)
	}
}
