package isolate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PluginDir is where the init puts the verified copy of the plugin binary
// inside the sandbox.
const PluginDir = "/run/airlock/plugin"

// staging is the host path, in the init's private mount namespace only,
// on which the new root is built before pivot_root.
const staging = "/tmp"

func initMain() {
	if len(os.Args) < 2 {
		initCalled = true
		return
	}
	switch os.Args[1] {
	case initArg:
		// Every step below is per thread (credentials, capabilities,
		// no_new_privs, landlock, seccomp) and carries over execve only
		// from the thread that calls it: stay on one.
		runtime.LockOSThread()
		err := runInit()
		fmt.Fprintf(os.Stderr, "airlock isolate: %v\n", err)
		os.Exit(ExitInitFailed)
	case probeArg:
		runtime.LockOSThread()
		os.Exit(runProbeChild())
	}
	initCalled = true
}

func runInit() error {
	var s initSpec
	sf := os.NewFile(fdSpec, "spec")
	raw, err := io.ReadAll(io.LimitReader(sf, MaxSpecBytes+1))
	_ = sf.Close()
	if err != nil || len(raw) > MaxSpecBytes {
		return fmt.Errorf("read the spec: %v (%d bytes)", err, len(raw))
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("decode the spec: %w", err)
	}
	unix.CloseOnExec(fdBinary)
	unix.CloseOnExec(fdLifeline)
	unix.Umask(0o022)
	lastCap, err := capLast()
	if err != nil {
		return err
	}

	if !s.Skip[LayerUTSNS] {
		if err := unix.Sethostname([]byte(Hostname)); err != nil {
			return fmt.Errorf("set the host name: %w", err)
		}
	}
	exe := "/proc/self/fd/" + strconv.Itoa(fdBinary)
	if !s.Skip[LayerMountNS] {
		if err := buildRoot(&s); err != nil {
			return err
		}
		exe = PluginDir + "/" + s.Name
	} else if err := verifyFD(&s); err != nil {
		return err
	}
	if !s.Skip[LayerNetNS] {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	// go-plugin hands the executor's own stdin to the plugin (a terminal,
	// a socket from the service manager): the plugin reads /dev/null.
	if err := nullStdin(); err != nil {
		return err
	}
	if s.DropTo != 0 {
		// Root's supplementary groups would otherwise stay with the plugin.
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
			return fmt.Errorf("drop supplementary groups: %w", e)
		}
	}
	if !s.Skip[LayerCaps] {
		if err := dropBounding(lastCap); err != nil {
			return err
		}
	}
	if s.DropTo != 0 {
		id := uintptr(s.DropTo)
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, id, id, id); e != 0 {
			return fmt.Errorf("setresgid %d: %w", s.DropTo, e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, id, id, id); e != 0 {
			return fmt.Errorf("setresuid %d: %w", s.DropTo, e)
		}
	}
	// A change of uid clears the parent-death signal: set it again, then
	// make sure the executor did not die in between.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set the parent-death signal: %w", err)
	}
	fds := []unix.PollFd{{Fd: fdLifeline, Events: unix.POLLIN}}
	if n, _ := unix.Poll(fds, 0); n > 0 {
		return errors.New("the executor exited before the plugin started")
	}
	_ = unix.Close(fdLifeline)
	if !s.Skip[LayerNoNewPrivs] {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if !s.Skip[LayerLandlock] {
		if err := restrictLandlock(&s); err != nil {
			return err
		}
	}
	if !s.Skip[LayerCaps] {
		if err := clearCaps(); err != nil {
			return err
		}
	}
	if !s.Skip[LayerSeccomp] {
		if err := installSeccomp(); err != nil {
			return err
		}
	}
	// A descriptor the executor (or a library in it) opened without
	// O_CLOEXEC was inherited through clone: none but stdio reaches the
	// plugin.
	if err := closeInherited(); err != nil {
		return err
	}
	argv := append([]string{exe}, s.Args...)
	return execLimited(exe, argv, os.Environ(), s.Limits, !s.Skip[LayerRlimits], s.Name)
}

