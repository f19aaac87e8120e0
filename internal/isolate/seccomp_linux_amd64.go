package isolate

import "golang.org/x/sys/unix"

// archDenied are the x86-64-only syscalls the filter also refuses:
// modify_ldt (a classic exploit primitive), port I/O and obsolete calls.
var archDenied = []uintptr{
	unix.SYS_MODIFY_LDT, unix.SYS_IOPL, unix.SYS_IOPERM,
	unix.SYS_USELIB, unix.SYS_USTAT, unix.SYS_SYSFS, unix.SYS__SYSCTL,
}
