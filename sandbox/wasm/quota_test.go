package wasm

import (
	"os"
	"path/filepath"
	"testing"

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
