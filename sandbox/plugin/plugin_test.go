package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
)

// testTool is the test plugin (testdata/testtool), built once by TestMain.
var testTool string

func TestMain(m *testing.M) {
	isolate.Init() // the isolated processes' init runs this test binary
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "airlock-plugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	testTool = filepath.Join(dir, "testtool")
	cmd := exec.Command("go", "build", "-o", testTool, "./testdata/testtool")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test plugin:", err)
		return 1
	}
	return m.Run()
}

// copyTool copies the test plugin into dir, so a test may change it.
func copyTool(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(testTool)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha(t testing.TB, path string) string {
	t.Helper()
	s, err := hashBinary(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testManifest is a plugin manifest for bin with test limits.
func testManifest(t testing.TB, bin string, edit func(*manifest.Manifest)) *manifest.Manifest {
	t.Helper()
	m := &manifest.Manifest{
		APIVersion: manifest.APIVersion, Kind: manifest.KindTool,
		Metadata: manifest.Metadata{Name: "test.native", Version: "1.0.0", Description: "test plugin"},
		Spec: manifest.Spec{
			Runtime: manifest.Runtime{Plugin: &manifest.PluginRuntime{Command: bin, SHA256: sha(t, bin)}},
			Limits: manifest.Limits{Memory: manifest.DefaultPluginMemory, Timeout: manifest.Duration(20 * time.Second),
				Output: manifest.MiB, Concurrency: 2, Processes: 64, OpenFiles: 256,
				CPUTime: manifest.Duration(20 * time.Second), FileSize: manifest.DefaultFileSize},
			Risk: manifest.RiskLow,
		},
	}
	if edit != nil {
		edit(m)
	}
	return m
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(s.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

type env struct {
	b   *Backend
	log *syncBuffer
}

func newBackend(t *testing.T, cfg Config) *env {
	t.Helper()
	cfg.Unisolated = true
	return startBackend(t, cfg)
}

// newIsolatedBackend runs plugins isolated; it skips where the kernel
// lacks a layer, except in CI.
func newIsolatedBackend(t *testing.T, cfg Config) *env {
	t.Helper()
	rep := isolate.Probe()
	if len(rep.Missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("isolation layers missing in CI: %s", rep)
		}
		t.Skipf("isolation layers missing here: %s", rep)
	}
	cfg.Unisolated = false
	return startBackend(t, cfg)
}

func startBackend(t *testing.T, cfg Config) *env {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = zerolog.New(logs).Level(zerolog.DebugLevel)
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		checkNoChildren(t)
	})
	return &env{b: b, log: logs}
}

func (e *env) prepare(t *testing.T, m *manifest.Manifest) *tool {
	t.Helper()
	st, err := e.b.Prepare(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return st.(*tool)
}

// out is the test plugin's result.
type out struct {
	Text      string   `json:"text"`
	PID       int      `json:"pid"`
	Env       []string `json:"env"`
	Found     bool     `json:"found"`
	Deadline  bool     `json:"deadline"`
	Workspace string   `json:"workspace"`
	Boot      string   `json:"boot"`
}

func call(t *testing.T, tl sandbox.Tool, c *sandbox.Call) (out, error) {
	t.Helper()
	res, err := tl.Run(context.Background(), c)
	if err != nil {
		return out{}, err
	}
	var o out
	if err := json.Unmarshal(res.Output, &o); err != nil {
		t.Fatalf("output %q is not the test tool's JSON: %v", res.Output, err)
	}
	return o, nil
}

func input(mode, text string, n int) []byte {
	b, _ := json.Marshal(map[string]any{"mode": mode, "text": text, "n": n})
	return b
}

func mustCall(t *testing.T, tl sandbox.Tool, c *sandbox.Call) out {
	t.Helper()
	o, err := call(t, tl, c)
	if err != nil {
		t.Fatalf("call %s: %v", c.Input, err)
	}
	return o
}

func wantKind(t *testing.T, err error, kind sandbox.ErrorKind) *sandbox.Error {
	t.Helper()
	var se *sandbox.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *sandbox.Error of kind %s", err, err, kind)
	}
	if se.Kind != kind {
		t.Fatalf("error kind %s (%v), want %s", se.Kind, err, kind)
	}
	return se
}

// children lists the test process's child processes and their states.
func children(t *testing.T) map[int]string {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	kids := map[int]string{}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(st)
			if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
				kids[pid] = s[i+2 : i+3]
			}
		}
	}
	return kids
}

