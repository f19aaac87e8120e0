// Package plugin is the native plugin sandbox backend (ARCHITECTURE.md
// 3.5): a tool is a native binary that serves the airlock plugin protocol
// (package pluginv1) through hashicorp/go-plugin, gRPC only, with AutoMTLS,
// started by absolute path with no host environment, its SHA-256 checked
// against the manifest's pin at Prepare and before every process start,
// and run in an isolated process (package internal/isolate).
//
// Processes are pooled per tool, or per (tool, task) when the tool is
// granted the workspace, since a process mounts one task's workspace only.
// A tool has at most limits.concurrency processes, each serving one call at
// a time. An idle process is reaped after Config.IdleTimeout; a process
// that crashes, passes its deadline or whose call is canceled is killed
// and never reused; every child is reaped (cmd.Wait). The plugin's stderr
// is captured per call, capped, and logged in fields.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
)

// Defaults of Config.
const (
	DefaultIdleTimeout  = 60 * time.Second
	DefaultMaxStderr    = 64 << 10
	DefaultStartTimeout = 10 * time.Second
	DefaultKillGrace    = 200 * time.Millisecond
	// The workspace bounds (sandbox's defaults, shared with the WASM
	// backend), and how often a plugin call's workspace is measured.
	DefaultWorkspaceQuota    = sandbox.DefaultWorkspaceQuota
	DefaultWorkspaceMaxFiles = sandbox.DefaultWorkspaceMaxFiles
	DefaultWorkspaceCheck    = 250 * time.Millisecond
)

// Config configures a Backend. The zero value runs isolated plugins with
// the defaults; a Config is copied by New.
type Config struct {
	// IdleTimeout is how long a process may stay idle before it is reaped
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxStderr caps the plugin stderr kept and logged per call window
	// (default DefaultMaxStderr); the rest is counted and dropped.
	MaxStderr int
	// StartTimeout bounds a process start up to the go-plugin handshake
	// (default DefaultStartTimeout).
	StartTimeout time.Duration
	// KillGrace is how long a process whose call was canceled or timed out
	// may take to exit by itself (its context is done) before it is killed
	// (default DefaultKillGrace). It is never reused either way.
	KillGrace time.Duration
	// TempDir is where the per-process socket directories are created
	// (default os.TempDir()). It must be reachable by path from the host.
	TempDir string
	// Unisolated runs plugins as plain child processes, without OS
	// isolation: for development on a machine without namespaces, never for
	// untrusted tools. The binary is still verified (go-plugin
	// SecureConfig), the host environment is still withheld.
	Unisolated bool
	// Accept lists the isolation layers the operator accepts missing (see
	// internal/isolate). Empty: every layer is required.
	Accept []string
	// WorkspaceQuota and WorkspaceMaxFiles bound a task's workspace as a
	// plugin sees it: a call that leaves it holding more bytes or entries
	// is stopped and fails with sandbox.KindWorkspaceQuota (defaults
	// DefaultWorkspaceQuota and DefaultWorkspaceMaxFiles, the WASM
	// backend's). The workspace is measured every WorkspaceCheck during the
	// call (default DefaultWorkspaceCheck) and once after it, so a plugin
	// can overshoot by what it writes in one interval (each file is
	// bounded by limits.file_size).
	WorkspaceQuota, WorkspaceMaxFiles int64
	WorkspaceCheck                    time.Duration
	// Logger receives lifecycle events and the plugins' stderr; the zero
	// value logs nothing. Credentials and outputs are never logged.
	Logger zerolog.Logger
}

// Backend prepares and runs native plugin tools. It is safe for concurrent
// use.
type Backend struct {
	cfg    Config
	accept []isolate.Layer // cfg.Accept, parsed
	log    zerolog.Logger

	mu     sync.Mutex
	tools  map[*tool]struct{}
	closed bool

	stopReaper context.CancelFunc
	reaperDone chan struct{}
}

var (
	_ sandbox.Backend   = (*Backend)(nil)
	_ sandbox.Tool      = (*tool)(nil)
	_ sandbox.TaskEnder = (*Backend)(nil)
)

