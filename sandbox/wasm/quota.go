package wasm

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// errQuota is what the guest gets past the quota. WASI preview1 as wazero
// exposes it has no ENOSPC, so the guest sees EIO; the bound is documented
// for tool authors.
const errQuota = experimentalsys.EIO

// quota is what a task's workspace may still take during one call: bytes
// and entries (files and directories). Writes past it fail (EIO) in
// the guest, so a tool cannot fill the disk that holds the store.
// Overwrites are charged as new bytes: the bound errs on the safe side.
type quota struct {
	bytes atomic.Int64
	files atomic.Int64
}

// newQuota measures the workspace and returns what is left of the limits.
// The walk stops as soon as a limit is reached, so it costs at most
// maxFiles entries.
func newQuota(dir string, maxBytes, maxFiles int64) *quota {
	var used, entries int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		entries++
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			used += fi.Size()
		}
		if entries >= maxFiles || used >= maxBytes {
			return filepath.SkipAll
		}
		return nil
	})
	q := &quota{}
	q.bytes.Store(maxBytes - used)
	q.files.Store(maxFiles - entries)
	return q
}

// take charges n bytes; false when they do not fit.
func (q *quota) take(n int64) bool {
	if n <= 0 {
		return true
	}
	if q.bytes.Add(-n) < 0 {
		q.bytes.Add(n)
		return false
	}
	return true
}

// entry charges one new file or directory; false when it does not fit.
func (q *quota) entry() bool {
	if q.files.Add(-1) < 0 {
		q.files.Add(1)
		return false
	}
	return true
}

// quotaFile charges the writes of an open workspace file.
type quotaFile struct {
	experimentalsys.File
	q *quota
}

func (f *quotaFile) Write(buf []byte) (int, experimentalsys.Errno) {
	if !f.q.take(int64(len(buf))) {
		return 0, errQuota
	}
	return f.File.Write(buf)
}

func (f *quotaFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if !f.q.take(int64(len(buf))) {
		return 0, errQuota
	}
	return f.File.Pwrite(buf, off)
}

func (f *quotaFile) Truncate(size int64) experimentalsys.Errno {
	st, e := f.File.Stat()
	if e != 0 {
		return e
	}
	if !f.q.take(size - st.Size) {
		return errQuota
	}
	return f.File.Truncate(size)
}

// exists reports whether a workspace path exists (without following a
// final symlink).
func exists(root, p string) bool {
	_, err := os.Lstat(filepath.Join(root, filepath.FromSlash(p)))
	return err == nil
}