// checkNoChildren fails if a child process is left, alive or a zombie.
func checkNoChildren(t *testing.T) {
	t.Helper()
	if kids := children(t); len(kids) > 0 {
		t.Errorf("child processes left after Close (pid: state): %v", kids)
	}
}

// running reports whether pid exists and is not a zombie (an orphan
// reparented to a PID 1 that does not reap stays one).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// eventually polls cond for up to 20s: for what happens in the background
// (idle reaping), not a timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s did not happen", what)
}

func TestCallReusesProcess(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, nil))
	a := mustCall(t, tl, &sandbox.Call{Input: input("echo", "hello", 0)})
	if a.Text != "hello" || a.PID == 0 {
		t.Fatalf("echo = %+v", a)
	}
	b := mustCall(t, tl, &sandbox.Call{Input: input("deadline", "", 0)})
	if b.PID != a.PID {
		t.Errorf("second call ran in pid %d, want the warm process %d", b.PID, a.PID)
	}
	if !b.Deadline {
		t.Error("the call's deadline did not reach the plugin")
	}
}

func TestToolErrorKeepsProcess(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, nil))
	a := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	_, err := call(t, tl, &sandbox.Call{Input: input("fail", "no luck", 0)})
	se := wantKind(t, err, sandbox.KindExit)
	if string(se.Stderr) != "bad_thing: it failed: no luck" || se.ExitCode != 1 {
		t.Errorf("tool error %q status %d, want the tool's message and 1", se.Stderr, se.ExitCode)
	}
	_, err = call(t, tl, &sandbox.Call{Input: input("panic", "", 0)})
	se = wantKind(t, err, sandbox.KindExit)
	if !strings.Contains(string(se.Stderr), "panic: boom") || se.ExitCode != 2 {
		t.Errorf("panic reported as %q status %d", se.Stderr, se.ExitCode)
	}
	b := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	if a.PID != b.PID {
		t.Errorf("a tool error replaced the process (%d, then %d)", a.PID, b.PID)
	}
}

func TestCrashThenFreshProcess(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, nil))
	a := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	_, err := call(t, tl, &sandbox.Call{Input: input("crash", "", 0)})
	se := wantKind(t, err, sandbox.KindCrash)
	if !strings.Contains(se.Message, "exited with status 3") || !strings.Contains(se.Message, "crashing on purpose") {
		t.Errorf("crash message %q does not say what happened", se.Message)
	}
	if alive(a.PID) {
		t.Errorf("crashed process %d is still there", a.PID)
	}
	b := mustCall(t, tl, &sandbox.Call{Input: input("echo", "again", 0)})
	if b.PID == a.PID || b.Text != "again" {
		t.Errorf("after a crash: %+v, want a fresh process", b)
	}
}

func TestTimeoutKills(t *testing.T) {
	e := newBackend(t, Config{KillGrace: time.Millisecond})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Limits.Timeout = manifest.Duration(500 * time.Millisecond)
	}))
	a := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	_, err := call(t, tl, &sandbox.Call{Input: input("hang", "", 0)})
	wantKind(t, err, sandbox.KindTimeout)
	if alive(a.PID) {
		t.Errorf("the process %d that passed its deadline was not killed", a.PID)
	}
	b := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	if b.PID == a.PID {
		t.Error("the timed-out process was reused")
	}
}

func TestCancellationReachesPlugin(t *testing.T) {
	e := newBackend(t, Config{KillGrace: 10 * time.Second})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Capabilities.Filesystem = []manifest.FilesystemGrant{{Path: "workspace", Access: manifest.AccessReadWrite}}
	}))
	ws := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := tl.Run(ctx, &sandbox.Call{Input: input("marker", "", 0), TaskID: "t1", Workspace: ws})
		done <- err
	}()
	eventually(t, "the plugin starting its call", func() bool {
		_, err := os.Stat(filepath.Join(ws, "started"))
		return err == nil
	})
	cancel()
	wantKind(t, <-done, sandbox.KindCanceled)
	b, err := os.ReadFile(filepath.Join(ws, "canceled"))
	if err != nil || string(b) != context.Canceled.Error() {
		t.Fatalf("the plugin did not see the cancellation: %q, %v", b, err)
	}
}

