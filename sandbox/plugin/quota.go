package plugin

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"
)

// The WASM backend refuses a write past a task's workspace quota inside the
// guest; a native plugin writes through the kernel, which knows no such
// quota (RLIMIT_FSIZE bounds each file, not their number). So the backend
// measures the workspace while a call runs and after it, and stops a
// plugin that filled it past the bounds.

// workspaceUsage returns the bytes of the regular files and the number of
// entries under dir, counting at most limit+1 entries (it stops there).
func workspaceUsage(dir string, limit int64) (bytes, entries int64, err error) {
	stop := fmt.Errorf("enough")
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
		if werr != nil {
			if p == dir {
				return werr
			}
			return nil // gone while walking: not counted
		}
		if p == dir {
			return nil
		}
		entries++
		if d.Type().IsRegular() {
			if fi, ierr := d.Info(); ierr == nil {
				bytes += fi.Size()
			}
		}
		if entries > limit {
			return stop
		}
		return nil
	})
	if err == stop {
		err = nil
	}
	return bytes, entries, err
}

// overQuota says how the workspace at dir breaks the backend's bounds, or
// "" when it does not.
func (t *tool) overQuota(dir string) string {
	cfg := t.b.cfg
	bytes, entries, err := workspaceUsage(dir, cfg.WorkspaceMaxFiles)
	if err != nil {
		return ""
	}
	if bytes > cfg.WorkspaceQuota || entries > cfg.WorkspaceMaxFiles {
		return fmt.Sprintf("the plugin filled the task's workspace past its quota (%d bytes in %d entries, at most %d bytes and %d entries) and was stopped: "+
			"what it wrote stays until the task ends; end the task or remove files to free it", bytes, entries, cfg.WorkspaceQuota, cfg.WorkspaceMaxFiles)
	}
	return ""
}

// watchWorkspace measures dir every WorkspaceCheck until ctx ends and calls
// over (once) with the reason when it breaks the bounds. The returned
// function stops the watch and waits for it.
func (t *tool) watchWorkspace(ctx context.Context, dir string, over func(msg string)) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(t.b.cfg.WorkspaceCheck)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if msg := t.overQuota(dir); msg != "" {
				over(msg)
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}
