package wasm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// maxModuleSize bounds how much of a module file is read.
const maxModuleSize = 256 << 20

// fingerprint identifies one version of a file cheaply, without reading it:
// a rewrite changes the size, mtime, ctime or inode (ctime cannot be set
// back by a user, so restoring the mtime does not hide an edit).
type fingerprint struct {
	size  int64
	mtime time.Time
	ctime int64
	ino   uint64
	dev   uint64
}

func fingerprintOf(fi os.FileInfo) fingerprint {
	f := fingerprint{size: fi.Size(), mtime: fi.ModTime()}
	f.ino, f.dev, f.ctime = statIDs(fi)
	return f
}

// readModule reads path (bounded) and returns its bytes, hex SHA-256 and the
// fingerprint of the file that was read.
func readModule(path string) ([]byte, string, fingerprint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fingerprint{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", fingerprint{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, "", fingerprint{}, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxModuleSize {
		return nil, "", fingerprint{}, fmt.Errorf("%s is %d bytes, more than the %d allowed", path, fi.Size(), maxModuleSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxModuleSize+1))
	if err != nil {
		return nil, "", fingerprint{}, err
	}
	if len(b) > maxModuleSize {
		return nil, "", fingerprint{}, fmt.Errorf("%s grew past %d bytes while it was read", path, maxModuleSize)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), fingerprintOf(fi), nil
}

// pin re-verifies a module file against its pinned digest whenever the file
// changes on disk. The compiled code is only used while the file on disk
// still has the pinned digest: a swapped module is refused until restored.
type pin struct {
	path string
	want string

	mu   sync.Mutex
	last fingerprint // of the last version checked
	ok   bool        // whether that version matched
	got  string      // its digest
	err  error       // why it could not be read, if it could not
}

// check returns nil when the file on disk is the pinned module.
func (p *pin) check() error {
	fi, err := os.Stat(p.path)
	if err != nil {
		return fmt.Errorf("module %s cannot be read since it was loaded: restore it or update the manifest: %w", p.path, err)
	}
	fp := fingerprintOf(fi)
	p.mu.Lock()
	defer p.mu.Unlock()
	if fp != p.last {
		_, got, readFP, err := readModule(p.path)
		if err != nil {
			p.last, p.ok, p.got, p.err = fingerprint{}, false, "", err
		} else {
			// Remember the version actually hashed: if it changed again
			// between stat and read, the next call hashes it again.
			p.last, p.ok, p.got, p.err = readFP, got == p.want, got, nil
		}
	}
	if p.err != nil {
		return fmt.Errorf("module %s cannot be read since it was loaded: restore it or update the manifest: %w", p.path, p.err)
	}
	if !p.ok {
		return fmt.Errorf("module %s changed on disk since it was loaded (sha256 %s, manifest pins %s): restore it or update the manifest pin", p.path, p.got, p.want)
	}
	return nil
}
