package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/tools/sdk"
)

// Bounds of the workspace tools.
const (
	// MaxFileBytes bounds what workspace.write writes and workspace.read reads.
	MaxFileBytes = 1 << 20
	// MaxEntries bounds the entries workspace.list returns.
	MaxEntries = 10_000
)

// workspace implements the tools over the directory dir (sdk.Workspace in
// the guest; a temporary directory in native tests).
type workspace struct {
	dir        string
	maxEntries int // 0 means MaxEntries
}

// WriteInput is the workspace.write arguments.
type WriteInput struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// WriteOutput is the workspace.write result.
type WriteOutput struct {
	Bytes int `json:"bytes"`
}

// ReadInput is the workspace.read arguments.
type ReadInput struct {
	Path string `json:"path"`
}

// ReadOutput is the workspace.read result.
type ReadOutput struct {
	Content string `json:"content"`
}

// ListInput is the workspace.list arguments; an empty Path lists the root.
type ListInput struct {
	Path string `json:"path,omitempty"`
}

// Entry is one directory entry. Size is 0 for anything but a regular file.
type Entry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Dir  bool   `json:"dir"`
}

// ListOutput is the workspace.list result.
type ListOutput struct {
	Entries []Entry `json:"entries"`
}

// open opens the workspace root and resolves rel to a name inside it.
func (w *workspace) open(rel string) (*os.Root, string, error) {
	p, err := sdk.WorkspacePath(rel)
	if err != nil {
		return nil, "", err
	}
	name := strings.TrimPrefix(strings.TrimPrefix(p, sdk.Workspace), "/")
	if name == "" {
		name = "."
	}
	root, err := os.OpenRoot(w.dir)
	if err != nil {
		return nil, "", sdk.Errorf("no_workspace", "this tool needs a task workspace: begin a task and pass its id with the call")
	}
	return root, name, nil
}

// fsError turns a filesystem error on rel into a tool error that says what
// to do, without host paths.
func fsError(op, rel string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sdk.Errorf("not_found", "%s %q: no such file or directory in the workspace: list the workspace to see what exists", op, rel)
	case errors.Is(err, syscall.EROFS) || (op != "read" && op != "list" && errors.Is(err, syscall.ENOSYS)):
		// wazero answers a write to a read-only mount with ENOSYS.
		return sdk.Errorf("read_only", "%s %q: the workspace is read-only for this tool", op, rel)
	case errors.Is(err, fs.ErrPermission):
		return sdk.Errorf("permission_denied", "%s %q: permission denied (the workspace may be read-only for this tool)", op, rel)
	case strings.Contains(err.Error(), "path escapes from parent"):
		return sdk.Errorf("invalid_path", "%s %q: the path leaves the workspace through a symbolic link", op, rel)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // drop the path: it may be a host path
	}
	return sdk.Errorf("io_error", "%s %q: %v", op, rel, err)
}

// write implements workspace.write: it creates or replaces the file at
// in.Path, creating parent directories.
func (w *workspace) write(_ context.Context, in WriteInput) (WriteOutput, error) {
	if len(in.Content) > MaxFileBytes {
		return WriteOutput{}, sdk.Errorf("too_large", "content is %d bytes, over the limit of %d: write it in several files", len(in.Content), MaxFileBytes)
	}
	root, name, err := w.open(in.Path)
	if err != nil {
		return WriteOutput{}, err
	}
	defer root.Close()
	if name == "." {
		return WriteOutput{}, sdk.Errorf("invalid_path", "path %q is the workspace itself: give a file name", in.Path)
	}
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return WriteOutput{}, fsError("create directory for", in.Path, err)
		}
	}
	if fi, err := root.Stat(name); err == nil && fi.IsDir() {
		return WriteOutput{}, sdk.Errorf("is_directory", "path %q is a directory: give a file name", in.Path)
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return WriteOutput{}, fsError("write", in.Path, err)
	}
	n, err := io.WriteString(f, in.Content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return WriteOutput{}, fsError("write", in.Path, err)
	}
	return WriteOutput{Bytes: n}, nil
}

// read implements workspace.read: the whole file, if it is UTF-8 text of
// at most MaxFileBytes.
func (w *workspace) read(_ context.Context, in ReadInput) (ReadOutput, error) {
	root, name, err := w.open(in.Path)
	if err != nil {
		return ReadOutput{}, err
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return ReadOutput{}, fsError("read", in.Path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ReadOutput{}, fsError("read", in.Path, err)
	}
	if fi.IsDir() {
		return ReadOutput{}, sdk.Errorf("is_directory", "path %q is a directory: use workspace.list to see its entries", in.Path)
	}
	if !fi.Mode().IsRegular() {
		return ReadOutput{}, sdk.Errorf("not_regular", "path %q is not a regular file", in.Path)
	}
	if fi.Size() > MaxFileBytes {
		return ReadOutput{}, sdk.Errorf("too_large", "file %q is %d bytes, over the limit of %d", in.Path, fi.Size(), MaxFileBytes)
	}
	// Read at most one byte past the bound: the file may grow after Stat.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return ReadOutput{}, fsError("read", in.Path, err)
	}
	if len(data) > MaxFileBytes {
		return ReadOutput{}, sdk.Errorf("too_large", "file %q is over the limit of %d bytes", in.Path, MaxFileBytes)
	}
	if !utf8.Valid(data) {
		return ReadOutput{}, sdk.Errorf("not_text", "file %q is not UTF-8 text: this tool reads text files only", in.Path)
	}
	return ReadOutput{Content: string(data)}, nil
}

// list implements workspace.list: the entries of a directory, sorted by name.
func (w *workspace) list(_ context.Context, in ListInput) (ListOutput, error) {
	rel := in.Path
	if rel == "" {
		rel = "."
	}
	root, name, err := w.open(rel)
	if err != nil {
		return ListOutput{}, err
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return ListOutput{}, fsError("list", rel, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return ListOutput{}, fsError("list", rel, err)
	} else if !fi.IsDir() {
		return ListOutput{}, sdk.Errorf("not_directory", "path %q is a file, not a directory: use workspace.read", rel)
	}
	limit := w.maxEntries
	if limit <= 0 {
		limit = MaxEntries
	}
	des, err := f.ReadDir(limit + 1)
	if err != nil && err != io.EOF {
		return ListOutput{}, fsError("list", rel, err)
	}
	if len(des) > limit {
		return ListOutput{}, sdk.Errorf("too_many_entries", "directory %q has more than %d entries: list a subdirectory", rel, limit)
	}
	out := ListOutput{Entries: make([]Entry, 0, len(des))}
	for _, de := range des {
		e := Entry{Name: de.Name(), Dir: de.IsDir()}
		// Only regular files have a size; a symbolic link's would be the
		// length of its target, which may be a host path.
		if de.Type().IsRegular() {
			if fi, err := de.Info(); err == nil {
				e.Size = fi.Size()
			}
		}
		out.Entries = append(out.Entries, e)
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].Name < out.Entries[j].Name })
	return out, nil
}
