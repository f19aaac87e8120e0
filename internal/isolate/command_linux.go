package isolate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Hidden first arguments that make Init take over the process.
const (
	initArg  = "__airlock_isolate_init__"
	probeArg = "__airlock_isolate_probe__"
)

// Descriptors the init receives (exec.Cmd.ExtraFiles start at 3).
const (
	fdSpec     = 3
	fdBinary   = 4
	fdLifeline = 5
)

// ExitInitFailed is the exit status of an isolated process whose init
// failed before the plugin started (the reason is on its stderr, prefixed
// with "airlock isolate: ").
const ExitInitFailed = 125

// initCalled is set when Init returned in a process that is not an init:
// Command refuses to start anything in a program that forgot to call Init,
// since the child would run that program's main instead.
var initCalled bool

// initSpec is what the init reads from fdSpec.
type initSpec struct {
	Name      string         `json:"name"`
	SHA256    string         `json:"sha256"`
	Size      int64          `json:"size"`
	Args      []string       `json:"args"`
	Workspace string         `json:"workspace"`
	SocketDir string         `json:"socket_dir"`
	Limits    Limits         `json:"limits"`
	Skip      map[Layer]bool `json:"skip"`
	// DropTo is the inside uid/gid the plugin runs as (0: stay 0).
	DropTo int `json:"drop_to"`
}

// reserved are paths the sandbox builds itself: SocketDir may not be one
// of them nor below one of them.
var reserved = []string{"/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/dev", "/workspace", "/run/airlock", "/sys"}

func checkDir(field, dir string) error {
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("isolate: %s %q is not a clean absolute path", field, dir)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("isolate: %s: %w: create the directory first", field, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("isolate: %s %s is not a directory (symbolic links are refused)", field, dir)
	}
	return nil
}

func command(ctx context.Context, s Spec) (*exec.Cmd, func(), error) {
	if !initCalled {
		return nil, nil, errors.New("isolate: Init was not called first in main (or in TestMain): the isolated process would run the program's main; call isolate.Init() first")
	}
	if !filepath.IsAbs(s.Binary) {
		return nil, nil, fmt.Errorf("isolate: plugin binary %q is not an absolute path", s.Binary)
	}
	pin := strings.ToLower(s.SHA256)
	if b, err := hex.DecodeString(pin); err != nil || len(b) != sha256.Size {
		return nil, nil, fmt.Errorf("isolate: plugin binary %s: the pinned sha256 %q is not 64 hex digits: pin it in the manifest (sha256sum %s)", s.Binary, s.SHA256, s.Binary)
	}
	if err := checkDir("workspace", s.Workspace); err != nil {
		return nil, nil, err
	}
	if err := checkDir("socket directory", s.SocketDir); err != nil {
		return nil, nil, err
	}
	if s.SocketDir != "" {
		if s.SocketDir == "/" || s.SocketDir == "/tmp" || s.SocketDir == "/run" {
			return nil, nil, fmt.Errorf("isolate: socket directory %s would hide part of the sandbox: use a directory of its own, like one from os.MkdirTemp", s.SocketDir)
		}
		for _, r := range reserved {
			if s.SocketDir == r || strings.HasPrefix(s.SocketDir, r+"/") {
				return nil, nil, fmt.Errorf("isolate: socket directory %s lies in %s, which the sandbox builds itself: use a directory under /tmp or /run", s.SocketDir, r)
			}
		}
	}
	if err := checkLimits(s.Limits); err != nil {
		return nil, nil, err
	}

	rep := effectiveReport()
	skip := map[Layer]bool{}
	for _, l := range Layers {
		if rep.Available[l] {
			continue
		}
		accepted := false
		for _, a := range s.Accept {
			accepted = accepted || a == l
		}
		if !accepted {
			return nil, nil, &MissingLayerError{Layer: l, Why: rep.Missing[l]}
		}
		skip[l] = true
	}

	bin, size, err := openPinned(ctx, s.Binary, pin)
	if err != nil {
		return nil, nil, err
	}
	files := []*os.File{bin}
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	root := os.Geteuid() == 0
	if root {
		for _, d := range []string{s.Workspace, s.SocketDir} {
			if d == "" {
				continue
			}
			if err := os.Chown(d, SandboxUser, SandboxUser); err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("isolate: give %s to the sandbox user %d: %w", d, SandboxUser, err)
			}
		}
	}
	is := initSpec{
		Name: filepath.Base(s.Binary), SHA256: pin, Size: size, Args: s.Args,
		Workspace: s.Workspace, SocketDir: s.SocketDir, Limits: withDefaults(s.Limits), Skip: skip,
	}
	if root {
		is.DropTo = SandboxUser
	}
	raw, err := json.Marshal(is)
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("isolate: encode the spec: %w", err)
	}
	if len(raw) > MaxSpecBytes {
		closeAll()
		return nil, nil, fmt.Errorf("isolate: plugin %s: its arguments take %d bytes encoded, more than %d: pass less on the command line", s.Binary, len(raw), MaxSpecBytes)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("isolate: spec pipe: %w", err)
	}
	files = append(files, specR)
	// The pipe buffer (64 KiB) holds the whole spec: no writer goroutine.
	_, werr := specW.Write(raw)
	_ = specW.Close()
	if werr != nil {
		closeAll()
		return nil, nil, fmt.Errorf("isolate: write the spec: %w", werr)
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("isolate: lifeline pipe: %w", err)
	}
	files = append(files, lifeR, lifeW)

	env := make([]string, len(s.Env))
	copy(env, s.Env)
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"airlock-isolate", initArg},
		Env:        env,
		ExtraFiles: []*os.File{specR, bin, lifeR},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneFlags(skip),
			Pdeathsig:  syscall.SIGKILL,
			Setpgid:    true,
		},
	}
	if !skip[LayerUserNS] {
		setMappings(cmd.SysProcAttr, root)
	}
	var once sync.Once
	return cmd, func() { once.Do(closeAll) }, nil
}

