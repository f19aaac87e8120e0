package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
)

// WorkspaceGuestPath is where a granted workspace is mounted in the guest.
const WorkspaceGuestPath = "/workspace"

// tool is one prepared wasm tool: its own runtime (memory limit) and its
// compiled module, instantiated afresh for every call.
type tool struct {
	b        *Backend
	name     string
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	pin      *pin
	base     wazero.ModuleConfig
	limit    uint64 // memory bytes
	timeout  time.Duration
	output   int
	sem      chan struct{}
	fsGrant  bool
	fsRO     bool
	network  bool
	log      zerolog.Logger

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

func newTool(b *Backend, m *manifest.Manifest, rt wazero.Runtime, compiled wazero.CompiledModule, p *pin, pages uint64) *tool {
	conc := m.Spec.Limits.Concurrency
	if conc == 0 {
		conc = DefaultToolConcurrency
	}
	// No filesystem, no environment, fake clocks (wazero's defaults) unless
	// granted; randomness from the host's CSPRNG.
	base := wazero.NewModuleConfig().
		WithName("").
		WithArgs(m.Metadata.Name).
		WithRandSource(rand.Reader).
		WithStartFunctions("_start")
	if m.Spec.Capabilities.Clock {
		base = base.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	t := &tool{
		b:        b,
		name:     m.Metadata.Name,
		rt:       rt,
		compiled: compiled,
		pin:      p,
		base:     base,
		limit:    pages * pageSize,
		timeout:  time.Duration(m.Spec.Limits.Timeout),
		output:   int(min(int64(m.Spec.Limits.Output), int64(maxModuleSize))),
		sem:      make(chan struct{}, conc),
		log:      b.log.With().Str("tool", m.Metadata.Name).Logger(),
	}
	t.network = len(m.Spec.Capabilities.Network) > 0
	for _, g := range m.Spec.Capabilities.Filesystem {
		if g.Path == "workspace" {
			t.fsGrant = true
			t.fsRO = g.Access != manifest.AccessReadWrite
		}
	}
	return t
}

// runError builds a *sandbox.Error for the tool.
func (t *tool) runError(kind sandbox.ErrorKind, stderr []byte, err error, format string, args ...any) *sandbox.Error {
	return &sandbox.Error{Kind: kind, Message: fmt.Sprintf("tool %s: ", t.name) + fmt.Sprintf(format, args...), Stderr: stderr, Err: err}
}

// Run runs one call in a fresh instance. See sandbox.Tool.
func (t *tool) Run(ctx context.Context, call *sandbox.Call) (*sandbox.Result, error) {
	if call == nil {
		return nil, t.runError(sandbox.KindInternal, nil, nil, "run without a call")
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, t.runError(sandbox.KindInternal, nil, nil, "tool is closed: reload the manifest")
	}
	t.inflight.Add(1)
	t.mu.Unlock()
	defer t.inflight.Done()

	// The call's deadline: the tool's timeout or the caller's, the earlier.
	runCtx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	ended := func() *sandbox.Error {
		if errors.Is(ctx.Err(), context.Canceled) {
			return t.runError(sandbox.KindCanceled, nil, ctx.Err(), "the caller canceled the call")
		}
		return nil
	}

	// Rug-pull defence: never run compiled code whose file no longer
	// matches the pin.
	if err := t.pin.check(); err != nil {
		t.log.Warn().Err(err).Msg("module refused")
		return nil, &sandbox.Error{Kind: sandbox.KindModule, Message: err.Error()}
	}

	mcfg, err := t.moduleConfig(call)
	if err != nil {
		return nil, err
	}

	// Wait for a slot of this tool, then a global one, within the deadline.
	// The tool's slot comes first so that callers queued on one busy tool
	// never hold global slots that other tools need.
	if err := acquire(runCtx, t.sem); err != nil {
		if e := ended(); e != nil {
			return nil, e
		}
		return nil, t.runError(sandbox.KindBusy, nil, err, "the tool's %d concurrent instances stayed busy until the deadline: retry later or raise limits.concurrency", cap(t.sem))
	}
	defer func() { <-t.sem }()
	if err := acquire(runCtx, t.b.global); err != nil {
		if e := ended(); e != nil {
			return nil, e
		}
		return nil, t.runError(sandbox.KindBusy, nil, err, "all %d sandbox instances stayed busy until the deadline: retry later or raise the instance bound", cap(t.b.global))
	}
	defer func() { <-t.b.global }()

	// Output caps: exceeding one stops the instance at once.
	instCtx, stop := context.WithCancel(runCtx)
	defer stop()
	stdout := &cappedBuffer{limit: t.output, stop: stop}
	stderr := &cappedBuffer{limit: t.b.maxStderr, stop: stop}
	guard := &memoryGuard{limit: t.limit}
	mcfg = mcfg.WithStdout(stdout).WithStderr(stderr)
	instCtx = experimental.WithMemoryAllocator(instCtx, guard)
	var hc *hostCall
	if t.network {
		hc = &hostCall{egress: call.Egress, maxRequests: t.b.httpReqs, maxBytes: t.b.httpBytes, maxReq: t.b.httpReq,
			log: t.log.With().Str("task", call.TaskID).Logger()}
		instCtx = withHostCall(instCtx, hc)
	}

	start := time.Now()
	mod, runErr := t.rt.InstantiateModule(instCtx, t.compiled, mcfg)
	dur := time.Since(start)
	if mod != nil {
		_ = mod.Close(context.Background())
	}
	out, outOver := stdout.result()
	errOut, errOver := stderr.result()

	kind, serr := t.classify(ctx, runCtx, runErr, guard, outOver, errOver, errOut)
	ev := t.log.Debug()
	if serr != nil {
		ev = t.log.Info()
	}
	if hc != nil {
		hc.mu.Lock()
		ev = ev.Int("http_requests", hc.requests).Int64("http_bytes", hc.bytes)
		hc.mu.Unlock()
	}
	ev.Str("task", call.TaskID).Dur("duration", dur).Int("stdout_bytes", len(out)).
		Int("stderr_bytes", len(errOut)).Uint64("memory_peak", guard.peak.Load()).
		Str("outcome", string(kind)).Msg("tool run")
	if serr != nil {
		return nil, serr
	}
	return &sandbox.Result{Output: out, Stderr: errOut, Duration: dur}, nil
}

// classify maps the end of an instance to a result kind ("" on success).
func (t *tool) classify(ctx, runCtx context.Context, runErr error, guard *memoryGuard, outOver, errOver bool, stderr []byte) (sandbox.ErrorKind, *sandbox.Error) {
	switch {
	case outOver:
		return sandbox.KindOutputLimit, t.runError(sandbox.KindOutputLimit, stderr, nil, "stdout went past limits.output (%d bytes): the tool was stopped; raise limits.output or make the tool print less", t.output)
	case errOver:
		return sandbox.KindOutputLimit, t.runError(sandbox.KindOutputLimit, stderr, nil, "stderr went past the %d-byte cap: the tool was stopped", t.b.maxStderr)
	case runErr == nil:
		return "", nil
	case guard.refused.Load():
		return sandbox.KindMemory, t.runError(sandbox.KindMemory, stderr, runErr, "the tool tried to grow its memory past limits.memory (%d bytes): raise limits.memory or make the tool use less", t.limit)
	}
	var exit *sys.ExitError
	isExit := errors.As(runErr, &exit)
	if isExit && (exit.ExitCode() == sys.ExitCodeContextCanceled || exit.ExitCode() == sys.ExitCodeDeadlineExceeded) || runCtx.Err() != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return sandbox.KindCanceled, t.runError(sandbox.KindCanceled, stderr, ctx.Err(), "the caller canceled the call")
		}
		return sandbox.KindTimeout, t.runError(sandbox.KindTimeout, stderr, context.DeadlineExceeded, "the call passed its deadline (limits.timeout %s or the caller's, the earlier): the tool was stopped", t.timeout)
	}
	if isExit {
		code := exit.ExitCode()
		msg := strings.TrimSpace(string(stderr))
		if msg == "" {
			msg = "(no stderr)"
		}
		return sandbox.KindExit, &sandbox.Error{Kind: sandbox.KindExit, ExitCode: int(code), Stderr: stderr,
			Message: fmt.Sprintf("tool %s exited with status %d: %s", t.name, code, msg)}
	}
	if isTrap(runErr) {
		return sandbox.KindTrap, t.runError(sandbox.KindTrap, stderr, runErr, "the tool trapped: %s (a bug in the tool)", trapReason(runErr))
	}
	return sandbox.KindModule, t.runError(sandbox.KindModule, stderr, runErr, "the module could not be instantiated: check the module is a wasip1 command")
}

