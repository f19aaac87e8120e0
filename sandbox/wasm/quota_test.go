package wasm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/wasmtest"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

func TestWorkspaceQuota(t *testing.T) {
	ws := t.TempDir()
	// What the workspace holds already counts: 4 of 16 bytes, 1 of 3 entries.
	if err := os.WriteFile(filepath.Join(ws, "old.txt"), []byte("1234"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorkspaceFS(ws, false).(*workspaceFS)
	w.q = newQuota(ws, 16, 3)

	f, e := w.OpenFile("a.txt", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o600)
	if e != 0 {
		t.Fatalf("create: %v", e)
	}
	if n, e := f.Write([]byte("12345678")); e != 0 || n != 8 {
		t.Fatalf("write within the quota: %d %v", n, e)
	}
	if _, e := f.Write([]byte("12345")); e != errQuota {
		t.Fatalf("write past the quota: %v, want %v", e, errQuota)
	}
	if e := f.Truncate(1 << 20); e != errQuota {
		t.Fatalf("truncate past the quota: %v", e)
	}
	f.Close()
	if e := w.Mkdir("d", 0o700); e != 0 {
		t.Fatalf("mkdir within the quota: %v", e)
	}
	if _, e := w.OpenFile("b.txt", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o600); e != errQuota {
		t.Fatalf("a fourth entry: %v, want %v", e, errQuota)
	}
	// Reading is never charged.
	if f, e := w.OpenFile("old.txt", experimentalsys.O_RDONLY, 0); e != 0 {
		t.Fatalf("read: %v", e)
	} else {
		f.Close()
	}
	if fi, err := os.Stat(filepath.Join(ws, "a.txt")); err != nil || fi.Size() != 8 {
		t.Fatalf("a.txt on the host: %v %v", fi, err)
	}
}

// Through real wazero and the real workspace tool: writes past a task's
// quota fail in the guest, and what the workspace holds counts across calls.
func TestWorkspaceQuotaThroughTheGuest(t *testing.T) {
	ctx := context.Background()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	b, err := New(ctx, Config{CacheDir: filepath.Join(base, "airlock-wasmtest", "wazero"), WorkspaceQuota: 4096, WorkspaceMaxFiles: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	path, sum := wasmtest.BuildGo(t, filepath.Join("..", "..", "tools", "workspace"))
	m := &manifest.Manifest{
		APIVersion: manifest.APIVersion, Kind: manifest.KindTool,
		Metadata: manifest.Metadata{Name: "workspace.write", Version: "1.0.0"},
		Spec: manifest.Spec{
			Runtime:      manifest.Runtime{Wasm: &manifest.WasmRuntime{Module: path, SHA256: sum}},
			Limits:       manifest.Limits{Memory: 64 << 20, Timeout: manifest.Duration(10 * time.Second), Output: 1 << 20},
			Capabilities: manifest.Capabilities{Filesystem: []manifest.FilesystemGrant{{Path: "workspace", Access: manifest.AccessReadWrite}}},
			Risk:         manifest.RiskLow,
		},
	}
	tool, err := b.Prepare(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	write := func(name string, n int) error {
		in := fmt.Sprintf(`{"path":%q,"content":%q}`, name, strings.Repeat("x", n))
		_, err := tool.Run(ctx, &sandbox.Call{Input: []byte(in), Workspace: ws, TaskID: "tsk_q"})
		return err
	}
	if err := write("a.txt", 3000); err != nil {
		t.Fatalf("within the quota: %v", err)
	}
	// 3000 bytes are held; 2000 more do not fit, in a later call too.
	if err := write("b.txt", 2000); sandbox.KindOf(err) != sandbox.KindExit {
		t.Fatalf("past the quota: %v, want a tool error", err)
	}
	if fi, err := os.Stat(filepath.Join(ws, "b.txt")); err == nil && fi.Size() > 1096 {
		t.Fatalf("b.txt holds %d bytes past the quota", fi.Size())
	}
	if err := write("c.txt", 500); err != nil {
		t.Fatalf("what still fits: %v", err)
	}
}

// An executor running as root hands what guests create in a workspace to
// the uid its native plugins run as, so that a plugin of the same task can
// read it.
func TestWorkspaceOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another uid needs root")
	}
	ws := t.TempDir()
	w := newWorkspaceFS(ws, false).(*workspaceFS)
	w.owner = &Owner{UID: 65534, GID: 65534}
	f, e := w.OpenFile("a.txt", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o600)
	if e != 0 {
		t.Fatalf("create: %v", e)
	}
	f.Close()
	if e := w.Mkdir("d", 0o700); e != 0 {
		t.Fatalf("mkdir: %v", e)
	}
	for _, name := range []string{"a.txt", "d"} {
		fi, err := os.Lstat(filepath.Join(ws, name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("%s is owned by %d:%d, want 65534:65534", name, st.Uid, st.Gid)
		}
	}
	// Without an owner, the executor keeps what guests create.
	plain := newWorkspaceFS(ws, false).(*workspaceFS)
	if f, e := plain.OpenFile("b.txt", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o600); e != 0 {
		t.Fatalf("create: %v", e)
	} else {
		f.Close()
	}
	fi, _ := os.Lstat(filepath.Join(ws, "b.txt"))
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("b.txt is owned by %d without an owner set, want 0", st.Uid)
	}
}
