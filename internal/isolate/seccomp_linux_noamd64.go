//go:build linux && !amd64

package isolate

// archDenied are the architecture-only syscalls the filter also refuses:
// none outside x86-64, which alone has the x86 legacy calls.
var archDenied []uintptr
