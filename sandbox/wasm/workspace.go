package wasm

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	wsys "github.com/tetratelabs/wazero/sys"
)

// workspaceFS confines a guest to one host directory.
//
// wazero already refuses guest paths with ".." or a leading "/" (they are
// cleaned and checked with fs.ValidPath before they reach the FS), and its
// DirFS refuses symlinks to absolute targets. That is not enough: a guest
// could create a relative symlink such as x -> ../../etc, and the host
// kernel would follow it when the guest then opens x/passwd. So this FS
//   - refuses creating symlinks and hard links (EPERM), and
//   - refuses any path that goes through a symlink already present in the
//     workspace (put there by something on the host), checking every
//     component with lstat before delegating.
//
// The guest cannot create symlinks, so only a host-side process racing the
// check could swap a component for a symlink between the check and the use;
// the workspace belongs to the executor, which does not do that.
type workspaceFS struct {
	experimentalsys.FS
	root string // absolute, cleaned host directory
	q    *quota // nil: not bounded (read-only mounts)
	// owner, when set, gets every file and directory the guest creates.
	owner *Owner
}

// own gives a path the guest just created to w.owner. It fails closed: a
// file the executor could not hand over is removed, so that no entry is
// left that the owner's tools cannot use.
func (w *workspaceFS) own(p string) experimentalsys.Errno {
	if w.owner == nil {
		return 0
	}
	if err := os.Lchown(filepath.Join(w.root, filepath.FromSlash(p)), w.owner.UID, w.owner.GID); err != nil {
		return experimentalsys.EIO
	}
	return 0
}

var _ experimentalsys.FS = (*workspaceFS)(nil)

// newWorkspaceFS returns the confined FS of dir, read-only when readOnly.
func newWorkspaceFS(dir string, readOnly bool) experimentalsys.FS {
	inner := sysfs.DirFS(dir)
	if readOnly {
		inner = &sysfs.ReadFS{FS: inner}
	}
	return &workspaceFS{FS: inner, root: filepath.Clean(dir)}
}

// check refuses a guest path that is not a plain relative path, or that
// traverses a symlink. When final is true the last component must not be a
// symlink either (operations that follow it).
func (w *workspaceFS) check(p string, final bool) (string, experimentalsys.Errno) {
	// wazero hands some operations the path joined to the preopen or to an
	// open directory ("/name", "./name"): it is relative to the root all the
	// same, as DirFS joins it under the root. Cleaning it as an absolute
	// path cannot climb above the root.
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", experimentalsys.EPERM
		}
	}
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return ".", 0
	}
	if !fs.ValidPath(p) {
		return "", experimentalsys.EPERM
	}
	parts := strings.Split(p, "/")
	cur := w.root
	for i, part := range parts {
		if i == len(parts)-1 && !final {
			return p, 0
		}
		cur = cur + string(os.PathSeparator) + part
		fi, err := os.Lstat(cur)
		if err != nil {
			// A missing component: let the operation report ENOENT itself.
			return p, 0
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", experimentalsys.ELOOP
		}
	}
	return p, 0
}

// OpenFile implements experimentalsys.FS.
func (w *workspaceFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	p, e := w.check(p, true)
	if e != 0 {
		return nil, e
	}
	if flag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR|experimentalsys.O_CREAT|experimentalsys.O_TRUNC|experimentalsys.O_APPEND) == 0 {
		return w.FS.OpenFile(p, flag|experimentalsys.O_NOFOLLOW, perm)
	}
	if w.q != nil && flag&experimentalsys.O_CREAT != 0 && !exists(w.root, p) && !w.q.entry() {
		return nil, errQuota
	}
	f, e := w.FS.OpenFile(p, flag|experimentalsys.O_NOFOLLOW, perm)
	if e != 0 {
		return nil, e
	}
	if flag&experimentalsys.O_CREAT != 0 {
		if e := w.own(p); e != 0 {
			_ = f.Close()
			return nil, e
		}
	}
	if w.q == nil {
		return f, 0
	}
	return &quotaFile{File: f, q: w.q}, 0
}

// Lstat implements experimentalsys.FS.
func (w *workspaceFS) Lstat(p string) (wsys.Stat_t, experimentalsys.Errno) {
	p, e := w.check(p, false)
	if e != 0 {
		return wsys.Stat_t{}, e
	}
	return w.FS.Lstat(p)
}

// Stat implements experimentalsys.FS.
func (w *workspaceFS) Stat(p string) (wsys.Stat_t, experimentalsys.Errno) {
	p, e := w.check(p, true)
	if e != 0 {
		return wsys.Stat_t{}, e
	}
	return w.FS.Stat(p)
}

// Mkdir implements experimentalsys.FS.
func (w *workspaceFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	p, e := w.check(p, false)
	if e != 0 {
		return e
	}
	if w.q != nil && !w.q.entry() {
		return errQuota
	}
	if e := w.FS.Mkdir(p, perm); e != 0 {
		return e
	}
	return w.own(p)
}

// Chmod implements experimentalsys.FS.
func (w *workspaceFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	p, e := w.check(p, true)
	if e != 0 {
		return e
	}
	return w.FS.Chmod(p, perm)
}

// Rename implements experimentalsys.FS.
func (w *workspaceFS) Rename(from, to string) experimentalsys.Errno {
	from, e := w.check(from, false)
	if e != 0 {
		return e
	}
	to, e = w.check(to, false)
	if e != 0 {
		return e
	}
	return w.FS.Rename(from, to)
}

// Rmdir implements experimentalsys.FS.
func (w *workspaceFS) Rmdir(p string) experimentalsys.Errno {
	p, e := w.check(p, false)
	if e != 0 {
		return e
	}
	return w.FS.Rmdir(p)
}

// Unlink implements experimentalsys.FS.
func (w *workspaceFS) Unlink(p string) experimentalsys.Errno {
	p, e := w.check(p, false)
	if e != 0 {
		return e
	}
	return w.FS.Unlink(p)
}

// Link implements experimentalsys.FS: hard links are refused.
func (w *workspaceFS) Link(string, string) experimentalsys.Errno {
	return experimentalsys.EPERM
}

// Symlink implements experimentalsys.FS: symlinks are refused, so a guest
// cannot point a name in its workspace at anything outside it.
func (w *workspaceFS) Symlink(string, string) experimentalsys.Errno {
	return experimentalsys.EPERM
}

// Readlink implements experimentalsys.FS.
func (w *workspaceFS) Readlink(p string) (string, experimentalsys.Errno) {
	p, e := w.check(p, false)
	if e != 0 {
		return "", e
	}
	return w.FS.Readlink(p)
}

// Utimens implements experimentalsys.FS.
func (w *workspaceFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	p, e := w.check(p, true)
	if e != 0 {
		return e
	}
	return w.FS.Utimens(p, atim, mtim)
}