// New returns a Backend. It starts the idle reaper, which stops with Close.
func New(_ context.Context, cfg Config) (*Backend, error) {
	if cfg.IdleTimeout < 0 || cfg.MaxStderr < 0 || cfg.StartTimeout < 0 || cfg.KillGrace < 0 ||
		cfg.WorkspaceQuota < 0 || cfg.WorkspaceMaxFiles < 0 || cfg.WorkspaceCheck < 0 {
		return nil, errors.New("plugin backend: IdleTimeout, MaxStderr, StartTimeout, KillGrace and the workspace bounds must not be negative (0 selects the default)")
	}
	if cfg.WorkspaceQuota == 0 {
		cfg.WorkspaceQuota = DefaultWorkspaceQuota
	}
	if cfg.WorkspaceMaxFiles == 0 {
		cfg.WorkspaceMaxFiles = DefaultWorkspaceMaxFiles
	}
	if cfg.WorkspaceCheck == 0 {
		cfg.WorkspaceCheck = DefaultWorkspaceCheck
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxStderr == 0 {
		cfg.MaxStderr = DefaultMaxStderr
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	abs, err := filepath.Abs(cfg.TempDir)
	if err != nil {
		return nil, fmt.Errorf("plugin backend: resolve TempDir %s: %w", cfg.TempDir, err)
	}
	cfg.TempDir = abs
	cfg.Accept = append([]string(nil), cfg.Accept...)
	accept, err := parseAccept(cfg.Accept)
	if err != nil {
		return nil, fmt.Errorf("plugin backend: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &Backend{
		cfg:        cfg,
		accept:     accept,
		log:        cfg.Logger.With().Str("component", "sandbox.plugin").Logger(),
		tools:      map[*tool]struct{}{},
		stopReaper: stop,
		reaperDone: make(chan struct{}),
	}
	go b.reaper(ctx)
	return b, nil
}

// moduleError is a Prepare failure about the binary of a tool.
func moduleError(format string, args ...any) *sandbox.Error {
	return &sandbox.Error{Kind: sandbox.KindModule, Message: fmt.Sprintf(format, args...)}
}

// Prepare verifies the tool's binary against its pin. No process starts
// until the first call. Every failure is a *sandbox.Error of kind
// KindModule naming the binary and what to do.
func (b *Backend) Prepare(_ context.Context, m *manifest.Manifest) (sandbox.Tool, error) {
	if m == nil || m.Spec.Runtime.Plugin == nil {
		return nil, moduleError("manifest has no spec.runtime.plugin: the plugin backend runs only plugin tools")
	}
	name := m.Metadata.Name
	if name == "" {
		return nil, moduleError("manifest has no metadata.name")
	}
	rt := m.Spec.Runtime.Plugin
	if !filepath.IsAbs(rt.Command) {
		return nil, moduleError("tool %s: plugin command %q is not absolute (the manifest loader resolves it against the manifest's directory)", name, rt.Command)
	}
	lim := m.Spec.Limits
	if lim.Timeout <= 0 || lim.Output <= 0 || lim.Memory <= 0 {
		return nil, moduleError("tool %s: limits.memory, limits.timeout and limits.output must be positive (got %d bytes, %s, %d bytes): set them in the manifest", name, lim.Memory, time.Duration(lim.Timeout), lim.Output)
	}
	if int64(lim.Output) > int64(maxOutput) {
		return nil, moduleError("tool %s: limits.output %d bytes is over the plugin protocol's %d: lower it", name, lim.Output, maxOutput)
	}
	if granted, ro := m.GrantsWorkspace(); granted && ro && !b.cfg.Unisolated {
		return nil, moduleError("tool %s: the workspace is granted read-only, but isolated plugin processes can only mount it read-write: grant access: read-write (and keep the tool from writing), or use a wasm tool", name)
	}
	want := strings.ToLower(rt.SHA256)
	got, err := hashBinary(rt.Command)
	if err != nil {
		return nil, &sandbox.Error{Kind: sandbox.KindModule, Message: fmt.Sprintf("tool %s: cannot read plugin binary %s: build it (make plugins) or fix spec.runtime.plugin.command", name, rt.Command), Err: err}
	}
	if got != want {
		return nil, digestError(name, rt.Command, got, want)
	}
	t, err := newTool(b, m)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, &sandbox.Error{Kind: sandbox.KindInternal, Message: "the plugin backend is closed"}
	}
	b.tools[t] = struct{}{}
	b.mu.Unlock()
	b.log.Info().Str("tool", name).Str("binary", rt.Command).Str("sha256", got).
		Int("max_processes", t.max).Bool("per_task", t.perTask).Bool("isolated", !b.cfg.Unisolated).Msg("plugin tool prepared")
	return t, nil
}

// digestError is the refusal of a binary whose bytes are not the pinned ones.
func digestError(tool, path, got, want string) *sandbox.Error {
	return moduleError("tool %s: plugin binary %s has sha256 %s but the manifest pins %s: rebuild it from the reviewed source or update spec.runtime.plugin.sha256 after reviewing the new binary", tool, path, got, want)
}

// EndTask kills the processes that serve the task taskID (those that mount
// its workspace). The executor calls it when a task ends; calls still
// running for the task end with KindCanceled through their context.
func (b *Backend) EndTask(taskID string) {
	if taskID == "" {
		return
	}
	for _, t := range b.snapshot() {
		t.endTask(taskID)
	}
}

func (b *Backend) snapshot() []*tool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ts := make([]*tool, 0, len(b.tools))
	for t := range b.tools {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	return ts
}

// reaper kills processes idle for longer than IdleTimeout.
func (b *Backend) reaper(ctx context.Context) {
	defer close(b.reaperDone)
	every := b.cfg.IdleTimeout / 4
	if every < 10*time.Millisecond {
		every = 10 * time.Millisecond
	}
	if every > 5*time.Second {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, t := range b.snapshot() {
				t.reapIdle(now.Add(-b.cfg.IdleTimeout))
			}
		}
	}
}

// Close closes every prepared tool (waiting for running calls until ctx is
// done, then killing them), kills every process and stops the reaper.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	var errs []error
	for _, t := range b.snapshot() {
		if err := t.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	b.stopReaper()
	<-b.reaperDone
	return errors.Join(errs...)
}

// forget drops a closed tool.
func (b *Backend) forget(t *tool) {
	b.mu.Lock()
	delete(b.tools, t)
	b.mu.Unlock()
}
