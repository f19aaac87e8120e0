package wasm

import (
	"os"
	"syscall"
)

// statIDs returns the inode, device and ctime (ns) of a file.
func statIDs(fi os.FileInfo) (ino, dev uint64, ctime int64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0
	}
	return st.Ino, st.Dev, st.Ctim.Sec*1e9 + st.Ctim.Nsec
}