// cloneFlags are the namespaces of the layers not skipped.
func cloneFlags(skip map[Layer]bool) uintptr {
	var f uintptr
	for l, flag := range map[Layer]uintptr{
		LayerUserNS: syscall.CLONE_NEWUSER, LayerPIDNS: syscall.CLONE_NEWPID, LayerMountNS: syscall.CLONE_NEWNS,
		LayerIPCNS: syscall.CLONE_NEWIPC, LayerUTSNS: syscall.CLONE_NEWUTS, LayerNetNS: syscall.CLONE_NEWNET,
	} {
		if !skip[l] {
			f |= flag
		}
	}
	return f
}

// setMappings maps the user namespace. As root, inside 0 is host 0 (the
// init needs it to reach the workspace below root-only directories; it
// runs only executor code) and inside SandboxUser is host SandboxUser, the
// identity the plugin gets before exec. Otherwise inside 0 is the
// executor's own uid, the only mapping an unprivileged process may write.
func setMappings(a *syscall.SysProcAttr, root bool) {
	if root {
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: SandboxUser, HostID: SandboxUser, Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: SandboxUser, HostID: SandboxUser, Size: 1}}
		// The init drops the supplementary groups inherited from the
		// executor (root's group in particular) with setgroups.
		a.GidMappingsEnableSetgroups = true
		return
	}
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
}

func checkLimits(l Limits) error {
	switch {
	case l.AddressSpace < 0:
		return errors.New("isolate: limits.AddressSpace is negative")
	case l.FileSize < 0:
		return errors.New("isolate: limits.FileSize is negative")
	case l.OpenFiles < 0:
		return errors.New("isolate: limits.OpenFiles is negative")
	case l.Processes < 0:
		return errors.New("isolate: limits.Processes is negative")
	case l.CPUTime < 0:
		return errors.New("isolate: limits.CPUTime is negative")
	}
	return nil
}

func withDefaults(l Limits) Limits {
	if l.AddressSpace == 0 {
		l.AddressSpace = DefaultAddressSpace
	}
	if l.FileSize == 0 {
		l.FileSize = DefaultFileSize
	}
	if l.OpenFiles == 0 {
		l.OpenFiles = DefaultOpenFiles
	}
	if l.Processes == 0 {
		l.Processes = DefaultProcesses
	}
	if l.CPUTime == 0 {
		l.CPUTime = DefaultCPUTime
	}
	return l
}

// openPinned opens a regular file and checks its digest.
func openPinned(ctx context.Context, path, pin string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("isolate: open plugin binary: %w: check the manifest's plugin command (symbolic links are refused)", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("isolate: stat plugin binary %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, fmt.Errorf("isolate: plugin binary %s is not a regular file", path)
	}
	if fi.Size() > MaxBinaryBytes {
		_ = f.Close()
		return nil, 0, fmt.Errorf("isolate: plugin binary %s has %d bytes, more than %d", path, fi.Size(), MaxBinaryBytes)
	}
	h := sha256.New()
	n, err := io.Copy(h, &ctxReader{ctx: ctx, r: io.LimitReader(f, MaxBinaryBytes+1)})
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("isolate: read plugin binary %s: %w", path, err)
	}
	if n > MaxBinaryBytes {
		_ = f.Close()
		return nil, 0, fmt.Errorf("isolate: plugin binary %s grew past %d bytes while it was read", path, MaxBinaryBytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != pin {
		_ = f.Close()
		return nil, 0, &PinError{Binary: path, Pinned: pin, Got: got}
	}
	return f, n, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