// moduleConfig adds the call's environment and workspace to the tool's
// base configuration.
func (t *tool) moduleConfig(call *sandbox.Call) (wazero.ModuleConfig, error) {
	mcfg := t.base.WithStdin(bytes.NewReader(call.Input))
	if len(call.Env) > 0 {
		keys := make([]string, 0, len(call.Env))
		for k := range call.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(call.Env[k], 0) {
				return nil, t.runError(sandbox.KindInternal, nil, nil, "environment variable %q has an invalid name or value: names must be non-empty without '=' or NUL, values without NUL", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			mcfg = mcfg.WithEnv(k, call.Env[k])
		}
	}
	var fsc wazero.FSConfig
	guestPaths := []string{}
	if t.fsGrant && call.Workspace != "" {
		dir, err := sandbox.HostDir(call.Workspace)
		if err != nil {
			return nil, t.runError(sandbox.KindInternal, nil, err, "workspace %s is not usable: the executor must create it as a directory", call.Workspace)
		}
		wfs := newWorkspaceFS(dir, t.fsRO)
		if !t.fsRO {
			// The task's workspace is bounded across its calls: what it
			// holds now counts against the quota.
			wfs.(*workspaceFS).q = newQuota(dir, t.b.wsQuota, t.b.wsFiles)
			wfs.(*workspaceFS).owner = t.b.wsOwner
		}
		fsc = wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(wfs, WorkspaceGuestPath)
		guestPaths = append(guestPaths, WorkspaceGuestPath)
	}
	for _, m := range call.Mounts {
		if err := checkGuestPath(m.GuestPath, guestPaths); err != nil {
			return nil, t.runError(sandbox.KindInternal, nil, err, "mount %s is not usable", m.GuestPath)
		}
		dir, err := sandbox.HostDir(m.HostDir)
		if err != nil {
			return nil, t.runError(sandbox.KindInternal, nil, err, "mount %s: host directory %s is not usable: the executor must create it as a directory", m.GuestPath, m.HostDir)
		}
		if fsc == nil {
			fsc = wazero.NewFSConfig()
		}
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(newWorkspaceFS(dir, true), m.GuestPath)
		guestPaths = append(guestPaths, m.GuestPath)
	}
	if fsc != nil {
		mcfg = mcfg.WithFSConfig(fsc)
	}
	return mcfg, nil
}

// checkGuestPath accepts an absolute, clean guest mount path other than "/"
// that neither contains nor is contained in one of taken.
func checkGuestPath(p string, taken []string) error {
	if p == "" || p == "/" || !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return fmt.Errorf("guest path %q must be an absolute, clean path other than /", p)
	}
	for _, q := range taken {
		if p == q || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/") {
			return fmt.Errorf("guest path %s overlaps the mount at %s", p, q)
		}
	}
	return nil
}