// execLimited sets the plugin's rlimits and execs it without allocating in
// between. The limits come last because they are the plugin's, and the init
// is a Go program: under a small address space its runtime (the garbage
// collector, on other threads) dies when a mapping fails (seen: SIGSEGV in
// the GC under RLIMIT_AS between setrlimit and execve). So the exec's
// arguments are built first, the collector is switched off, and the
// limits and the exec are raw system calls.
func execLimited(exe string, argv, env []string, l Limits, limit bool, name string) error {
	exep, err := syscall.BytePtrFromString(exe)
	if err != nil {
		return fmt.Errorf("exec the plugin %s: %w", name, err)
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return fmt.Errorf("exec the plugin %s: %w", name, err)
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return fmt.Errorf("exec the plugin %s: %w", name, err)
	}
	limits := rlimits(l)
	debug.SetGCPercent(-1)
	if limit {
		for i := range limits {
			r := &limits[i]
			if _, _, e := unix.RawSyscall6(unix.SYS_PRLIMIT64, 0, uintptr(r.res), uintptr(unsafe.Pointer(&r.v)), 0, 0, 0); e != 0 {
				debug.SetGCPercent(100)
				return fmt.Errorf("set %s to %d: %w", r.name, r.v.Cur, e)
			}
		}
	}
	_, _, e := unix.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(exep)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])))
	runtime.KeepAlive(exep)
	runtime.KeepAlive(argvp)
	runtime.KeepAlive(envp)
	return fmt.Errorf("exec the plugin %s: %w", name, e)
}

type rlimit struct {
	name string
	res  int
	v    unix.Rlimit
}

// rlimits are the plugin's resource limits, soft = hard.
func rlimits(l Limits) []rlimit {
	cpu := uint64((l.CPUTime + 999_999_999) / 1_000_000_000)
	out := []rlimit{
		{"RLIMIT_AS", unix.RLIMIT_AS, unix.Rlimit{}},
		{"RLIMIT_FSIZE", unix.RLIMIT_FSIZE, unix.Rlimit{}},
		{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, unix.Rlimit{}},
		{"RLIMIT_NPROC", unix.RLIMIT_NPROC, unix.Rlimit{}},
		// Soft = hard: the kernel sends SIGKILL at the hard limit, which a
		// Go program (that ignores SIGXCPU) or PID 1 cannot ignore.
		{"RLIMIT_CPU", unix.RLIMIT_CPU, unix.Rlimit{}},
		{"RLIMIT_CORE", unix.RLIMIT_CORE, unix.Rlimit{}},
	}
	for i, v := range []uint64{uint64(l.AddressSpace), uint64(l.FileSize), uint64(l.OpenFiles), uint64(l.Processes), cpu, 0} {
		out[i].v = unix.Rlimit{Cur: v, Max: v}
	}
	return out
}

// nullStdin replaces descriptor 0 with /dev/null.
func nullStdin() error {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null for the plugin's stdin: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Dup3(fd, 0, 0); err != nil {
		return fmt.Errorf("replace the plugin's stdin with /dev/null: %w", err)
	}
	return nil
}

// closeInherited marks every descriptor above stderr close-on-exec
// (close_range, Linux 5.11; else one by one from /proc/self/fd).
func closeInherited() error {
	// CLOSE_RANGE_CLOEXEC, from linux/close_range.h (not in x/sys/unix).
	const closeRangeCloexec = 1 << 2
	err := unix.CloseRange(3, ^uint(0), closeRangeCloexec)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("close inherited descriptors: %w", err)
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("close inherited descriptors: %w", err)
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	if err != nil {
		return fmt.Errorf("close inherited descriptors: %w", err)
	}
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// capLast reads the highest capability number of this kernel.
func capLast() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("cap_last_cap %q is not a capability number", b)
	}
	return n, nil
}

