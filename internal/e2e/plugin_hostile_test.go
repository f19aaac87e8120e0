package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// The hostile plugin suite: one real executor (the real server on a unix
// socket, real store, real isolated plugin processes started through this
// test binary, see TestMain) runs testdata/plugins/hostile under several
// manifests, each with the limits its attack meets. Every subtest goes
// through the real gRPC Submit, checks the outcome says what happened, and
// then proves the executor still serves a good call.

// needPluginIsolation skips where the kernel lacks an isolation layer,
// except in CI, where every layer must work.
func needPluginIsolation(t *testing.T) {
	t.Helper()
	if rep := isolate.Probe(); len(rep.Missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("isolation layers missing in CI: %s", rep)
		}
		t.Skipf("isolation layers missing here: %s", rep)
	}
}

var (
	hostileOnce sync.Once
	hostileBin  string
	hostileErr  error
)

// hostilePlugin builds testdata/plugins/hostile natively, once per machine
// and source version: the binary is cached under the user cache directory,
// keyed by the SHA-256 of the Go version, go.mod, go.sum and the Go files
// of every package of the module it is built from. It returns a private
// copy in t's temporary directory (a test may modify it) and its digest.
func hostilePlugin(t *testing.T) (path, sum string) {
	t.Helper()
	root := testenv.Root(t)
	hostileOnce.Do(func() { hostileBin, hostileErr = buildPluginCached(root, "internal/e2e/testdata/plugins/hostile") })
	if hostileErr != nil {
		t.Fatalf("build the hostile plugin: %v", hostileErr)
	}
	b, err := os.ReadFile(hostileBin)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "hostileplugin")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return path, hex.EncodeToString(s[:])
}

// buildPluginCached builds the main package pkg (relative to the module
// root) with go build into a cache directory and returns the binary.
func buildPluginCached(root, pkg string) (string, error) {
	list := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{end}}`, "./"+pkg)
	list.Dir = root
	var stderr bytes.Buffer
	list.Stderr = &stderr
	deps, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("go list the dependencies of %s: %w: %s", pkg, err, stderr.Bytes())
	}
	h := sha256.New()
	fmt.Fprintln(h, goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	for _, dir := range strings.Fields(string(deps)) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s %d\n", f, len(b))
			h.Write(b)
		}
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	cache := filepath.Join(base, "airlock-e2e-plugins")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(cache, filepath.Base(pkg)+"-"+hex.EncodeToString(h.Sum(nil))[:24])
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp := out + ".tmp" + strconv.Itoa(os.Getpid())
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, "./"+pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, os.Rename(tmp, out)
}

// pluginManifest is a plugin tool manifest of bin with the given
// capabilities and limits (YAML flow mappings).
func pluginManifest(name, bin, sum, caps, limits string) string {
	return fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: %s, version: 1.0.0, description: "hostile plugin %s"}
spec:
  runtime:
    plugin: {command: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities: %s
  limits: %s
  risk: low
`, name, name, bin, sum, caps, limits)
}

const wsGrant = `{filesystem: [{path: workspace, access: read-write}]}`

// pluginSuite is the executor of the suite.
type pluginSuite struct {
	x                     *testenv.Executor
	bin                   string // the binary of most hostile tools
	tamper                string // the binary of hostile.tamper, which a subtest modifies
	credFile              string
	envSecret, fileSecret string
}