// acquire takes a slot of sem, or fails when ctx is done first.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close refuses new calls, waits for running ones (until ctx is done, then
// ends them) and releases the tool's runtime.
func (t *tool) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	t.b.forget(t)
	if err := t.rt.Close(context.Background()); err != nil {
		return fmt.Errorf("close tool %s: %w", t.name, err)
	}
	return nil
}

// trapMessages are wazero's runtime errors (internal/wasmruntime), which
// cannot be matched by type from outside wazero.
var trapMessages = map[string]bool{
	"stack overflow":                true,
	"invalid conversion to integer": true,
	"integer overflow":              true,
	"integer divide by zero":        true,
	"unreachable":                   true,
	"out of bounds memory access":   true,
	"invalid table access":          true,
	"indirect call type mismatch":   true,
	"unaligned atomic":              true,
	"expected shared memory":        true,
	"too many waiters":              true,
	"uncaught exception":            true,
	"null reference":                true,
}

// isTrap reports whether err is a WebAssembly trap: wazero wraps a trap as
// "wasm error: ..." with a stack trace, except a stack overflow, which it
// returns bare.
// trapReason is wazero's short description of a trap ("stack overflow",
// "unreachable", ...), without the guest's stack trace.
func trapReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "wasm error: "); i >= 0 {
		msg = msg[i+len("wasm error: "):]
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

func isTrap(err error) bool {
	if strings.Contains(err.Error(), "wasm error:") {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if trapMessages[e.Error()] {
			return true
		}
	}
	return false
}