func TestDigestMismatchRefusedBeforeStart(t *testing.T) {
	e := newBackend(t, Config{})
	bin := copyTool(t)
	m := testManifest(t, bin, nil)
	tl := e.prepare(t, m)
	f, err := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("rug pull")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = call(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	se := wantKind(t, err, sandbox.KindModule)
	got := sha(t, bin)
	if !strings.Contains(se.Message, bin) || !strings.Contains(se.Message, got) || !strings.Contains(se.Message, m.Spec.Runtime.Plugin.SHA256) {
		t.Errorf("refusal %q does not name the file and both digests", se.Message)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("a process started: %v", kids)
	}
	// Prepare refuses it too.
	if _, err := e.b.Prepare(context.Background(), m); sandbox.KindOf(err) != sandbox.KindModule {
		t.Errorf("Prepare of a changed binary: %v", err)
	}
}

func TestNotAPlugin(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Runtime.Plugin.Args = []string{"garbage"}
	}))
	_, err := call(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	se := wantKind(t, err, sandbox.KindCrash)
	if !strings.Contains(se.Message, "did not start") {
		t.Errorf("message %q", se.Message)
	}
}

func TestPoolMax(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Limits.Concurrency = 2
	}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := tl.Run(ctx, &sandbox.Call{Input: input("sleep", "", 0)})
			if sandbox.KindOf(err) != sandbox.KindCanceled {
				t.Errorf("sleeping call ended with %v, want canceled", err)
			}
		}()
	}
	eventually(t, "two busy processes", func() bool {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		return tl.live == 2 && len(tl.all) == 2
	})
	short, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := tl.Run(short, &sandbox.Call{Input: input("echo", "", 0)})
	stop()
	wantKind(t, err, sandbox.KindBusy)
	if n := len(children(t)); n != 2 {
		t.Errorf("%d processes for a tool limited to 2", n)
	}
	cancel()
	wg.Wait()
	mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
}

func TestIdleReaping(t *testing.T) {
	e := newBackend(t, Config{IdleTimeout: 100 * time.Millisecond})
	tl := e.prepare(t, testManifest(t, testTool, nil))
	a := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	eventually(t, "idle reaping", func() bool {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		return tl.live == 0 && !alive(a.PID)
	})
	b := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	if b.PID == a.PID {
		t.Error("a reaped process served a call")
	}
}

func TestNoZombiesAfterCrashStorm(t *testing.T) {
	e := newBackend(t, Config{KillGrace: time.Millisecond})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Limits.Concurrency = 4
		m.Spec.Limits.Timeout = manifest.Duration(2 * time.Second)
	}))
	var wg sync.WaitGroup
	modes := []string{"crash", "panic", "hang", "crash", "echo"}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = tl.Run(context.Background(), &sandbox.Call{Input: input(modes[i%len(modes)], "", 0)})
		}()
	}
	wg.Wait()
	// Every child process is counted until it is reaped. A call that
	// passed its deadline while its process started has returned, but
	// that start ends in the background (aborted at once: its process is
	// killed, reaped, then uncounted). So the count may exceed the
	// processes now, never the other way round; read it first, since
	// after the calls it can only fall.
	tl.mu.Lock()
	live := tl.live
	tl.mu.Unlock()
	if kids := children(t); len(kids) > live || live > 4 {
		t.Errorf("%d child processes, the pool counts %d (max 4)", len(kids), live)
	}
	// Once those starts have ended (aborted at once; StartTimeout bounds
	// them anyway), only the warm processes are left and the count is
	// exact.
	waitStarts(t, tl)
	kids := children(t)
	for pid, st := range kids {
		if st == "Z" {
			t.Errorf("zombie child %d", pid)
		}
	}
	tl.mu.Lock()
	live = tl.live
	idle := 0
	for _, ps := range tl.idle {
		idle += len(ps)
	}
	tl.mu.Unlock()
	if len(kids) != live || live != idle || live > 4 {
		t.Errorf("after the starts ended: %d child processes, the pool counts %d, %d idle (max 4)", len(kids), live, idle)
	}
}

