package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/sandbox"
)

// spawnSpec is what one process start needs.
type spawnSpec struct {
	Binary    string
	SHA256    string
	Args      []string
	Env       []string // the complete environment
	Workspace string   // host dir at /workspace ("" none)
	SocketDir string   // host dir at the same path inside
	Limits    isolate.Limits
}

// command returns the command that starts one process, the cleanup to run
// after it exits, and (unisolated) the go-plugin SecureConfig that checks
// the binary right before it starts. The command is bound to ctx: once ctx
// is done, the process does not start, or is killed (with its process
// group) if it has; go-plugin still reaps it.
func (b *Backend) command(ctx context.Context, t *tool, s spawnSpec) (*exec.Cmd, func(), *goplugin.SecureConfig, *sandbox.Error) {
	if b.cfg.Unisolated {
		return plainCommand(ctx, t, s)
	}
	cmd, cleanup, err := isolatedCommand(ctx, s, b.accept)
	if err != nil {
		if d, ok := asDigestMismatch(err); ok {
			return nil, nil, nil, digestError(t.name, s.Binary, d, s.SHA256)
		}
		if ctx.Err() != nil {
			return nil, nil, nil, t.runError(sandbox.KindInternal, err, "the process start was abandoned while the binary was verified")
		}
		return nil, nil, nil, t.runError(sandbox.KindModule, err, "the plugin process cannot be isolated: %v", err)
	}
	return bindContext(ctx, cmd), cleanup, nil, nil
}

// bindContext returns an unstarted command equal to c but bound to ctx:
// when ctx is done before the process is reaped, its process group and the
// process itself are killed. Every exported field that describes the
// process is carried over (isolate requires Path, Args, ExtraFiles and
// SysProcAttr to be kept).
func bindContext(ctx context.Context, c *exec.Cmd) *exec.Cmd {
	cc := exec.CommandContext(ctx, c.Path)
	cc.Path, cc.Args, cc.Env, cc.Dir = c.Path, c.Args, c.Env, c.Dir
	cc.Stdin, cc.Stdout, cc.Stderr = c.Stdin, c.Stdout, c.Stderr
	cc.ExtraFiles, cc.SysProcAttr, cc.WaitDelay = c.ExtraFiles, c.SysProcAttr, c.WaitDelay
	cc.Cancel = func() error { return killGroup(cc) }
	return cc
}

// killGroup kills the started process cmd and its process group (both
// builders give the process a group of its own: Setpgid).
func killGroup(cmd *exec.Cmd) error {
	if pid := cmd.Process.Pid; pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return cmd.Process.Kill()
}

// plainCommand is an unisolated process: the binary by absolute path, the
// given environment only, its own process group, killed with the executor.
// go-plugin's SecureConfig hashes the binary right before it starts.
func plainCommand(ctx context.Context, t *tool, s spawnSpec) (*exec.Cmd, func(), *goplugin.SecureConfig, *sandbox.Error) {
	sum, err := hex.DecodeString(s.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, nil, nil, t.runError(sandbox.KindModule, err, "pin %q is not a SHA-256 in hex", s.SHA256)
	}
	cmd := bindContext(ctx, &exec.Cmd{
		Path: s.Binary,
		Args: append([]string{s.Binary}, s.Args...),
		Env:  append([]string(nil), s.Env...),
		Dir:  s.SocketDir,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	})
	return cmd, func() {}, &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, nil
}

// hashBinary returns the SHA-256 (hex) of a regular file of at most
// isolate.MaxBinaryBytes, the bound the isolated start enforces too.
func hashBinary(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > isolate.MaxBinaryBytes {
		return "", fmt.Errorf("%s is %d bytes, over the %d allowed", path, fi.Size(), isolate.MaxBinaryBytes)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, isolate.MaxBinaryBytes+1))
	if err != nil {
		return "", err
	}
	if n > isolate.MaxBinaryBytes {
		return "", fmt.Errorf("%s grew past %d bytes while it was read", path, isolate.MaxBinaryBytes)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
