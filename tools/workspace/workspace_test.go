package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/tools/sdk"
)

func handlers(dir string) map[string]sdk.Handler {
	ws := &workspace{dir: dir}
	return map[string]sdk.Handler{
		"workspace.write": sdk.Handle(ws.write),
		"workspace.read":  sdk.Handle(ws.read),
		"workspace.list":  sdk.Handle(ws.list),
	}
}

func call(t *testing.T, dir, tool, args string) (string, error) {
	t.Helper()
	out, err := handlers(dir)[tool].Call(context.Background(), []byte(args))
	return strings.TrimSuffix(string(out), "\n"), err
}

func TestWorkspace(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escapedir")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "binary.bin"), []byte{0xff, 0xfe, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.txt"), make([]byte, MaxFileBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		tool, args, want, wantErr string
	}{
		{"workspace.write", `{"path": "notes/todo.txt", "content": "buy milk\n"}`, `{"bytes":9}`, ""},
		{"workspace.read", `{"path": "notes/todo.txt"}`, `{"content":"buy milk\n"}`, ""},
		{"workspace.write", `{"path": "notes/todo.txt", "content": "é"}`, `{"bytes":2}`, ""},
		{"workspace.read", `{"path": "./notes//todo.txt"}`, `{"content":"é"}`, ""},
		{"workspace.write", `{"path": "a/b/c/d.json", "content": ""}`, `{"bytes":0}`, ""},
		{"workspace.list", `{}`, `{"entries":[{"name":"a","size":0,"dir":true},{"name":"big.txt","size":1048577,"dir":false},` +
			`{"name":"binary.bin","size":3,"dir":false},{"name":"escape","size":0,"dir":false},{"name":"escapedir","size":0,"dir":false},` +
			`{"name":"notes","size":0,"dir":true}]}`, ""},
		{"workspace.list", `{"path": "notes"}`, `{"entries":[{"name":"todo.txt","size":2,"dir":false}]}`, ""},
		{"workspace.list", `{"path": "a/b/c/"}`, `{"entries":[{"name":"d.json","size":0,"dir":false}]}`, ""},
		// Errors.
		{"workspace.read", `{"path": "missing.txt"}`, "", `not_found: read "missing.txt": no such file or directory in the workspace`},
		{"workspace.read", `{"path": "notes"}`, "", `is_directory: path "notes" is a directory: use workspace.list`},
		{"workspace.read", `{"path": "big.txt"}`, "", `too_large: file "big.txt" is 1048577 bytes, over the limit of 1048576`},
		{"workspace.read", `{"path": "binary.bin"}`, "", `not_text: file "binary.bin" is not UTF-8 text`},
		{"workspace.read", `{"path": "escape"}`, "", `invalid_path: read "escape": the path leaves the workspace through a symbolic link`},
		{"workspace.read", `{"path": "escapedir/secret.txt"}`, "", `invalid_path`},
		{"workspace.list", `{"path": "escapedir"}`, "", `invalid_path`},
		{"workspace.write", `{"path": "escapedir/x.txt", "content": "x"}`, "", `invalid_path`},
		{"workspace.write", `{"path": "escape", "content": "overwritten"}`, "", `invalid_path`},
		{"workspace.read", `{"path": "../secret.txt"}`, "", `invalid_path: path "../secret.txt" contains ".."`},
		{"workspace.read", `{"path": "/etc/passwd"}`, "", `invalid_path: path "/etc/passwd" is absolute`},
		{"workspace.read", `{"path": ""}`, "", `invalid_path: path is empty`},
		{"workspace.list", `{"path": "/"}`, "", `invalid_path: path "/" is absolute`},
		{"workspace.list", `{"path": "notes/todo.txt"}`, "", `not_directory: path "notes/todo.txt" is a file`},
		{"workspace.list", `{"path": "nope"}`, "", `not_found: list "nope"`},
		{"workspace.write", `{"path": "notes", "content": "x"}`, "", `is_directory: path "notes" is a directory`},
		{"workspace.write", `{"path": ".", "content": "x"}`, "", `invalid_path: path "." is the workspace itself`},
		{"workspace.write", `{"path": "notes/todo.txt/x", "content": "x"}`, "", `io_error: create directory for "notes/todo.txt/x"`},
		{"workspace.write", `{"path": "x", "content": "x", "mode": 511}`, "", `invalid_input: arguments: unknown field "mode"`},
		{"workspace.write", `{"path": "x"}`, `{"bytes":0}`, ""},
	}
	for i, s := range steps {
		got, err := call(t, dir, s.tool, s.args)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Errorf("step %d %s %s: got %q, %v; want error containing %q", i, s.tool, s.args, got, err, s.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), dir) {
				t.Errorf("step %d: error %q reveals the host path", i, err)
			}
			continue
		}
		if err != nil || got != s.want {
			t.Errorf("step %d %s %s: got %q, %v; want %q", i, s.tool, s.args, got, err, s.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret.txt")); string(b) != "s3cret" {
		t.Errorf("the file outside the workspace changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(outside, "x.txt")); err == nil {
		t.Error("a write through a symlink landed outside the workspace")
	}
}

func TestWriteBound(t *testing.T) {
	dir := t.TempDir()
	ws := &workspace{dir: dir}
	if _, err := ws.write(context.Background(), WriteInput{Path: "f", Content: strings.Repeat("x", MaxFileBytes+1)}); err == nil ||
		!strings.Contains(err.Error(), "too_large: content is 1048577 bytes") {
		t.Fatalf("err = %v", err)
	}
	out, err := ws.write(context.Background(), WriteInput{Path: "f", Content: strings.Repeat("x", MaxFileBytes)})
	if err != nil || out.Bytes != MaxFileBytes {
		t.Fatalf("write of exactly the bound: %v, %v", out, err)
	}
	got, err := ws.read(context.Background(), ReadInput{Path: "f"})
	if err != nil || len(got.Content) != MaxFileBytes {
		t.Fatalf("read of exactly the bound: %d, %v", len(got.Content), err)
	}
}

func TestListBound(t *testing.T) {
	const limit = 50
	dir := t.TempDir()
	for i := range limit + 1 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ws := &workspace{dir: dir, maxEntries: limit}
	if _, err := ws.list(context.Background(), ListInput{}); err == nil || !strings.Contains(err.Error(), "too_many_entries: directory \".\" has more than 50 entries") {
		t.Fatalf("err = %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "f00000")); err != nil {
		t.Fatal(err)
	}
	out, err := ws.list(context.Background(), ListInput{})
	if err != nil || len(out.Entries) != limit || out.Entries[0].Name != "f00001" {
		t.Fatalf("list of exactly the bound: %d entries, %v", len(out.Entries), err)
	}
}

func TestNoWorkspace(t *testing.T) {
	ws := &workspace{dir: filepath.Join(t.TempDir(), "absent")}
	ctx := context.Background()
	_, err1 := ws.write(ctx, WriteInput{Path: "a", Content: "x"})
	_, err2 := ws.read(ctx, ReadInput{Path: "a"})
	_, err3 := ws.list(ctx, ListInput{})
	for _, err := range []error{err1, err2, err3} {
		if err == nil || !strings.Contains(err.Error(), "no_workspace: this tool needs a task workspace: begin a task") {
			t.Errorf("err = %v", err)
		}
	}
}

func TestEmptyList(t *testing.T) {
	ws := &workspace{dir: t.TempDir()}
	out, err := ws.list(context.Background(), ListInput{})
	if err != nil || !reflect.DeepEqual(out, ListOutput{Entries: []Entry{}}) {
		t.Fatalf("got %+v, %v", out, err)
	}
}
