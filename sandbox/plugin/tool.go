package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
	"github.com/airlock-dev/airlock/sandbox/plugin/pluginv1"
)

// maxOutput is the largest limits.output the protocol carries.
const maxOutput = pluginv1.MaxOutputBytes

// Bounds of the file-mode credentials a call passes to a plugin.
const (
	maxCredFiles     = 64
	maxCredFileBytes = 64 << 10
)

// WorkspaceGuestPath is where an isolated plugin sees the task workspace.
const WorkspaceGuestPath = "/workspace"

// poolKey selects the processes a call may use: the task and its
// workspace for a tool granted the workspace; the task for a call that
// carries credentials; the zero key otherwise.
type poolKey struct {
	task      string
	workspace string // host directory, symlinks resolved
}

// tool is a prepared plugin tool and its process pool.
type tool struct {
	b       *Backend
	name    string
	binary  string
	sha     string
	args    []string
	env     []string          // the manifest's env, KEY=VALUE, sorted
	baseEnv map[string]string // the manifest's env
	timeout time.Duration
	output  int
	limits  isolate.Limits // the process's rlimits (isolated only)
	max     int
	perTask bool
	network bool
	log     zerolog.Logger

	// life is the context every process is bound to: Close ends it, which
	// aborts the starts in flight (their processes are killed, or never
	// start).
	life    context.Context
	endLife context.CancelFunc

	mu sync.Mutex
	// idle holds the processes waiting for a call, most recently used last.
	idle map[poolKey][]*proc
	// live counts the slots taken: processes starting, serving a call,
	// idle, or being killed. A slot is freed only once its process has
	// been reaped (or never started), so the tool never has more than max
	// child processes, and every one of them is counted.
	live int
	// all holds the started processes not yet reaped and forgotten.
	all    map[*proc]struct{}
	wake   chan struct{} // closed when a process or a slot frees
	closed bool
	// inflight counts the running calls; starts counts the process starts
	// in flight, including those whose call stopped waiting (see start).
	inflight sync.WaitGroup
	starts   sync.WaitGroup
}

func newTool(b *Backend, m *manifest.Manifest) (*tool, error) {
	lim := m.Spec.Limits
	rt := m.Spec.Runtime.Plugin
	max := lim.Concurrency
	if max <= 0 {
		max = manifest.DefaultLimits().Concurrency
	}
	t := &tool{
		b:       b,
		name:    m.Metadata.Name,
		binary:  rt.Command,
		sha:     strings.ToLower(rt.SHA256),
		args:    append([]string(nil), rt.Args...),
		baseEnv: map[string]string{},
		timeout: time.Duration(lim.Timeout),
		output:  int(lim.Output),
		limits: isolate.Limits{
			AddressSpace: int64(lim.Memory), FileSize: int64(lim.FileSize),
			OpenFiles: lim.OpenFiles, Processes: lim.Processes, CPUTime: time.Duration(lim.CPUTime),
		},
		max:     max,
		network: len(m.Spec.Capabilities.Network) > 0,
		idle:    map[poolKey][]*proc{},
		all:     map[*proc]struct{}{},
		wake:    make(chan struct{}),
	}
	t.life, t.endLife = context.WithCancel(context.Background())
	t.perTask, _ = m.GrantsWorkspace()
	for k, v := range m.Spec.Capabilities.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			t.endLife()
			return nil, moduleError("tool %s: capabilities.env %q has an invalid name or value: names must be non-empty without '=' or NUL, values without NUL", t.name, k)
		}
		if isReservedEnv(k) {
			t.endLife()
			return nil, moduleError("tool %s: capabilities.env %q is reserved for the plugin protocol: rename it", t.name, k)
		}
		t.baseEnv[k] = v
		t.env = append(t.env, k+"="+v)
	}
	sort.Strings(t.env)
	t.log = b.log.With().Str("tool", t.name).Logger()
	return t, nil
}