// waitStarts waits for the tool's process starts in flight to end, for up
// to 20s: they are aborted (their process killed) when their call stops
// waiting or the tool closes, so they end at once, not after StartTimeout.
func waitStarts(t *testing.T, tl *tool) {
	t.Helper()
	done := make(chan struct{})
	go func() { tl.starts.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a process start was not aborted: it still runs")
	}
}

// A call that passes its deadline while its process starts returns; the
// start is aborted, and its process stays counted until it is reaped.
func TestAbandonedStartCounted(t *testing.T) {
	e := newBackend(t, Config{StartTimeout: time.Hour})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Runtime.Plugin.Args = []string{"slowstart"}
		m.Spec.Limits.Concurrency = 1
	}))
	for range 3 {
		short, stop := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := tl.Run(short, &sandbox.Call{Input: input("echo", "", 0)})
		stop()
		if k := sandbox.KindOf(err); k != sandbox.KindTimeout && k != sandbox.KindBusy {
			t.Fatalf("a call on a process that never starts: %v, want a timeout (or busy while the last start ends)", err)
		}
		tl.mu.Lock()
		live := tl.live
		tl.mu.Unlock()
		if kids := children(t); len(kids) > live || live > 1 {
			t.Errorf("%d child processes, the pool counts %d (max 1)", len(kids), live)
		}
	}
	waitStarts(t, tl)
	tl.mu.Lock()
	live, all := tl.live, len(tl.all)
	tl.mu.Unlock()
	if kids := children(t); len(kids) > 0 || live != 0 || all != 0 {
		t.Errorf("after the aborted starts: children %v, the pool counts %d (%d tracked)", kids, live, all)
	}
}

// Close aborts a start in flight and reaps its process before it returns.
func TestCloseKillsStartInFlight(t *testing.T) {
	e := newBackend(t, Config{StartTimeout: time.Hour})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Runtime.Plugin.Args = []string{"slowstart"}
	}))
	done := make(chan error, 1)
	go func() {
		_, err := tl.Run(context.Background(), &sandbox.Call{Input: input("echo", "", 0)})
		done <- err
	}()
	eventually(t, "the process starting", func() bool { return len(children(t)) > 0 })
	short, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	if err := e.b.Close(short); err != nil {
		t.Fatal(err)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("Close returned with child processes left: %v", kids)
	}
	if err := <-done; sandbox.KindOf(err) != sandbox.KindInternal || !strings.Contains(err.Error(), "closed") {
		t.Errorf("the call whose process was starting: %v, want the tool closed", err)
	}
}

func TestStderrCapped(t *testing.T) {
	e := newBackend(t, Config{MaxStderr: 4 << 10})
	tl := e.prepare(t, testManifest(t, testTool, nil))
	mustCall(t, tl, &sandbox.Call{Input: input("stderr", "", 256)}) // 256 KiB
	mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	if err := e.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, l := range e.log.lines() {
		s, ok := l["stderr"].(string)
		if !ok {
			continue
		}
		if len(s) > 4<<10 {
			t.Errorf("a log line kept %d bytes of stderr, over the 4 KiB cap", len(s))
		}
		total += l["stderr_bytes"].(float64)
	}
	if total < 256<<10 {
		t.Errorf("the logs counted %v bytes of stderr, want all 256 KiB counted", total)
	}
}