// copyVerified copies the binary from fdBinary to dst while hashing it:
// the executable the plugin runs is this copy, in the sandbox's private
// root, so a change of the host file after Command checked it cannot reach
// the plugin.
func copyVerified(s *initSpec, dst string) error {
	src := os.NewFile(fdBinary, "binary")
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind the binary: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o500)
	if err != nil {
		return fmt.Errorf("copy the binary: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(src, MaxBinaryBytes+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy the binary: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 || n != s.Size {
		return fmt.Errorf("plugin binary %s changed after it was checked (sha256 %s, pinned %s): refused", s.Name, got, s.SHA256)
	}
	return os.Chmod(dst, 0o555)
}

// verifyFD checks the binary descriptor when there is no private root to
// copy it into; it is executed through /proc/self/fd.
func verifyFD(s *initSpec) error {
	src := os.NewFile(fdBinary, "binary")
	h := sha256.New()
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind the binary: %w", err)
	}
	if _, err := io.Copy(h, io.LimitReader(src, MaxBinaryBytes+1)); err != nil {
		return fmt.Errorf("hash the binary: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		return fmt.Errorf("plugin binary %s changed after it was checked (sha256 %s, pinned %s): refused", s.Name, got, s.SHA256)
	}
	return nil
}

// systemDirs are shown read-only; a symbolic link (merged /usr) is
// recreated as the same link.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// etcEntries are the only parts of the host's /etc the plugin sees: what
// programs need to link and to verify TLS. Not passwd, shadow, hosts,
// resolv.conf (there is no network) nor anything of the executor.
var etcEntries = []string{"/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime"}

// devices are bound from the host's /dev.
var devices = []string{"null", "zero", "full", "random", "urandom"}

func mountErr(what string, err error) error {
	return fmt.Errorf("mount %s: %w", what, err)
}