// isReservedEnv reports whether name is one of go-plugin's variables.
func isReservedEnv(name string) bool {
	return name == pluginv1.MagicCookieKey || strings.HasPrefix(name, "PLUGIN_")
}

// runError builds a run failure of the tool.
func (t *tool) runError(kind sandbox.ErrorKind, err error, format string, args ...any) *sandbox.Error {
	return &sandbox.Error{Kind: kind, Message: fmt.Sprintf("tool %s: ", t.name) + fmt.Sprintf(format, args...), Err: err}
}

// Run sends one call to a process of the pool, starting one if needed.
func (t *tool) Run(ctx context.Context, call *sandbox.Call) (*sandbox.Result, error) {
	if call == nil {
		return nil, t.runError(sandbox.KindInternal, nil, "no call")
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, t.runError(sandbox.KindInternal, nil, "tool is closed: reload the manifest")
	}
	t.inflight.Add(1)
	t.mu.Unlock()
	defer t.inflight.Done()

	runCtx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()

	req, key, err := t.request(call)
	if err != nil {
		return nil, err
	}
	// A process given credentials may keep them in its memory: it serves
	// that task only (its own pool, killed by EndTask), and never again
	// when the call names no task.
	singleUse := false
	if len(req.Credentials) > 0 {
		key.task = call.TaskID
		singleUse = call.TaskID == ""
	}
	start := time.Now()
	p, err := t.acquire(ctx, runCtx, key)
	if err != nil {
		return nil, err
	}
	if t.network {
		p.bindEgress(call.Egress)
		req.EgressProxy = p.proxyPath
	}
	if key.workspace != "" {
		req.Workspace = p.workspacePath()
	}
	if len(req.Credentials) > 0 {
		p.secrets.Store(true) // its stderr may hold them from now on
	}
	p.inCall.Store(true)
	// The workspace is measured during the call and after it: a plugin
	// that fills it past the quota is stopped (see quota.go).
	callCtx := runCtx
	var quota atomic.Pointer[string]
	if key.workspace != "" {
		wctx, stopCall := context.WithCancel(runCtx)
		defer stopCall()
		callCtx = wctx
		stopWatch := t.watchWorkspace(wctx, key.workspace, func(msg string) { quota.Store(&msg); stopCall() })
		defer stopWatch()
	}
	resp, callErr := p.tc.Call(callCtx, req,
		grpc.MaxCallRecvMsgSize(t.output+pluginv1.Slack),
		grpc.MaxCallSendMsgSize(pluginv1.MaxInputBytes+pluginv1.Slack))
	if key.workspace != "" && quota.Load() == nil {
		if msg := t.overQuota(key.workspace); msg != "" {
			quota.Store(&msg)
		}
	}
	res, serr, reuse := t.classify(ctx, runCtx, p, resp, callErr)
	if msg := quota.Load(); msg != nil {
		p.kill("workspace over its quota")
		res, reuse = nil, false
		serr = t.runError(sandbox.KindWorkspaceQuota, nil, "%s", *msg)
	}
	if t.network {
		p.bindEgress(nil)
	}
	dur := time.Since(start)
	stderr, total, dropped := p.sink.end()
	p.inCall.Store(false)
	ev := t.log.Debug()
	if serr != nil {
		ev = t.log.Info()
	}
	outcome := "ok"
	if serr != nil {
		outcome = string(serr.Kind)
	}
	ev = ev.Str("task", call.TaskID).Int("pid", p.pid).Dur("duration", dur).Str("outcome", outcome)
	if total > 0 {
		ev = logStderr(ev, p, stderr, total, dropped)
	}
	ev.Msg("plugin call")
	t.release(p, reuse && !singleUse)
	if serr != nil {
		if serr.Kind == sandbox.KindCrash && len(stderr) > 0 {
			serr.Message += ": " + tail(lastWords(stderr), 512)
		}
		return nil, serr
	}
	res.Stderr = stderr
	res.Duration = dur
	return res, nil
}

// tail returns the last line-ish part of b, at most n bytes, on one line.
func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return strings.Join(strings.Fields(s), " ")
}