func TestEnvironmentAndCredentials(t *testing.T) {
	t.Setenv("AIRLOCK_TEST_HOST_SECRET", "host-only")
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Capabilities.Env = map[string]string{"LOG_LEVEL": "debug"}
	}))
	credDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(credDir, "token.txt"), []byte("file-secret"), 0o400); err != nil {
		t.Fatal(err)
	}
	c := func(mode, text string) *sandbox.Call {
		return &sandbox.Call{Input: input(mode, text, 0),
			Env:    map[string]string{"LOG_LEVEL": "debug", "API_TOKEN": "env-secret"},
			Mounts: []sandbox.Mount{{HostDir: credDir, GuestPath: sandbox.CredentialsGuestPath}}}
	}
	o := mustCall(t, tl, c("env", ""))
	joined := strings.Join(o.Env, "\n")
	if !strings.Contains(joined, "LOG_LEVEL=debug") {
		t.Errorf("the manifest's env is missing: %v", o.Env)
	}
	for _, bad := range []string{"AIRLOCK_TEST_HOST_SECRET", "env-secret", "file-secret", "PATH="} {
		if strings.Contains(joined, bad) {
			t.Errorf("the plugin's environment holds %s: %v", bad, o.Env)
		}
	}
	if o := mustCall(t, tl, c("cred", "API_TOKEN")); !o.Found || o.Text != "env-secret" {
		t.Errorf("env credential: %+v", o)
	}
	if o := mustCall(t, tl, c("cred", "token.txt")); !o.Found || o.Text != "file-secret" {
		t.Errorf("file credential: %+v", o)
	}
	// The next call has no credentials: nothing stays in the process.
	if o := mustCall(t, tl, &sandbox.Call{Input: input("cred", "API_TOKEN", 0)}); o.Found || o.Text != "" {
		t.Errorf("a credential outlived its call: %+v", o)
	}
	if o := mustCall(t, tl, &sandbox.Call{Input: input("cred", "LOG_LEVEL", 0), Env: map[string]string{"LOG_LEVEL": "debug"}}); o.Found {
		t.Error("the manifest's env was passed as a credential")
	}
}

func TestWorkspacePerTask(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Capabilities.Filesystem = []manifest.FilesystemGrant{{Path: "workspace", Access: manifest.AccessReadWrite}}
		m.Spec.Limits.Concurrency = 1
	}))
	ws1, ws2 := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ws1, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws2, "f"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := mustCall(t, tl, &sandbox.Call{Input: input("read", "f", 0), TaskID: "t1", Workspace: ws1})
	b := mustCall(t, tl, &sandbox.Call{Input: input("read", "f", 0), TaskID: "t2", Workspace: ws2})
	if a.Text != "one" || b.Text != "two" {
		t.Fatalf("task workspaces read %q and %q", a.Text, b.Text)
	}
	if a.PID == b.PID {
		t.Error("two tasks shared a process")
	}
	if alive(a.PID) {
		t.Error("with concurrency 1, the idle process of task 1 was not evicted for task 2")
	}
	e.b.EndTask("t2")
	if alive(b.PID) {
		t.Error("EndTask left the task's process running")
	}
	tl.mu.Lock()
	live := tl.live
	tl.mu.Unlock()
	if live != 0 {
		t.Errorf("after EndTask the pool counts %d processes", live)
	}
}

func TestOutputLimit(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Limits.Output = 64 * manifest.KiB
	}))
	mustCall(t, tl, &sandbox.Call{Input: input("big", "", 1000)})
	_, err := call(t, tl, &sandbox.Call{Input: input("big", "", 2<<20)})
	wantKind(t, err, sandbox.KindOutputLimit)
	mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
}

func TestPrepareRefuses(t *testing.T) {
	e := newBackend(t, Config{})
	for name, edit := range map[string]func(*manifest.Manifest){
		"relative":  func(m *manifest.Manifest) { m.Spec.Runtime.Plugin.Command = "tool" },
		"missing":   func(m *manifest.Manifest) { m.Spec.Runtime.Plugin.Command = "/nonexistent/tool" },
		"wasm":      func(m *manifest.Manifest) { m.Spec.Runtime.Plugin = nil },
		"bad pin":   func(m *manifest.Manifest) { m.Spec.Runtime.Plugin.SHA256 = strings.Repeat("0", 64) },
		"cookie":    func(m *manifest.Manifest) { m.Spec.Capabilities.Env = map[string]string{"AIRLOCK_PLUGIN": "x"} },
		"no output": func(m *manifest.Manifest) { m.Spec.Limits.Output = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.b.Prepare(context.Background(), testManifest(t, testTool, edit))
			wantKind(t, err, sandbox.KindModule)
		})
	}
}

