//go:build !linux

package wasm

import "os"

// statIDs returns zeros where the platform's stat is not read: size and
// mtime still detect ordinary rewrites.
func statIDs(os.FileInfo) (ino, dev uint64, ctime int64) { return 0, 0, 0 }
