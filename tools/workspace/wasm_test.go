//go:build !wasip1

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/tools/internal/wasmtest"
)

// TestWasm builds the module for wasip1 and runs it under plain wazero with
// a temporary directory mounted at /workspace, to prove it honours the ABI.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 module")
	}
	m := wasmtest.Load(t, wasmtest.BuildGo(t, "./tools/workspace"))
	dir := t.TempDir()

	steps := []struct {
		argv0, stdin, workspace string
		exit                    uint32
		stdout, stderr          string // stderr: prefix
	}{
		{"workspace.write", `{"path": "notes/a.txt", "content": "hello"}`, dir, 0, `{"bytes":5}`, ""},
		{"workspace.read", `{"path": "notes/a.txt"}`, dir, 0, `{"content":"hello"}`, ""},
		{"workspace.list", `{}`, dir, 0, `{"entries":[{"name":"notes","size":0,"dir":true}]}`, ""},
		{"workspace.list", `{"path": "notes"}`, dir, 0, `{"entries":[{"name":"a.txt","size":5,"dir":false}]}`, ""},
		{"workspace.read", `{"path": "../etc/passwd"}`, dir, 1, "", `invalid_path: path "../etc/passwd" contains ".."`},
		{"workspace.read", `{"path": "nope"}`, dir, 1, "", `not_found: read "nope"`},
		// argv[0] picks the tool; a path prefix is ignored, an unknown name refused.
		{"/bin/workspace.read", `{"path": "notes/a.txt"}`, dir, 0, `{"content":"hello"}`, ""},
		{"workspace.delete", `{"path": "notes/a.txt"}`, dir, 64, "", `unknown tool "workspace.delete": this module serves workspace.list, workspace.read, workspace.write`},
		// No workspace mounted.
		{"workspace.read", `{"path": "notes/a.txt"}`, "", 1, "", "no_workspace: this tool needs a task workspace: begin a task"},
		{"workspace.write", `{"path": "x", "content": "x"}`, "", 1, "", "no_workspace: this tool needs a task workspace: begin a task"},
	}
	for i, s := range steps {
		r := m.Run(t, s.argv0, s.stdin, s.workspace)
		want := ""
		if s.stdout != "" {
			want = s.stdout + "\n"
		}
		if r.Exit != s.exit || r.Stdout != want || !strings.HasPrefix(r.Stderr, s.stderr) || (s.stderr == "" && r.Stderr != "") {
			t.Errorf("step %d %s %s: got %+v, want exit %d stdout %q stderr %q...", i, s.argv0, s.stdin, r, s.exit, want, s.stderr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "notes", "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("the guest's write did not land in the host workspace: %q, %v", b, err)
	}

	// A read-only workspace (workspace.read and .list) refuses writes.
	r := m.RunReadOnly(t, "workspace.write", `{"path": "ro.txt", "content": "x"}`, dir)
	if r.Exit != 1 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, `read_only: write "ro.txt": the workspace is read-only for this tool`) {
		t.Fatalf("write to a read-only workspace: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "ro.txt")); err == nil {
		t.Fatal("a write to a read-only workspace landed")
	}
	if r := m.RunReadOnly(t, "workspace.read", `{"path": "notes/a.txt"}`, dir); r.Exit != 0 || r.Stdout != `{"content":"hello"}`+"\n" {
		t.Fatalf("read from a read-only workspace: %+v", r)
	}

	// A symbolic link planted in the workspace does not lead out of it.
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	r = m.Run(t, "workspace.read", `{"path": "link"}`, dir)
	if r.Exit != 1 || strings.Contains(r.Stdout, "s3cret") || !strings.HasPrefix(r.Stderr, `invalid_path: read "link": the path leaves the workspace`) {
		t.Fatalf("read through a symlink escaped the workspace: %+v", r)
	}
}