// The same lifecycle through the real isolation layer: the process runs in
// its own namespaces, sees the workspace at /workspace and nothing of the
// host's environment; a crash, a timeout and a rug-pulled binary are
// handled as without isolation.
func TestIsolatedLifecycle(t *testing.T) {
	e := newIsolatedBackend(t, Config{KillGrace: time.Millisecond})
	bin := copyTool(t)
	tl := e.prepare(t, testManifest(t, bin, func(m *manifest.Manifest) {
		m.Spec.Capabilities.Filesystem = []manifest.FilesystemGrant{{Path: "workspace", Access: manifest.AccessReadWrite}}
		m.Spec.Capabilities.Env = map[string]string{"LOG_LEVEL": "debug"}
		m.Spec.Limits.Timeout = manifest.Duration(5 * time.Second)
	}))
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "f"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := func(mode, text string) *sandbox.Call {
		return &sandbox.Call{Input: input(mode, text, 0), TaskID: "t1", Workspace: ws,
			Env: map[string]string{"LOG_LEVEL": "debug", "API_TOKEN": "env-secret"}}
	}
	a := mustCall(t, tl, c("read", "f"))
	if a.Text != "inside" || a.Workspace != WorkspaceGuestPath {
		t.Fatalf("isolated read: %+v", a)
	}
	if a.PID > 2 {
		t.Errorf("the plugin is pid %d: not in a PID namespace of its own", a.PID)
	}
	if o := mustCall(t, tl, c("cred", "API_TOKEN")); o.Text != "env-secret" {
		t.Errorf("credential: %+v", o)
	}
	o := mustCall(t, tl, c("env", ""))
	for _, v := range o.Env {
		if strings.Contains(v, "env-secret") || strings.HasPrefix(v, "PATH=") {
			t.Errorf("the isolated plugin's environment holds %q", v)
		}
	}
	mustCall(t, tl, c("write", "written inside"))
	if b, err := os.ReadFile(filepath.Join(ws, "out.txt")); err != nil || string(b) != "written inside" {
		t.Errorf("a write to /workspace did not reach the task workspace: %q, %v", b, err)
	}
	_, err := call(t, tl, c("crash", ""))
	wantKind(t, err, sandbox.KindCrash)
	mustCall(t, tl, c("echo", ""))
	short, stop := context.WithTimeout(context.Background(), time.Second)
	_, err = tl.Run(short, c("hang", ""))
	stop()
	wantKind(t, err, sandbox.KindTimeout)
	mustCall(t, tl, c("echo", ""))

	// The binary changes: isolate hashes the open file and refuses it.
	e.b.EndTask("t1")
	f, err := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("rug pull"))
	f.Close()
	_, err = call(t, tl, c("echo", ""))
	se := wantKind(t, err, sandbox.KindModule)
	if !strings.Contains(se.Message, sha(t, bin)) {
		t.Errorf("refusal %q does not name the new digest", se.Message)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("processes left: %v", kids)
	}
}

// TestMissingLayer: through the backend, a layer the kernel refuses makes
// an isolated call fail before any process starts, with an error naming
// the layer, why, and the flag that accepts it; once the operator accepts
// it, the call runs without that layer only.
func TestMissingLayer(t *testing.T) {
	if _, err := New(context.Background(), Config{Accept: []string{"selinux"}}); err == nil || !strings.Contains(err.Error(), "seccomp") {
		t.Errorf("New with an unknown layer accepted = %v, want an error listing the layers", err)
	}
	restore := isolate.SimulateMissing(isolate.LayerSeccomp, "simulated by the test")
	defer restore()
	m := testManifest(t, testTool, nil)
	status := func(key string) *sandbox.Call { return &sandbox.Call{Input: input("status", key, 0)} }

	refused := newIsolatedBackend(t, Config{})
	_, err := call(t, refused.prepare(t, m), status("Seccomp"))
	se := wantKind(t, err, sandbox.KindModule)
	var me *isolate.MissingLayerError
	if !errors.As(err, &me) || me.Layer != isolate.LayerSeccomp {
		t.Errorf("error %v does not wrap a *isolate.MissingLayerError for seccomp", err)
	}
	for _, want := range []string{m.Metadata.Name, "seccomp", "simulated by the test", isolate.AcceptFlag + " seccomp"} {
		if !strings.Contains(se.Message, want) {
			t.Errorf("refusal %q should contain %q", se.Message, want)
		}
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("a process started: %v", kids)
	}

	tl := newIsolatedBackend(t, Config{Accept: []string{"seccomp"}}).prepare(t, m)
	for key, want := range map[string]string{"Seccomp": "0", "NoNewPrivs": "1", "CapEff": "0000000000000000"} {
		if o := mustCall(t, tl, status(key)); !o.Found || o.Text != want {
			t.Errorf("accepted: %s is %q (found %v), want %q", key, o.Text, o.Found, want)
		}
	}
}

