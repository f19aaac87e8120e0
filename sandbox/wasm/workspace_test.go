package wasm

import (
	"os"
	"path/filepath"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

func escapeSetup(t *testing.T) (ws string) {
	base := t.TempDir()
	ws = filepath.Join(base, "ws")
	if err := os.MkdirAll(filepath.Join(base, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "other", "secret.txt"), []byte("SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestPlainDirFSFollowsGuestSymlinks documents why workspaceFS exists:
// wazero's DirFS lets a guest create a relative symlink that the host then
// follows out of the directory.
func TestPlainDirFSFollowsGuestSymlinks(t *testing.T) {
	ws := escapeSetup(t)
	plain := sysfs.DirFS(ws)
	if e := plain.Symlink("../other", "w"); e != 0 {
		t.Skipf("DirFS refused the symlink (%v): the escape is closed upstream", e)
	}
	f, e := plain.OpenFile("w/secret.txt", experimentalsys.O_RDONLY, 0)
	if e != 0 {
		t.Skipf("DirFS did not follow the symlink (%v)", e)
	}
	defer f.Close()
	buf := make([]byte, 16)
	n, _ := f.Read(buf)
	if string(buf[:n]) != "SECRET" {
		t.Fatalf("read %q", buf[:n])
	}
}

func TestWorkspaceFSRefusesEscapes(t *testing.T) {
	ws := escapeSetup(t)
	w := newWorkspaceFS(ws, false)
	if e := w.Symlink("../other", "w"); e != experimentalsys.EPERM {
		t.Fatalf("symlink: %v, want EPERM", e)
	}
	if e := w.Link("x", "y"); e != experimentalsys.EPERM {
		t.Fatalf("link: %v, want EPERM", e)
	}
	// A symlink put there by the host is not followed, as a file or a
	// directory component, by any operation.
	if err := os.Symlink("../other", filepath.Join(ws, "h")); err != nil {
		t.Fatal(err)
	}
	if _, e := w.OpenFile("h/secret.txt", experimentalsys.O_RDONLY, 0); e == 0 {
		t.Fatal("opened a file through a host symlink")
	}
	if _, e := w.OpenFile("h", experimentalsys.O_RDONLY, 0); e == 0 {
		t.Fatal("opened a host symlink")
	}
	if _, e := w.Stat("h/secret.txt"); e == 0 {
		t.Fatal("stat through a host symlink")
	}
	if e := w.Unlink("h/secret.txt"); e == 0 {
		t.Fatal("unlinked through a host symlink")
	}
	if e := w.Rename("h/secret.txt", "stolen.txt"); e == 0 {
		t.Fatal("renamed through a host symlink")
	}
	if e := w.Mkdir("h/new", 0o755); e == 0 {
		t.Fatal("mkdir through a host symlink")
	}
	for _, p := range []string{"../other/secret.txt", "/etc/passwd", "a/../../other/secret.txt"} {
		if _, e := w.OpenFile(p, experimentalsys.O_RDONLY, 0); e == 0 {
			t.Fatalf("opened %s", p)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(ws), "other", "secret.txt")); err != nil {
		t.Fatalf("the secret moved: %v", err)
	}
	// Ordinary use works.
	f, e := w.OpenFile("sub.txt", experimentalsys.O_CREAT|experimentalsys.O_RDWR, 0o644)
	if e != 0 {
		t.Fatalf("create: %v", e)
	}
	if _, e := f.Write([]byte("ok")); e != 0 {
		t.Fatalf("write: %v", e)
	}
	f.Close()
	if e := w.Mkdir("d", 0o755); e != 0 {
		t.Fatalf("mkdir: %v", e)
	}
	if e := w.Rename("sub.txt", "d/sub.txt"); e != 0 {
		t.Fatalf("rename: %v", e)
	}
	b, err := os.ReadFile(filepath.Join(ws, "d", "sub.txt"))
	if err != nil || string(b) != "ok" {
		t.Fatalf("%q %v", b, err)
	}
	ro := newWorkspaceFS(ws, true)
	if _, e := ro.OpenFile("new.txt", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o644); e == 0 {
		t.Fatal("created a file in a read-only workspace")
	}
	rf, e := ro.OpenFile("d/sub.txt", experimentalsys.O_RDONLY, 0)
	if e != 0 {
		t.Fatalf("read-only open: %v", e)
	}
	rf.Close()
}

func TestScanModule(t *testing.T) {
	for _, bad := range [][]byte{nil, []byte("\x00asm"), []byte("\x00asm\x02\x00\x00\x00"), []byte("\x00asm\x01\x00\x00\x00\x02\x05\x01\x03env"), []byte("\x00asm\x01\x00\x00\x00\x05\xff\xff\xff\xff\x0f")} {
		if _, err := scanModule(bad); err == nil {
			t.Errorf("scanModule(%q) succeeded", bad)
		}
	}
}