func startPluginSuite(t *testing.T) *pluginSuite {
	t.Helper()
	h := &pluginSuite{
		// '+', '/' and '=' make the URL-escaped and base64 forms differ.
		envSecret:  "plugin-env+s3cret/value=0123456789abcdefXYZ",
		fileSecret: "plugin-file+s3cret/value=fedcba9876543210QRS",
	}
	t.Setenv("AIRLOCK_TEST_HOSTILE_ENV", h.envSecret)
	t.Setenv("AIRLOCK_TEST_HOSTILE_FILE", h.fileSecret)
	dir := t.TempDir()
	h.credFile = filepath.Join(dir, "credentials.yaml")
	writeFile(t, h.credFile, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: hostile-env, type: static, env: AIRLOCK_TEST_HOSTILE_ENV}
  - {name: hostile-file, type: static, env: AIRLOCK_TEST_HOSTILE_FILE}
`)
	bin, sum := hostilePlugin(t)
	h.bin = bin
	tamper, tamperSum := hostilePlugin(t) // a copy of its own, modified by a subtest
	h.tamper = tamper
	m := filepath.Join(dir, "m")
	for _, tl := range []struct{ name, bin, sum, caps, limits string }{
		{"hostile.plain", bin, sum, "{}", "{timeout: 10s, output: 1MiB}"},
		{"hostile.fs", bin, sum, wsGrant, "{timeout: 10s, output: 1MiB}"},
		{"hostile.fork", bin, sum, wsGrant, "{timeout: 10s, output: 1MiB, processes: 32}"},
		{"hostile.alloc", bin, sum, "{}", "{memory: 1GiB, timeout: 20s, output: 1MiB}"},
		{"hostile.write", bin, sum, wsGrant, "{timeout: 20s, output: 1MiB, file_size: 1MiB}"},
		{"hostile.spin", bin, sum, "{}", "{timeout: 30s, output: 1MiB, cpu_time: 1s}"},
		{"hostile.stall", bin, sum, "{}", "{timeout: 1s, output: 1MiB}"},
		{"hostile.hang", bin, sum, wsGrant, "{timeout: 60s, output: 1MiB}"},
		{"hostile.tamper", tamper, tamperSum, wsGrant, "{timeout: 10s, output: 1MiB}"},
		{"hostile.cred", bin, sum, `{credentials: [
      {name: envtok, source: hostile-env, inject: {env: {name: TOKEN}}},
      {name: filetok, source: hostile-file, inject: {file: {path: token}}}]}`, "{timeout: 10s, output: 1MiB}"},
	} {
		writeFile(t, filepath.Join(m, tl.name+".yaml"), pluginManifest(tl.name, tl.bin, tl.sum, tl.caps, tl.limits))
	}
	// json.query (WASM) serves the good call after each attack.
	testenv.BundledManifests(t)
	testenv.WriteManifest(t, m, testenv.ToolManifest{
		Name: "json.query", Module: filepath.Join(testenv.Root(t), "build", "wasm", "jsonquery.wasm"),
		Memory: "64MiB", Timeout: "10s",
	})
	h.x = testenv.Start(t, testenv.Options{
		Manifests: m, Policies: testenv.Policy(t, "allow", testenv.AllowAll), Credentials: h.credFile,
	})
	return h
}

// pluginReport is the hostile plugin's output.
type pluginReport struct {
	Boot     string `json:"boot"`
	PID      int    `json:"pid"`
	Attempts []struct {
		Target string `json:"target"`
		Err    string `json:"err"`
		Bytes  int64  `json:"bytes"`
		Millis int64  `json:"ms"`
	} `json:"attempts"`
	PIDs       []string `json:"pids"`
	Interfaces []string `json:"interfaces"`
	Routes     int      `json:"routes"`
	Started    int      `json:"started"`
	Err        string   `json:"err"`
	Text       string   `json:"text"`
	Forms      []string `json:"forms"`
}

// call submits a call of the hostile plugin and decodes a successful
// outcome.
func (h *pluginSuite) call(t *testing.T, tool, args string, opts ...client.SubmitOption) pluginReport {
	t.Helper()
	out := submit(t, h.x, tool, args, opts...)
	wantStatus(t, out, airlockv1.Status_STATUS_OK, "")
	var o pluginReport
	if err := json.Unmarshal([]byte(out.GetOutput()), &o); err != nil {
		t.Fatalf("%s: output is not the plugin's report: %v: %q", tool, err, out.GetOutput())
	}
	return o
}

// fine proves the executor is up after an attack: a WASM call and a call
// of a well-behaved plugin process work, and no child of this process (the
// executor runs in it) is a zombie.
func (h *pluginSuite) fine(t *testing.T) {
	t.Helper()
	stillServes(t, h.x)
	if o := h.call(t, "hostile.plain", `{"mode":"echo"}`); o.PID != 1 || o.Boot == "" {
		t.Fatalf("the well-behaved call: %+v", o)
	}
	if z := zombieChildren(t); len(z) > 0 {
		t.Fatalf("zombie children of the executor's process: %v", z)
	}
}

func (h *pluginSuite) task(t *testing.T, purpose string) (string, string) {
	t.Helper()
	task, err := h.x.Client.BeginTask(context.Background(), client.TaskOptions{Purpose: purpose})
	if err != nil {
		t.Fatal(err)
	}
	return task.GetId(), filepath.Join(h.x.Data, "workspaces", task.GetId())
}

func (h *pluginSuite) endTask(t *testing.T, id string) {
	t.Helper()
	if _, err := h.x.Client.EndTask(context.Background(), id, "done"); err != nil {
		t.Fatal(err)
	}
}

// procStat is the state and parent of a process, from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

func allPIDs(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// zombieChildren lists the children of this process that exited and were
// not reaped.
func zombieChildren(t *testing.T) []int {
	t.Helper()
	var z []int
	for _, pid := range allPIDs(t) {
		if st, ppid, ok := procStat(pid); ok && ppid == os.Getpid() && st == 'Z' {
			z = append(z, pid)
		}
	}
	return z
}

// pluginPIDs returns the host pids of the processes of tool, from the
// executor's log lines ("plugin call" carries the pid), in order.
func pluginPIDs(t *testing.T, x *testenv.Executor, tool string) []int {
	t.Helper()
	var pids []int
	for _, l := range strings.Split(x.Log.String(), "\n") {
		var e struct {
			Msg  string `json:"message"`
			Tool string `json:"tool"`
			PID  int    `json:"pid"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Tool == tool && e.PID > 0 && e.Msg == "plugin call" {
			pids = append(pids, e.PID)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("the executor logged no plugin call of %s", tool)
	}
	return pids
}