var _ io.Writer = (*syncBuffer)(nil)

// loopNet resolves every name to a public-looking address and dials only
// the test server: no packet can leave the machine.
type loopNet struct {
	t      *testing.T
	server string
}

func (n *loopNet) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host == "example.com" {
		return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (n *loopNet) DialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	if addr != "93.184.215.14:443" {
		n.t.Errorf("asked to dial %s", addr)
		return nil, fmt.Errorf("test dialer: %s is not the test server", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", n.server)
}

// A plugin granted network reaches the allowlisted host only through its
// call's egress proxy, which attaches the http credential host-side; a
// host off the allowlist is refused; a call without egress gets none.
func TestEgressThroughProxy(t *testing.T) {
	const secret = "Bearer s3cret"
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "auth=%v path=%s", r.Header.Get("Authorization") == secret, r.URL.Path)
	}))
	defer api.Close()
	roots := x509.NewCertPool()
	roots.AddCert(api.Certificate())
	n := &loopNet{t: t, server: api.Listener.Addr().String()}
	eg := egress.New(egress.Config{Resolver: n, Dialer: n, TLSConfig: &tls.Config{RootCAs: roots}})
	rules := []manifest.NetworkRule{{Host: "example.com", Schemes: []string{"https"}, Methods: []string{"GET"}, Paths: []string{"/**"}}}
	bind, err := eg.Bind(rules, []egress.Injection{{CredentialName: "api", Host: "example.com", Header: "Authorization", Value: secret}})
	if err != nil {
		t.Fatal(err)
	}
	for name, start := range map[string]func(*testing.T, Config) *env{"unisolated": newBackend, "isolated": newIsolatedBackend} {
		t.Run(name, func(t *testing.T) {
			e := start(t, Config{})
			tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) { m.Spec.Capabilities.Network = rules }))
			o := mustCall(t, tl, &sandbox.Call{Input: input("http", "https://example.com/repos/x", 0), Egress: bind})
			if o.Text != "200 auth=true path=/repos/x" {
				t.Errorf("allowed request: %q", o.Text)
			}
			_, err := call(t, tl, &sandbox.Call{Input: input("http", "https://other.example/", 0), Egress: bind})
			se := wantKind(t, err, sandbox.KindExit)
			if !strings.Contains(string(se.Stderr), "egress refused: not_allowed") {
				t.Errorf("off-allowlist request: %q", se.Stderr)
			}
			_, err = call(t, tl, &sandbox.Call{Input: input("http", "https://example.com/repos/x", 0)})
			se = wantKind(t, err, sandbox.KindExit)
			if !strings.Contains(string(se.Stderr), "egress refused") {
				t.Errorf("a call without egress: %q", se.Stderr)
			}
		})
	}
}

// A process that has used half of limits.cpu_time is not reused.
func TestCPUTimeRetires(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Limits.CPUTime = manifest.Duration(100 * time.Millisecond)
	}))
	a := mustCall(t, tl, &sandbox.Call{Input: input("spin", "", 200)})
	b := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
	if a.PID == b.PID {
		t.Error("a process past half its CPU time was reused")
	}
}

