package isolate

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// landlockABI returns the kernel's landlock ABI version (0 with the reason
// when landlock is unavailable).
func landlockABI() (int, string) {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch {
	case e == unix.ENOSYS:
		return 0, "the kernel has no landlock (CONFIG_SECURITY_LANDLOCK)"
	case e == unix.EOPNOTSUPP:
		return 0, "landlock is disabled at boot: add landlock to the lsm= kernel parameter"
	case e != 0:
		return 0, "landlock_create_ruleset: " + e.Error()
	case int(v) < 1:
		return 0, fmt.Sprintf("landlock ABI %d", v)
	}
	return int(v), ""
}

// Landlock access rights by ABI version.
const (
	llRead  = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llExec  = unix.LANDLOCK_ACCESS_FS_EXECUTE
	llWrite = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	// llV1 is every right of ABI 1 (MAKE_CHAR and MAKE_BLOCK are handled
	// and never granted).
	llV1 = llRead | llExec | llWrite | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK
)

// llRulesetAttr is struct landlock_ruleset_attr up to the scoped field.
type llRulesetAttr struct {
	fs, net, scoped uint64
}

type llPathBeneath struct {
	allowed uint64
	fd      int32
}

// restrictLandlock confines the calling thread (and what it execs) to the
// sandbox's tree: read and execute on the system directories and the
// plugin copy, read on /proc, read and write on /dev's devices, read and
// write (no execute) on /tmp, /workspace and the socket directory, nothing
// elsewhere. From ABI 4 TCP bind and connect are refused, from ABI 6
// abstract unix sockets and signals outside the sandbox.
func restrictLandlock(s *initSpec) error {
	abi, why := landlockABI()
	if abi == 0 {
		return errors.New(why)
	}
	fs := uint64(llV1)
	extraRW := uint64(0)
	if abi >= 2 {
		fs |= unix.LANDLOCK_ACCESS_FS_REFER
		extraRW |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		fs |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
		extraRW |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		fs |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	attr := llRulesetAttr{fs: fs}
	size := unsafe.Sizeof(attr.fs)
	if abi >= 4 {
		attr.net = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
		size = unsafe.Offsetof(attr.scoped)
	}
	if abi >= 6 {
		attr.scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
		size = unsafe.Sizeof(attr)
	}
	rfd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if e != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	defer unix.Close(int(rfd))

	rx := uint64(llRead | llExec)
	rw := uint64(llRead|llWrite) | extraRW
	var rules []struct {
		path   string
		access uint64
	}
	add := func(p string, a uint64) {
		rules = append(rules, struct {
			path   string
			access uint64
		}{p, a})
	}
	for _, p := range systemDirs {
		add(p, rx)
	}
	for _, p := range etcEntries {
		add(p, llRead)
	}
	if s.Skip[LayerMountNS] {
		// No private root: only the host paths granted below, and the
		// binary itself (run through /proc/self/fd).
		add("/proc", llRead)
		for _, d := range devices {
			add("/dev/"+d, unix.LANDLOCK_ACCESS_FS_READ_FILE|unix.LANDLOCK_ACCESS_FS_WRITE_FILE)
		}
	} else {
		add("/etc", llRead)
		add(PluginDir, rx)
		add("/proc", llRead)
		add("/dev", llRead|unix.LANDLOCK_ACCESS_FS_WRITE_FILE)
		add("/tmp", rw)
		if s.Workspace != "" {
			add("/workspace", rw)
		}
	}
	if s.Skip[LayerMountNS] && s.Workspace != "" {
		add(s.Workspace, rw)
	}
	if s.SocketDir != "" {
		add(s.SocketDir, rw)
	}
	for _, r := range rules {
		fd, err := unix.Open(r.path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("landlock: open %s: %w", r.path, err)
		}
		access := r.access
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// A file takes file rights only.
			access &= unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_TRUNCATE
		}
		pb := llPathBeneath{allowed: access & fs, fd: int32(fd)}
		_, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, rfd, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&pb)), 0, 0, 0)
		_ = unix.Close(fd)
		if e != 0 {
			return fmt.Errorf("landlock: add rule for %s: %w", r.path, e)
		}
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, rfd, 0, 0); e != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", e)
	}
	return nil
}
