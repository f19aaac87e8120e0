//go:build !wasip1

// Package wasmtest builds airlock's bundled tools for wasip1 and runs them
// under plain wazero with the Tool ABI v1 wiring (stdin, stdout, stderr,
// argv[0], /workspace), so tests prove that a module honours the ABI.
//
// It is a test helper: it is not part of any tool module.
package wasmtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// RepoRoot returns the directory holding go.mod, found upward from the
// working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BuildGo builds the Go package pkg (relative to the repo root, e.g.
// "./tools/jsonquery") for GOOS=wasip1 GOARCH=wasm with the flags of
// tools/build.sh, into a temporary directory, and returns the module's path.
// go's build cache makes repeated builds cheap.
func BuildGo(t testing.TB, pkg string) string {
	t.Helper()
	root := RepoRoot(t)
	out := filepath.Join(t.TempDir(), filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s for wasip1: %v\n%s", pkg, err, msg)
	}
	return out
}

// Module is a compiled module ready to run calls.
type Module struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
}

var (
	cacheOnce sync.Once
	cache     wazero.CompilationCache
)

// Load compiles the module at path with wazero's compiler. The runtime is
// closed when the test ends.
func Load(t testing.TB, path string) *Module {
	t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read module: %v", err)
	}
	ctx := context.Background()
	cacheOnce.Do(func() {
		// A compiled Go module takes seconds; wazero's on-disk cache, keyed
		// by the module's bytes, makes the next test run near-instant.
		if dir, err := os.UserCacheDir(); err == nil {
			if c, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "airlock", "wazero-test")); err == nil {
				cache = c
				return
			}
		}
		cache = wazero.NewCompilationCache()
	})
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(1024)) // 64 MiB, the bundled tools' limit
	t.Cleanup(func() { _ = rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("compile %s: %v", path, err)
	}
	return &Module{rt: rt, compiled: compiled}
}

// Result is what one run of a module produced.
type Result struct {
	Exit   uint32
	Stdout string
	Stderr string
}

// Run runs one call in a fresh instance: argv0 as argv[0], stdin as the
// arguments, and workspace (when not "") mounted at /workspace. No env, no
// clock, no network. It fails the test if the instance cannot run at all or
// runs longer than 30 s.
func (m *Module) Run(t testing.TB, argv0, stdin, workspace string) Result {
	t.Helper()
	return m.run(t, argv0, stdin, workspace, false)
}

// RunReadOnly is Run with the workspace mounted read-only, as for a
// manifest that grants it with access: read-only.
func (m *Module) RunReadOnly(t testing.TB, argv0, stdin, workspace string) Result {
	t.Helper()
	return m.run(t, argv0, stdin, workspace, true)
}

func (m *Module) run(t testing.TB, argv0, stdin, workspace string, readOnly bool) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithArgs(argv0).
		WithStdin(bytes.NewReader([]byte(stdin))).
		WithStdout(&stdout).
		WithStderr(&stderr)
	if workspace != "" {
		fsc := wazero.NewFSConfig().WithDirMount(workspace, "/workspace")
		if readOnly {
			fsc = wazero.NewFSConfig().WithReadOnlyDirMount(workspace, "/workspace")
		}
		cfg = cfg.WithFSConfig(fsc)
	}
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, cfg)
	var exit uint32
	if err != nil {
		var ee *sys.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("run %s: %v (stderr %q)", argv0, err, stderr.String())
		}
		exit = ee.ExitCode()
	}
	if mod != nil {
		_ = mod.Close(ctx)
	}
	return Result{Exit: exit, Stdout: stdout.String(), Stderr: stderr.String()}
}