// A process that received a task's credentials never serves another task,
// nor a call of no task; it stays warm for its own task and ends with it.
func TestCredentialProcessServesOneTask(t *testing.T) {
	e := newBackend(t, Config{})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Limits.Concurrency = 4
	}))
	withCred := func(task, secret string) *sandbox.Call {
		return &sandbox.Call{Input: input("cred", "API_TOKEN", 0), TaskID: task, Env: map[string]string{"API_TOKEN": secret}}
	}
	a := mustCall(t, tl, withCred("A", "secret-of-A"))
	if a.Text != "secret-of-A" {
		t.Fatalf("credential: %+v", a)
	}
	b := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0), TaskID: "B"})
	if b.Boot == a.Boot {
		t.Errorf("task B's call ran in pid %d, which holds task A's credential", a.PID)
	}
	b2 := mustCall(t, tl, withCred("B", "secret-of-B"))
	if b2.Boot == a.Boot {
		t.Errorf("task B's credential call ran in task A's process %d", a.PID)
	}
	if a2 := mustCall(t, tl, withCred("A", "secret-of-A")); a2.Boot != a.Boot {
		t.Errorf("task A's second call ran in pid %d, want its warm process %d", a2.PID, a.PID)
	}
	e.b.EndTask("A")
	if alive(a.PID) {
		t.Errorf("EndTask(A) left the process %d that holds A's credential", a.PID)
	}
	// No task: the process is used once.
	n := mustCall(t, tl, withCred("", "no-task-secret"))
	if o := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)}); o.Boot == n.Boot {
		t.Errorf("a process given credentials for a call of no task served again (pid %d)", n.PID)
	}
}

// A call that leaves a child process behind (running, or a zombie) retires
// its process: the next call gets a fresh one and the child is gone.
func TestLeftoverChildRetires(t *testing.T) {
	for name, start := range map[string]func(*testing.T, Config) *env{"unisolated": newBackend, "isolated": newIsolatedBackend} {
		t.Run(name, func(t *testing.T) {
			e := start(t, Config{})
			tl := e.prepare(t, testManifest(t, testTool, nil))
			for _, mode := range []string{"orphan", "zombie"} {
				a := mustCall(t, tl, &sandbox.Call{Input: input(mode, "", 0)})
				b := mustCall(t, tl, &sandbox.Call{Input: input("echo", "", 0)})
				if b.Boot == a.Boot {
					t.Errorf("%s: the process that left a child was reused", mode)
				}
				if name == "unisolated" {
					// (Isolated, the child dies with the PID namespace.)
					kid, _ := strconv.Atoi(a.Text)
					if kid > 0 && running(kid) {
						t.Errorf("%s: the child %d outlived its retired process", mode, kid)
					}
				}
			}
		})
	}
}

// A plugin that fills the task's workspace past the quota (bytes or
// entries) is stopped, the call says why, and the next call runs in a
// fresh process; a call within the bounds is untouched.
func TestWorkspaceQuota(t *testing.T) {
	e := newBackend(t, Config{WorkspaceQuota: 64 << 10, WorkspaceMaxFiles: 20, WorkspaceCheck: 20 * time.Millisecond})
	tl := e.prepare(t, testManifest(t, testTool, func(m *manifest.Manifest) {
		m.Spec.Capabilities.Filesystem = []manifest.FilesystemGrant{{Path: "workspace", Access: manifest.AccessReadWrite}}
		m.Spec.Limits.Concurrency = 1
	}))
	ws := t.TempDir()
	c := func(mode, text string, n int) *sandbox.Call {
		return &sandbox.Call{Input: input(mode, text, n), TaskID: "t1", Workspace: ws}
	}
	// Within the bounds: 10 files of 1 KiB.
	mustCall(t, tl, c("fill", strings.Repeat("x", 1<<10), 10))
	for _, tc := range []struct {
		name string
		text string
		n    int
	}{
		{"too many entries", "x", 40},
		{"too many bytes", strings.Repeat("x", 32<<10), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := mustCall(t, tl, c("echo", "", 0))
			start := time.Now()
			_, err := call(t, tl, c("fill", tc.text, tc.n))
			se := wantKind(t, err, sandbox.KindWorkspaceQuota)
			if !strings.Contains(se.Message, "quota") {
				t.Errorf("message %q does not say the quota", se.Message)
			}
			// Stopped by the watch, not after its 2 s sleep.
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Logf("the fill call took %s (the watch should stop it well before the plugin's 2 s sleep)", d)
			}
			if alive(before.PID) {
				t.Error("the process that filled the workspace still runs")
			}
			entries, _ := os.ReadDir(ws)
			for _, en := range entries {
				_ = os.Remove(filepath.Join(ws, en.Name()))
			}
			after := mustCall(t, tl, c("echo", "", 0))
			if after.PID == before.PID {
				t.Error("the stopped process served the next call")
			}
		})
	}
}