// classify turns the end of a call into a result or an error, and says
// whether the process may serve another call. A process whose call did not
// end with a response is killed (after KillGrace) and never reused.
func (t *tool) classify(ctx, runCtx context.Context, p *proc, resp *pluginv1.CallResponse, err error) (*sandbox.Result, *sandbox.Error, bool) {
	if err == nil {
		if resp.GetError() != "" {
			code := int(resp.GetExitCode())
			if code == 0 {
				code = 1
			}
			msg := resp.GetError()
			if len(msg) > pluginv1.MaxErrorBytes {
				msg = msg[:pluginv1.MaxErrorBytes] + "... (truncated)"
			}
			return nil, &sandbox.Error{Kind: sandbox.KindExit, ExitCode: code, Stderr: []byte(msg),
				Message: fmt.Sprintf("tool %s failed (status %d): %s", t.name, code, msg)}, true
		}
		out := resp.GetOutput()
		if len(out) > t.output {
			p.kill("output over limits.output")
			return nil, t.runError(sandbox.KindOutputLimit, nil, "the result is %d bytes, over limits.output (%d bytes): raise limits.output or make the tool return less", len(out), t.output), false
		}
		return &sandbox.Result{Output: out}, nil, true
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		p.stop(t.b.cfg.KillGrace, "call canceled")
		return nil, t.runError(sandbox.KindCanceled, ctx.Err(), "the caller canceled the call: the plugin process was stopped"), false
	// gRPC times the deadline itself and may answer DeadlineExceeded a
	// moment before runCtx's own timer fires.
	case runCtx.Err() != nil || status.Code(err) == codes.DeadlineExceeded:
		p.stop(t.b.cfg.KillGrace, "deadline passed")
		return nil, t.runError(sandbox.KindTimeout, context.DeadlineExceeded, "the call passed its deadline (limits.timeout %s or the caller's, the earlier): the plugin process was killed", t.timeout), false
	case status.Code(err) == codes.ResourceExhausted:
		p.kill("message over its bound")
		return nil, t.runError(sandbox.KindOutputLimit, err, "the plugin's response went past limits.output (%d bytes): raise limits.output or make the tool return less", t.output), false
	}
	exited := p.stop(t.b.cfg.KillGrace, "call failed")
	if exited != "" {
		return nil, t.runError(sandbox.KindCrash, err, "the plugin process %s during the call; the next call starts a fresh one", exited), false
	}
	return nil, t.runError(sandbox.KindCrash, err, "the plugin broke the protocol (%s) and was killed; the next call starts a fresh one", status.Code(err)), false
}

// request builds the protocol request of call, and its pool key.
func (t *tool) request(call *sandbox.Call) (*pluginv1.CallRequest, poolKey, *sandbox.Error) {
	if len(call.Input) > pluginv1.MaxInputBytes {
		return nil, poolKey{}, t.runError(sandbox.KindInternal, nil, "input is %d bytes, over the protocol's %d", len(call.Input), pluginv1.MaxInputBytes)
	}
	req := &pluginv1.CallRequest{Input: call.Input, TaskId: call.TaskID}
	creds := map[string]string{}
	// The manifest's env is in the process environment; whatever else the
	// executor put in the call's env is an env-mode credential of this call.
	for k, v := range call.Env {
		if base, ok := t.baseEnv[k]; ok && base == v {
			continue
		}
		creds[k] = v
	}
	for _, m := range call.Mounts {
		if m.GuestPath != sandbox.CredentialsGuestPath {
			return nil, poolKey{}, t.runError(sandbox.KindInternal, nil, "mount %s is not supported for plugin tools: they get the workspace and credentials only", m.GuestPath)
		}
		if err := readCredFiles(m.HostDir, creds); err != nil {
			return nil, poolKey{}, t.runError(sandbox.KindInternal, err, "the call's file credentials could not be read")
		}
	}
	if len(creds) > 0 {
		req.Credentials = creds
	}
	var key poolKey
	if t.perTask && call.Workspace != "" {
		dir, err := sandbox.HostDir(call.Workspace)
		if err != nil {
			return nil, poolKey{}, t.runError(sandbox.KindInternal, err, "workspace %s is not usable: the executor must create it as a directory", call.Workspace)
		}
		key = poolKey{task: call.TaskID, workspace: dir}
	}
	return req, key, nil
}

