// Package sandbox is the one small interface behind which tools run:
// a WebAssembly module in wazero (package sandbox/wasm) or an isolated
// native plugin process (package sandbox/plugin); Mux picks the backend of
// each manifest's runtime.
//
// A Backend prepares a tool once, at load: it checks the pinned digest,
// compiles, and rejects anything the manifest does not grant. A prepared
// Tool then runs any number of calls, each in an isolated instance: a
// fresh one for WASM, a pooled process of the tool (of the task, when it is
// granted the workspace) for a plugin.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/manifest"
)

// The bounds of a task's workspace both backends apply by default: 256 MiB
// in at most 10,000 files and directories.
const (
	DefaultWorkspaceQuota    = 256 << 20
	DefaultWorkspaceMaxFiles = 10000
)

// Backend prepares tools of one runtime kind.
type Backend interface {
	// Prepare verifies and compiles the tool described by m. It fails with a
	// clear error naming the module when the digest does not match, the
	// module does not parse, or it imports something not granted.
	Prepare(ctx context.Context, m *manifest.Manifest) (Tool, error)
	// Close releases every prepared tool and cache.
	Close(ctx context.Context) error
}

// Tool is a prepared tool. Run is safe for concurrent use.
type Tool interface {
	// Run executes one call in a fresh instance. A non-nil error is always a
	// *Error. Run honours ctx: cancellation or deadline ends the instance.
	Run(ctx context.Context, call *Call) (*Result, error)
	// Close releases the tool.
	Close(ctx context.Context) error
}

// TaskEnder is implemented by a Backend that keeps per-task state, like
// the plugin backend's processes that mount one task's workspace. The
// executor calls EndTask when a task ends, after canceling its calls.
type TaskEnder interface {
	EndTask(taskID string)
}

// Call is the input of one run.
type Call struct {
	// Input is the validated JSON arguments, passed on stdin.
	Input []byte
	// TaskID is the task the call belongs to ("" when none).
	TaskID string
	// Workspace is the host directory of the task's workspace. It is mounted
	// at /workspace only when the manifest grants the workspace; "" means the
	// call has none.
	Workspace string
	// Env is extra environment for the guest (manifest env and env-injected
	// credentials), already decided by the executor.
	Env map[string]string
	// Egress performs the guest's HTTP requests (the airlock_v1 host
	// functions), already bound by the executor to the tool's network rules
	// and this call's injected credentials (an *egress.Binding). nil: the
	// guest's requests fail with "network_not_granted".
	Egress Egress
	// Mounts are extra host directories mounted read-only for this call only
	// (file-injected credentials), with the same confinement as the
	// workspace: no writes, no links, no path through a symlink. The
	// executor creates and removes them; nil means none.
	Mounts []Mount
}

// CredentialsGuestPath is where the executor mounts a call's file-injected
// credentials: the guest reads CredentialsGuestPath + "/" + NAME.
const CredentialsGuestPath = "/run/airlock/credentials"

// Mount is a host directory shown read-only to the guest at GuestPath.
type Mount struct {
	// HostDir is an absolute host directory.
	HostDir string
	// GuestPath is the absolute, clean guest path, like
	// "/run/airlock/credentials"; it may not be "/" nor overlap the
	// workspace mount or another mount.
	GuestPath string
}

// Egress sends one HTTP request of a tool under its allowlist, attaching
// credentials host-side. A non-nil error should be an *egress.Error.
type Egress interface {
	Do(ctx context.Context, req egress.Request) (*egress.Response, error)
}

var _ Egress = (*egress.Binding)(nil)

// Result is a completed run: the tool exited 0 and Output is its stdout.
type Result struct {
	Output   []byte
	Stderr   []byte
	Duration time.Duration
}

// ErrorKind classifies why a run did not produce a result.
type ErrorKind string

// The kinds of run failures.
const (
	// KindTimeout: the call's deadline passed (the tool's limit or the caller's).
	KindTimeout ErrorKind = "timeout"
	// KindCanceled: the caller canceled the call.
	KindCanceled ErrorKind = "canceled"
	// KindBusy: the concurrency bound stayed full until the deadline.
	KindBusy ErrorKind = "busy"
	// KindMemory: the guest tried to grow memory past its limit.
	KindMemory ErrorKind = "memory_limit"
	// KindOutputLimit: stdout or stderr went past the output limit.
	KindOutputLimit ErrorKind = "output_limit"
	// KindExit: the tool exited with a non-zero status (a tool error).
	KindExit ErrorKind = "tool_error"
	// KindTrap: the guest trapped (stack overflow, unreachable, bad access).
	KindTrap ErrorKind = "trap"
	// KindWorkspaceQuota: a native plugin filled the task's workspace past
	// its quota (bytes or entries) and was stopped.
	KindWorkspaceQuota ErrorKind = "workspace_quota"
	// KindCrash: a plugin process died during the call (it exited, was
	// killed by a limit, or broke the protocol); the next call gets a fresh
	// process.
	KindCrash ErrorKind = "crash"
	// KindModule: the module changed on disk, or could not be instantiated.
	KindModule ErrorKind = "module"
	// KindInternal: an executor-side error.
	KindInternal ErrorKind = "internal"
)

// Error is a failed run.
type Error struct {
	Kind     ErrorKind
	Message  string // lowercase, says what happened and what to do
	ExitCode int    // the guest's exit code for KindExit
	Stderr   []byte // capped stderr of the guest, if any
	Err      error  // the underlying error, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of a run error, KindInternal for foreign errors.
func KindOf(err error) ErrorKind {
	var se *Error
	if errors.As(err, &se) {
		return se.Kind
	}
	return KindInternal
}

// HostDir resolves a host directory a backend shows to a tool (a call's
// workspace, a mount) to an absolute directory without symlinks, so that
// the guest sees exactly that directory. p must be absolute.
func HostDir(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute", p)
	}
	dir, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	return dir, nil
}