// buildRoot builds the new root on a tmpfs and pivots into it.
func buildRoot(s *initSpec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return mountErr("/ private", err)
	}
	// The workspace and socket directory are opened before anything is
	// mounted over their path (a t.TempDir() lies under /tmp).
	srcs := map[string]int{}
	for _, d := range []string{s.Workspace, s.SocketDir} {
		if d == "" {
			continue
		}
		fd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", d, err)
		}
		srcs[d] = fd
	}
	fdPath := func(d string) string { return "/proc/self/fd/" + strconv.Itoa(srcs[d]) }

	r := staging
	rootSize := s.Size + 4<<20
	if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,nr_inodes=4096,mode=0755", rootSize)); err != nil {
		return mountErr("the new root (tmpfs)", err)
	}
	for _, d := range []string{"etc", "proc", "dev", "tmp", "workspace", strings.TrimPrefix(PluginDir, "/")} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			return err
		}
	}
	for _, p := range systemDirs {
		if err := bindHost(r, p, true); err != nil {
			return err
		}
	}
	for _, p := range etcEntries {
		if err := bindHost(r, p, false); err != nil {
			return err
		}
	}
	uid := s.DropTo
	files := map[string]string{
		"etc/passwd": fmt.Sprintf("root:x:0:0:root:/:/usr/sbin/nologin\nplugin:x:%d:%d:airlock plugin:/workspace:/usr/sbin/nologin\n", uid, uid),
		"etc/group":  fmt.Sprintf("root:x:0:\nplugin:x:%d:\n", uid),
		"etc/hosts":  "127.0.0.1 localhost " + Hostname + "\n::1 localhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if !s.Skip[LayerPIDNS] {
		// A fresh /proc of the new PID namespace: the plugin sees its own
		// processes only. Without a PID namespace it gets no /proc at all.
		if err := unix.Mount("proc", filepath.Join(r, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return mountErr("/proc", err)
		}
	}
	dev := filepath.Join(r, "dev")
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755"); err != nil {
		return mountErr("/dev", err)
	}
	for _, d := range devices {
		t := filepath.Join(dev, d)
		if err := os.WriteFile(t, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, t, "", unix.MS_BIND, ""); err != nil {
			return mountErr("/dev/"+d, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	if err := setattr(dev, false, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC); err != nil {
		return mountErr("/dev read-only", err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(r, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("size=%d,nr_inodes=8192,mode=01777", TmpSize)); err != nil {
		return mountErr("/tmp", err)
	}
	rw := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC)
	if s.Workspace != "" {
		t := filepath.Join(r, "workspace")
		if err := unix.Mount(fdPath(s.Workspace), t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return mountErr("/workspace", err)
		}
		if err := setattr(t, true, rw); err != nil {
			return mountErr("/workspace flags", err)
		}
	}
	if s.SocketDir != "" {
		t := filepath.Join(r, s.SocketDir)
		if err := os.MkdirAll(t, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(fdPath(s.SocketDir), t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return mountErr(s.SocketDir, err)
		}
		if err := setattr(t, true, rw); err != nil {
			return mountErr(s.SocketDir+" flags", err)
		}
	}
	for _, fd := range srcs {
		_ = unix.Close(fd)
	}
	if err := copyVerified(s, filepath.Join(r, PluginDir, s.Name)); err != nil {
		return err
	}

	if err := unix.Chdir(r); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := setattr("/", false, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return mountErr("/ read-only", err)
	}
	return nil
}

// bindHost shows host path p read-only at the same place under r; a
// missing p is skipped, a symbolic link is recreated.
func bindHost(r, p string, dirOnly bool) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	t := filepath.Join(r, p)
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return os.Symlink(target, t)
	}
	switch {
	case fi.IsDir():
		if err := os.MkdirAll(t, 0o755); err != nil {
			return err
		}
	case dirOnly || !fi.Mode().IsRegular():
		return nil
	default:
		if err := os.WriteFile(t, nil, 0o444); err != nil {
			return err
		}
	}
	if err := unix.Mount(p, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return mountErr(p, err)
	}
	if err := setattr(t, true, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return mountErr(p+" read-only", err)
	}
	return nil
}

// setattr adds mount flags (never clears one), recursively if asked.
func setattr(path string, recursive bool, set uint64) error {
	var flags uint
	if recursive {
		flags = unix.AT_RECURSIVE
	}
	return unix.MountSetattr(unix.AT_FDCWD, path, flags, &unix.MountAttr{Attr_set: set})
}

// loopbackUp brings up lo in the new network namespace, which has nothing
// else: loopback inside reaches only the plugin itself.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("read lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// Secure bits: root gains no capability by exec or uid change, locked.
const (
	secbitNoroot                         = 1 << 0
	secbitNorootLocked                   = 1 << 1
	secbitNoSetuidFixup                  = 1 << 2
	secbitNoSetuidFixupLocked            = 1 << 3
	secbitKeepCapsLocked                 = 1 << 5
	secbitNoCapAmbientRaise              = 1 << 6
	secbitNoCapAmbientRaiseLocked        = 1 << 7
	secureBits                           = secbitNoroot | secbitNorootLocked | secbitNoSetuidFixup | secbitNoSetuidFixupLocked | secbitKeepCapsLocked | secbitNoCapAmbientRaise | secbitNoCapAmbientRaiseLocked
	linuxCapabilityVersion3       uint32 = 0x20080522
)

// dropBounding empties the bounding and ambient sets and locks the secure
// bits, while the init still has CAP_SETPCAP.
func dropBounding(last int) error {
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, secureBits, 0, 0, 0); err != nil {
		return fmt.Errorf("set the secure bits: %w", err)
	}
	return nil
}

// clearCaps empties the effective, permitted and inheritable sets.
func clearCaps() error {
	hdr := unix.CapUserHeader{Version: linuxCapabilityVersion3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear the capabilities: %w", err)
	}
	return nil
}
