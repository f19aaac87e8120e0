package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/internal/testenv"
)

var airlockBin string

func TestMain(m *testing.M) {
	// The executors these tests run in-process start isolated plugin
	// processes through this test binary (internal/isolate).
	isolate.Init()
	dir, err := os.MkdirTemp("", "airlock-e2e")
	if err != nil {
		panic(err)
	}
	airlockBin = filepath.Join(dir, "airlock")
	cmd := exec.Command("go", "build", "-o", airlockBin, "./cmd/airlock")
	cmd.Dir = "../.."
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		panic("build airlock: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, airlockBin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run airlock %v: %v", args, err)
	}
	return r
}

// daemon is `airlock serve` in a child process.
type daemon struct {
	cmd    *exec.Cmd
	socket string
	data   string
	stderr *testenv.SyncBuffer
	done   chan error
}

func startDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "al")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	d := &daemon{socket: filepath.Join(sockDir, "s"), data: t.TempDir(), stderr: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	root := testenv.Root(t)
	args := append([]string{"serve", "--socket", d.socket, "--data", d.data,
		"--manifests", testenv.BundledManifests(t), "--policies", filepath.Join(root, "manifests", "policies"),
		"--log-format", "json", "--cache-dir", testenv.CacheDir()}, extra...)
	d.cmd = exec.Command(airlockBin, args...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(d.socket); err == nil && strings.Contains(d.stderr.String(), "airlock is serving") {
			return d
		}
		select {
		case err := <-d.done:
			t.Fatalf("airlock serve exited early: %v\n%s", err, d.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("airlock serve did not start:\n%s", d.stderr.String())
		}
	}
}

func (d *daemon) call(t *testing.T, args ...string) result {
	t.Helper()
	return runCLI(t, "", append([]string{args[0], "--socket", d.socket}, args[1:]...)...)
}

func TestCLIEndToEnd(t *testing.T) {
	d := startDaemon(t)

	r := d.call(t, "tools")
	if r.code != 0 || !strings.Contains(r.stdout, "json.query") || !strings.Contains(r.stdout, "RISK") {
		t.Fatalf("tools: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = d.call(t, "tools", "--json")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) < 6 || listed[0]["input_schema"] == nil {
		t.Fatalf("tools --json: %v %s", err, r.stdout)
	}

	exitCases := []struct {
		name   string
		args   []string
		code   int
		status string
	}{
		{"ok", []string{"call", "json.query", `{"filter":".a","input":{"a":1}}`}, 0, "ok"},
		{"with justification", []string{"call", "--justification", "walkthrough", "json.query", `{"filter":".","input":{}}`}, 0, "ok"},
		{"invalid", []string{"call", "json.query", `{"filter":1,"input":{}}`}, 6, "invalid"},
		{"unknown tool", []string{"call", "nope", `{}`}, 6, "invalid"},
		{"failed", []string{"call", "json.query", `{"filter":"error(\"boom\")","input":{}}`}, 5, "failed"},
	}
	for _, c := range exitCases {
		t.Run("exit/"+c.name, func(t *testing.T) {
			r := d.call(t, c.args...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d: %s %s", r.code, c.code, r.stdout, r.stderr)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out["status"] != c.status {
				t.Fatalf("stdout is not an outcome with status %s: %v %s", c.status, err, r.stdout)
			}
		})
	}

	// A task, and the dev policy's deny (exit 3).
	r = d.call(t, "task", "begin", "--purpose", "cli test", "--label", "team=e2e")
	task := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(task, "tsk_") {
		t.Fatalf("task begin: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = d.call(t, "call", "--task", task, "workspace.write", `{"path":"secrets/k","content":"x"}`)
	if r.code != 3 || !strings.Contains(r.stdout, `"denied"`) {
		t.Fatalf("denied: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, `{"path":"a.txt","content":"from stdin"}`, "call", "--socket", d.socket, "--task", task, "workspace.write", "-")
	if r.code != 0 {
		t.Fatalf("args from stdin: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = d.call(t, "task", "end", task)
	if r.code != 0 || !strings.Contains(r.stdout, "ended_at") {
		t.Fatalf("task end: %d %s %s", r.code, r.stdout, r.stderr)
	}

	// Usage and connection errors exit 2.
	if r := runCLI(t, "", "call", "--socket", filepath.Join(t.TempDir(), "none.sock"), "json.query", "{}"); r.code != 2 || !strings.Contains(r.stderr, "airlock serve") {
		t.Fatalf("no daemon: %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", "call", "json.query"); r.code != 2 {
		t.Fatalf("missing argument: %d %s", r.code, r.stderr)
	}

	// The audit log, read while the daemon runs.
	r = runCLI(t, "", "audit", "tail", "--data", d.data, "-n", "3")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("audit tail: %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev["hash"] == nil || ev["prev_hash"] == nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
	}
	if !strings.Contains(lines[2], `"task.end"`) {
		t.Fatalf("the last event is not the task end: %s", lines[2])
	}
	r = runCLI(t, "", "audit", "verify", "--data", d.data)
	if r.code != 0 || !strings.Contains(r.stdout, "audit chain ok") {
		t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// SIGTERM drains: the call in flight ends with its own outcome (here its
// timeout), its audit event is committed, and the daemon exits 0.
func TestSIGTERMDrainsInFlightCalls(t *testing.T) {
	d := startDaemon(t, "--log-level", "debug")
	ch := make(chan result, 1)
	go func() {
		ch <- d.call(t, "call", "json.query", `{"filter":"last(range(1e15))","input":null}`)
	}()
	// Wait until the call is running.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.stderr.String(), `"message":"running"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the call did not start:\n%s", d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.code != 5 || !strings.Contains(r.stdout, `"timeout"`) {
		t.Fatalf("the in-flight call did not end with its own outcome: %d %s %s", r.code, r.stdout, r.stderr)
	}
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	mustContain(t, d.stderr.String(), "drained")
	if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
		t.Fatalf("the socket is still there: %v", err)
	}
	r = runCLI(t, "", "audit", "tail", "--data", d.data, "-n", "1")
	if !strings.Contains(r.stdout, `"execution"`) || !strings.Contains(r.stdout, `"timeout"`) {
		t.Fatalf("the drained call's execution event is not the last: %s", r.stdout)
	}
	if r := runCLI(t, "", "audit", "verify", "--data", d.data); r.code != 0 {
		t.Fatalf("verify after drain: %s", r.stdout)
	}
}

func TestServeRefusesInvalidFilesListingEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := "apiVersion: airlock.dev/v1\nkind: Tool\nmetadata: {name: bad.tool, version: 1.0.0, description: x}\nspec:\n  runtime:\n    wasm: {module: nope.wasm, sha256: \"" + strings.Repeat("0", 64) + "\"}\n  input: {type: object}\n  output: {type: object}\n  risk: low\n  surprise: true\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := testenv.Policy(t, "p", "apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  match: {tools: [\"*\"]}\n  rules:\n    - name: r\n      effect: allow\n      when: 'nope == 1'\n")
	r := runCLI(t, "", "serve", "--socket", filepath.Join(t.TempDir(), "s"), "--data", t.TempDir(), "--manifests", dir, "--policies", pol)
	if r.code != 1 {
		t.Fatalf("serve exit %d: %s", r.code, r.stderr)
	}
	mustContain(t, r.stderr, "bad.yaml:10")
	mustContain(t, r.stderr, "surprise")
	mustContain(t, r.stderr, "nope.wasm")
}

// One executor per data directory: a second `airlock serve` on the same
// --data refuses to start and says why; the first keeps serving, and after
// it is killed (-9) a new one takes the directory again.
func TestOneExecutorPerDataDir(t *testing.T) {
	d := startDaemon(t)
	other := filepath.Join(t.TempDir(), "s")
	r := runCLI(t, "", "serve", "--socket", other, "--data", d.data,
		"--manifests", testenv.BundledManifests(t), "--policies", filepath.Join(testenv.Root(t), "manifests", "policies"),
		"--cache-dir", testenv.CacheDir())
	if r.code != 1 || !strings.Contains(r.stderr, "is in use by another airlock serve") {
		t.Fatalf("a second serve on the same --data: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := d.call(t, "tools"); r.code != 0 {
		t.Fatalf("the first executor stopped serving: %d %s", r.code, r.stderr)
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d.done <- nil // for the cleanup
	again := startDaemon(t, "--data", d.data)
	if r := again.call(t, "tools"); r.code != 0 {
		t.Fatalf("after kill -9 the data directory stayed locked: %d %s", r.code, r.stderr)
	}
}