// readCredFiles adds the regular files of dir (a call's file-mode
// credentials) to creds by name. Links and oversized files are refused.
func readCredFiles(dir string, creds map[string]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > maxCredFiles {
		return fmt.Errorf("%d credential files, over the %d allowed", len(entries), maxCredFiles)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return fmt.Errorf("credential %s is not a regular file", e.Name())
		}
		if _, dup := creds[e.Name()]; dup {
			return fmt.Errorf("credential %s is both an env and a file credential: give them distinct names", e.Name())
		}
		b, err := readBounded(filepath.Join(dir, e.Name()), maxCredFileBytes)
		if err != nil {
			return err
		}
		creds[e.Name()] = string(b)
	}
	return nil
}

func readBounded(path string, n int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n+1)
	k, err := readFull(f, b)
	if err != nil {
		return nil, err
	}
	if int64(k) > n {
		return nil, fmt.Errorf("%s is over %d bytes", filepath.Base(path), n)
	}
	return b[:k], nil
}

// acquire returns a process of key's pool for one call: an idle one, a new
// one when the tool has fewer than max, or a new one in place of an idle
// process of another pool. Otherwise it waits until runCtx is done.
func (t *tool) acquire(ctx, runCtx context.Context, key poolKey) (*proc, *sandbox.Error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, t.runError(sandbox.KindInternal, nil, "tool is closed: reload the manifest")
		}
		if ps := t.idle[key]; len(ps) > 0 {
			p := ps[len(ps)-1]
			t.idle[key] = ps[:len(ps)-1]
			if len(t.idle[key]) == 0 {
				delete(t.idle, key)
			}
			t.mu.Unlock()
			if p.exited() { // died while idle: discard, look again
				p.kill("exited while idle")
				t.forgetProc(p)
				continue
			}
			return p, nil
		}
		var evict *proc
		switch {
		case t.live < t.max:
			t.live++
		default:
			evict = t.oldestIdleLocked()
			if evict == nil {
				w := t.wake
				t.mu.Unlock()
				select {
				case <-w:
					continue
				case <-runCtx.Done():
					if errors.Is(ctx.Err(), context.Canceled) {
						return nil, t.runError(sandbox.KindCanceled, ctx.Err(), "the caller canceled the call while it waited for a process")
					}
					return nil, t.runError(sandbox.KindBusy, runCtx.Err(), "the tool's %d processes stayed busy until the deadline: retry later or raise limits.concurrency", t.max)
				}
			}
		}
		t.starts.Add(1) // under t.mu, before closed is set: Close's Wait sees it
		t.mu.Unlock()
		if evict != nil {
			// Reaped before it leaves t.all: its slot passes to the start.
			evict.kill("evicted for another task")
			t.mu.Lock()
			delete(t.all, evict)
			t.mu.Unlock()
		}
		return t.start(ctx, runCtx, key)
	}
}

// oldestIdleLocked removes and returns the least recently used idle process
// of any pool, or nil. The caller holds t.mu; the slot passes to it.
func (t *tool) oldestIdleLocked() *proc {
	var (
		best *proc
		bk   poolKey
		bi   int
	)
	for k, ps := range t.idle {
		for i, p := range ps {
			if best == nil || p.lastUsed.Before(best.lastUsed) {
				best, bk, bi = p, k, i
			}
		}
	}
	if best == nil {
		return nil
	}
	ps := t.idle[bk]
	t.idle[bk] = append(ps[:bi:bi], ps[bi+1:]...)
	if len(t.idle[bk]) == 0 {
		delete(t.idle, bk)
	}
	return best
}