// goneOrNotOurs fails unless pid has exited and was reaped: no process of
// that pid is left as a child of this process.
func goneOrNotOurs(t *testing.T, pid int) {
	t.Helper()
	if st, ppid, ok := procStat(pid); ok && ppid == os.Getpid() {
		t.Fatalf("plugin process %d is still a child of the executor (state %c)", pid, st)
	}
}

// pidNS is the PID namespace of a process ("" when it is gone).
func pidNS(pid int) string {
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return ns
}

// inNS counts the processes in the PID namespace ns.
func inNS(t *testing.T, ns string) int {
	t.Helper()
	n := 0
	for _, pid := range allPIDs(t) {
		if pidNS(pid) == ns {
			n++
		}
	}
	return n
}

// eventually waits up to a bound for cond (the kernel tearing down a
// killed namespace); it is a bound, not a timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("still not true after 30s: %s", what)
}

func TestHostilePlugins(t *testing.T) {
	needPluginIsolation(t)
	h := startPluginSuite(t)
	ctx := context.Background()

	// 1. Reads /etc/shadow and the executor's own files: its data dir, the
	// store file, its socket, its credentials file, its binary and that
	// binary's directory, another task's workspace. None of them exists in
	// the plugin's root; a file in its own workspace proves the reader works.
	t.Run("reads", func(t *testing.T) {
		task, ws := h.task(t, "hostile reads")
		other, otherWS := h.task(t, "another task")
		// The executor creates a workspace on the task's first call.
		h.call(t, "hostile.fs", `{"mode":"echo"}`, client.WithTask(other))
		writeFile(t, filepath.Join(otherWS, "secret.txt"), "another task's data")
		h.call(t, "hostile.fs", `{"mode":"echo"}`, client.WithTask(task))
		// Readable by the plugin's user (65534 when the executor is root).
		if err := os.WriteFile(filepath.Join(ws, "control.txt"), []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		targets := []string{
			"/etc/shadow", "/etc/gshadow", "/root",
			h.x.Data, filepath.Join(h.x.Data, "airlock.db"), filepath.Join(h.x.Data, "workspaces"),
			filepath.Join(otherWS, "secret.txt"), "/workspace/../" + other + "/secret.txt",
			h.x.Socket, filepath.Dir(h.x.Socket), h.credFile,
			exe, filepath.Dir(exe), airlockBin, filepath.Dir(airlockBin), h.bin,
			fmt.Sprintf("/proc/%d/environ", os.Getpid()), "/proc/1/root/etc/shadow",
		}
		args, _ := json.Marshal(map[string]any{"mode": "read", "paths": append(targets, "/workspace/control.txt")})
		o := h.call(t, "hostile.fs", string(args), client.WithTask(task))
		if len(o.Attempts) != len(targets)+1 {
			t.Fatalf("the plugin reported %d attempts, want %d", len(o.Attempts), len(targets)+1)
		}
		for _, a := range o.Attempts[:len(targets)] {
			if a.Err == "" {
				t.Errorf("the plugin read %s (%d bytes)", a.Target, a.Bytes)
			}
		}
		if c := o.Attempts[len(targets)]; c.Err != "" || c.Bytes != 10 {
			t.Fatalf("the control read of its own workspace failed, so the reads prove nothing: %+v", c)
		}
		h.endTask(t, task)
		h.endTask(t, other)
		h.fine(t)
	})

	// 2. Lists processes: its PID namespace holds only itself, PID 1.
	t.Run("ps", func(t *testing.T) {
		o := h.call(t, "hostile.plain", `{"mode":"ps"}`)
		if o.PID != 1 || len(o.PIDs) != 1 || o.PIDs[0] != "1" {
			t.Fatalf("the plugin is pid %d and sees pids %v, want only itself, 1", o.PID, o.PIDs)
		}
		h.fine(t)
	})

	// 3. Connects to a host listener on 127.0.0.1 and to an outside address.
	// The outside address is 192.0.2.1 (TEST-NET-1, RFC 5737, never routed
	// on the Internet), and the plugin dials it only after proving from
	// inside that its network namespace has no interface but lo and no
	// route at all: were isolation broken, it would report "not attempted"
	// instead of sending a SYN, so no packet can leave in any case. We do
	// not run the executor under `unshare -n` because the in-process
	// executor shares the test's namespace; the guard gives the same
	// guarantee. Inside, 127.0.0.1 is the namespace's own lo, where nothing
	// listens; landlock (ABI 4 and later) refuses TCP connect besides.
	t.Run("network", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		var accepted atomic.Int32
		go func() {
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
		args, _ := json.Marshal(map[string]any{"mode": "dial", "targets": []string{lis.Addr().String(), "192.0.2.1:80", "[::1]:22"}})
		o := h.call(t, "hostile.plain", string(args))
		if len(o.Interfaces) != 1 || o.Interfaces[0] != "lo" || o.Routes != 0 {
			t.Fatalf("the plugin's network namespace has interfaces %v and %d routes, want only lo and none", o.Interfaces, o.Routes)
		}
		if len(o.Attempts) != 3 {
			t.Fatalf("attempts: %+v", o.Attempts)
		}
		for _, a := range o.Attempts {
			if a.Err == "" {
				t.Errorf("the plugin connected to %s", a.Target)
			}
			if strings.Contains(a.Err, "not attempted") {
				t.Errorf("%s: %s", a.Target, a.Err)
			}
		}
		// The outside dial fails at once, not by timing out: there is no
		// route (or landlock refuses it) before any packet.
		if e := o.Attempts[1].Err; !strings.Contains(e, "network is unreachable") && !strings.Contains(e, "permission denied") {
			t.Errorf("dial 192.0.2.1:80: %q, want no route (network is unreachable) or a landlock refusal (permission denied)", e)
		}
		if n := accepted.Load(); n != 0 {
			t.Fatalf("the host listener accepted %d connection(s) from the plugin", n)
		}
		h.fine(t)
	})

	// 4. Forks until it cannot: RLIMIT_NPROC (limits.processes 32, counted
	// in threads) stops it: the plugin reports EAGAIN after fewer than 32,
	// or its own Go runtime finds no thread left and it crashes. Either
	// way the process left children behind, so the executor retires it at
	// once: its whole PID namespace goes, nothing waits for the task end.
	t.Run("fork", func(t *testing.T) {
		task, _ := h.task(t, "fork bomb")
		out := submit(t, h.x, "hostile.fork", `{"mode":"fork"}`, client.WithTask(task))
		switch out.GetStatus() {
		case airlockv1.Status_STATUS_OK:
			var o pluginReport
			if err := json.Unmarshal([]byte(out.GetOutput()), &o); err != nil {
				t.Fatalf("output is not the plugin's report: %v: %q", err, out.GetOutput())
			}
			if !strings.Contains(o.Err, "resource temporarily unavailable") || o.Started >= 32 {
				t.Fatalf("the fork bomb started %d processes and stopped with %q, want fewer than 32 and EAGAIN", o.Started, o.Err)
			}
		default:
			wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "crash")
			mustContain(t, out.GetError().GetMessage(), "newosproc")
		}
		pids := pluginPIDs(t, h.x, "hostile.fork")
		p := pids[len(pids)-1]
		eventually(t, "the fork bomb's process and children are gone", func() bool {
			if _, ppid, ok := procStat(p); ok && ppid == os.Getpid() {
				return false
			}
			for _, q := range allPIDs(t) {
				if _, ppid, ok := procStat(q); ok && ppid == p {
					return false
				}
			}
			return true
		})
		h.fine(t)
		h.endTask(t, task)
		h.fine(t)
	})

	// 5. Allocates until it is stopped: RLIMIT_AS (limits.memory 1GiB).
	t.Run("memory", func(t *testing.T) {
		out := submit(t, h.x, "hostile.alloc", `{"mode":"alloc"}`)
		wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "crash")
		msg := out.GetError().GetMessage()
		mustContain(t, msg, "exited with status 2 during the call")
		mustContain(t, msg, "out of memory")
		h.fine(t)
	})

	// 6. Writes a huge file into /workspace and /tmp: RLIMIT_FSIZE
	// (limits.file_size 1MiB) stops both at 1 MiB; the host file stays at
	// most that size (the plugin's /tmp is a private tmpfs).
	t.Run("file size", func(t *testing.T) {
		task, ws := h.task(t, "huge file")
		o := h.call(t, "hostile.write", `{"mode":"write","paths":["/workspace/big","/tmp/big"],"mib":256}`, client.WithTask(task))
		if len(o.Attempts) != 2 {
			t.Fatalf("attempts: %+v", o.Attempts)
		}
		for _, a := range o.Attempts {
			if !strings.Contains(a.Err, "file too large") || a.Bytes > 1<<20 {
				t.Errorf("writing %s: %d bytes, %q; want at most 1 MiB and EFBIG", a.Target, a.Bytes, a.Err)
			}
		}
		fi, err := os.Stat(filepath.Join(ws, "big"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Fatalf("the host file is %d bytes, over the 1 MiB limit", fi.Size())
		}
		h.endTask(t, task)
		h.fine(t)
	})

	// 7. Spins past its CPU limit (limits.cpu_time 1s, far below the 30s
	// timeout): the kernel kills it at the limit; the outcome is a crash
	// killed by SIGKILL, not a timeout.
	t.Run("cpu", func(t *testing.T) {
		out := submit(t, h.x, "hostile.spin", `{"mode":"spin"}`)
		wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "crash")
		mustContain(t, out.GetError().GetMessage(), "killed by signal killed")
		h.fine(t)
	})

	// 8. Ignores cancellation. (a) The tool's deadline (1s) kills it: the
	// outcome is a timeout and the process is reaped. (b) Ending the task
	// cancels the running call and kills the process: the outcome says
	// the task ended, and the process is reaped.
	t.Run("ignores cancellation", func(t *testing.T) {
		out := submit(t, h.x, "hostile.stall", `{"mode":"hang"}`)
		wantStatus(t, out, airlockv1.Status_STATUS_TIMEOUT, "timeout")
		mustContain(t, out.GetError().GetMessage(), "deadline")
		for _, p := range pluginPIDs(t, h.x, "hostile.stall") {
			goneOrNotOurs(t, p)
		}

		task, ws := h.task(t, "hang")
		done := make(chan *airlockv1.Outcome, 1)
		go func() {
			o, err := h.x.Client.Submit(ctx, "hostile.hang", `{"mode":"hang"}`, client.WithTask(task))
			if err != nil {
				t.Errorf("submit: %v", err)
			}
			done <- o
		}()
		eventually(t, "the hanging call started", func() bool {
			_, err := os.Stat(filepath.Join(ws, "hang-started"))
			return err == nil
		})
		h.endTask(t, task)
		var o *airlockv1.Outcome
		select {
		case o = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the call of an ended task did not end within 30s")
		}
		if o == nil {
			t.FailNow()
		}
		wantStatus(t, o, airlockv1.Status_STATUS_FAILED, "canceled")
		mustContain(t, o.GetError().GetMessage(), "ended while the call was running")
		for _, p := range pluginPIDs(t, h.x, "hostile.hang") {
			goneOrNotOurs(t, p)
		}
		h.fine(t)
	})

	// 9. Exits in the middle of a call: the call fails as a crash with the
	// plugin's last words; the next call gets a fresh process.
	t.Run("exits mid-call", func(t *testing.T) {
		before := h.call(t, "hostile.plain", `{"mode":"echo"}`)
		out := submit(t, h.x, "hostile.plain", `{"mode":"exit"}`)
		wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "crash")
		mustContain(t, out.GetError().GetMessage(), "exited with status 3 during the call")
		mustContain(t, out.GetError().GetMessage(), "exiting in the middle of the call")
		after := h.call(t, "hostile.plain", `{"mode":"echo"}`)
		if after.Boot == before.Boot {
			t.Fatalf("the call after the crash ran in the crashed process %s", before.Boot)
		}
		h.fine(t)
	})

	// 11 (acceptance). A binary modified after its manifest was written is
	// refused before it starts: the marker it would write never appears.
	// Put back, the same binary starts and writes the marker, which proves
	// the marker would have shown a start.
	t.Run("modified binary", func(t *testing.T) {
		task, ws := h.task(t, "tamper")
		bin := h.tamper
		orig, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("rug pull")); err != nil {
			t.Fatal(err)
		}
		f.Close()
		out := submit(t, h.x, "hostile.tamper", `{"mode":"marker"}`, client.WithTask(task))
		wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "module")
		msg := out.GetError().GetMessage()
		mustContain(t, msg, "but the manifest pins")
		mustContain(t, msg, bin)
		if _, err := os.Stat(filepath.Join(ws, "marker")); !os.IsNotExist(err) {
			t.Fatalf("the modified binary ran and wrote its marker (%v)", err)
		}
		if err := os.WriteFile(bin, orig, 0o755); err != nil {
			t.Fatal(err)
		}
		o := h.call(t, "hostile.tamper", `{"mode":"marker"}`, client.WithTask(task))
		if b, err := os.ReadFile(filepath.Join(ws, "marker")); err != nil || string(b) != o.Boot {
			t.Fatalf("the restored binary did not write its marker: %q, %v", b, err)
		}
		h.endTask(t, task)
		h.fine(t)

		// Modified before the executor starts: it refuses to load the tool.
		dir := t.TempDir()
		tb, sum := hostilePlugin(t)
		writeFile(t, filepath.Join(dir, "hostile.tamper.yaml"), pluginManifest("hostile.tamper", tb, sum, "{}", "{timeout: 10s, output: 1MiB}"))
		if err := os.WriteFile(tb, append(orig, 0), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err = testenv.TryStart(t, testenv.Options{Manifests: dir, Policies: testenv.Policy(t, "allow", testenv.AllowAll), Quiet: true})
		if err == nil {
			t.Fatal("an executor started with a modified plugin binary")
		}
		mustContain(t, err.Error(), "but the manifest pins "+sum)
	})

	// 10. Prints the credential it was given (env and file mode, static
	// sources) in its output, in encoded forms, on its stderr and in an
	// error: the planner sees only [REDACTED:...], and no form of either
	// secret is in the audit log, the store or the logs. Last: it stops the
	// executor to read its store.
	t.Run("prints its credential", func(t *testing.T) {
		task, _ := h.task(t, "credential leak")
		in := client.WithTask(task)
		for _, c := range []struct{ name, label, secret string }{
			{"TOKEN", "envtok", h.envSecret}, {"token", "filetok", h.fileSecret},
		} {
			out := submit(t, h.x, "hostile.cred", `{"mode":"cred","name":"`+c.name+`"}`, in)
			wantStatus(t, out, airlockv1.Status_STATUS_OK, "")
			mustContain(t, out.GetOutput(), "[REDACTED:"+c.label+"]")
			if f := findSecret(out.GetOutput(), c.secret); len(f) > 0 {
				t.Errorf("the planner got the %s credential as %v: %s", c.label, f, out.GetOutput())
			}
			var o pluginReport
			if err := json.Unmarshal([]byte(out.GetOutput()), &o); err != nil || len(o.Forms) != 4 {
				t.Fatalf("the output is not the plugin's report: %v: %s", err, out.GetOutput())
			}
			// In an error message.
			out = submit(t, h.x, "hostile.cred", `{"mode":"cred","name":"`+c.name+`","mib":1}`, in)
			wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
			mustContain(t, out.GetError().GetMessage(), "leaking [REDACTED:"+c.label+"]")
			if f := findSecret(out.GetError().GetMessage(), c.secret); len(f) > 0 {
				t.Errorf("the error message carries the %s credential as %v", c.label, f)
			}
		}
		h.endTask(t, task)
		h.fine(t)
		_, logs := noSecretAtRest(t, h.x, h.envSecret, h.fileSecret)
		// The plugin wrote the secrets on its stderr, which the executor
		// captured and logged in some form: the check above covered it.
		logged := false
		for _, l := range strings.Split(logs, "\n") {
			var e struct {
				Tool        string `json:"tool"`
				StderrBytes int    `json:"stderr_bytes"`
			}
			if json.Unmarshal([]byte(l), &e) == nil && e.Tool == "hostile.cred" && e.StderrBytes > 0 {
				logged = true
			}
		}
		if !logged {
			t.Fatal("no log line of hostile.cred records its stderr: the secret check proves nothing about it")
		}
	})
}