func (t *tool) signalLocked() {
	close(t.wake)
	t.wake = make(chan struct{})
}

// release returns p to its pool, or drops it for good.
func (t *tool) release(p *proc, reuse bool) {
	// RLIMIT_CPU counts a process's whole life: one that has used half of
	// limits.cpu_time is retired, so that every call starts with at least
	// half of it.
	if reuse && t.limits.CPUTime > 0 && p.pid > 0 && cpuUsed(p.pid) >= t.limits.CPUTime/2 {
		reuse = false
	}
	// A process that left a child behind (a background process, or a
	// zombie nobody reaps: the isolated plugin is PID 1 of its namespace)
	// is not reused: what a call started must not outlive it, and zombies
	// would pile up against RLIMIT_NPROC in a warm process.
	if reuse && p.pid > 0 {
		if kids := childPIDs(p.pid); len(kids) > 0 {
			p.log.Info().Int("children", len(kids)).Msg("plugin left child processes after its call: retired")
			reuse = false
		}
	}
	t.mu.Lock()
	if reuse && !t.closed && !p.exited() {
		p.lastUsed = time.Now()
		t.idle[p.key] = append(t.idle[p.key], p)
		t.signalLocked()
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	p.kill("not reusable")
	t.forgetProc(p)
}

// forgetProc drops a killed process and frees its slot.
func (t *tool) forgetProc(p *proc) {
	t.mu.Lock()
	delete(t.all, p)
	t.live--
	t.signalLocked()
	t.mu.Unlock()
}

// takeIdle removes the idle processes that match.
func (t *tool) takeIdle(match func(p *proc) bool) []*proc {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*proc
	for k, ps := range t.idle {
		keep := ps[:0]
		for _, p := range ps {
			if match(p) {
				out = append(out, p)
			} else {
				keep = append(keep, p)
			}
		}
		if len(keep) == 0 {
			delete(t.idle, k)
		} else {
			t.idle[k] = keep
		}
	}
	return out
}

// reapIdle kills the processes idle since before.
func (t *tool) reapIdle(before time.Time) {
	for _, p := range t.takeIdle(func(p *proc) bool { return p.lastUsed.Before(before) }) {
		p.kill("idle")
		t.forgetProc(p)
	}
}

// endTask kills the idle processes of task.
func (t *tool) endTask(task string) {
	for _, p := range t.takeIdle(func(p *proc) bool { return p.key.task == task }) {
		p.kill("task ended")
		t.forgetProc(p)
	}
}

// Close refuses new calls, waits for running ones until ctx is done, then
// kills every process of the tool, aborts the starts in flight, and returns
// once every process it started has been reaped.
func (t *tool) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.signalLocked()
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// From here on a start that ends finds the tool closed and kills its
	// process itself; ending life kills those still starting.
	t.endLife()
	t.mu.Lock()
	ps := make([]*proc, 0, len(t.all))
	for p := range t.all {
		ps = append(ps, p)
	}
	t.idle = map[poolKey][]*proc{}
	t.mu.Unlock()
	for _, p := range ps {
		p.kill("backend closed")
	}
	<-done
	t.starts.Wait()
	t.b.forget(t)
	return nil
}

// lastWords is the Go runtime's fatal error or panic line of a crashed
// plugin's stderr when it has one (the goroutine dump after it says less),
// else the whole stderr.
func lastWords(b []byte) []byte {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("fatal error: ")) || bytes.HasPrefix(l, []byte("panic: ")) {
			return l
		}
	}
	return b
}

// logStderr adds a process's stderr to a log event: only its size once the
// process has been given credentials (env or file mode), which it may print.
func logStderr(ev *zerolog.Event, p *proc, stderr []byte, total, dropped int) *zerolog.Event {
	if p.secrets.Load() {
		return ev.Int("stderr_bytes", total).Str("stderr", "(withheld: the process holds credentials)")
	}
	return ev.Str("stderr", string(stderr)).Int("stderr_bytes", total).Int("stderr_dropped", dropped)
}
