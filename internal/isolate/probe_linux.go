package isolate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var (
	probeOnce   sync.Once
	probeReport Report
)

func probe() Report {
	probeOnce.Do(func() { probeReport = runProbe() })
	return copyReport(probeReport)
}

func copyReport(r Report) Report {
	out := Report{Available: map[Layer]bool{}, Missing: map[Layer]string{}}
	for k, v := range r.Available {
		out.Available[k] = v
	}
	for k, v := range r.Missing {
		out.Missing[k] = v
	}
	return out
}

// effectiveReport is Probe's report with SimulateMissing's layers applied.
func effectiveReport() Report {
	r := probe()
	testMu.Lock()
	defer testMu.Unlock()
	for l, why := range testMissing {
		r.Available[l] = false
		r.Missing[l] = why
	}
	return r
}

func runProbe() Report {
	r := Report{Available: map[Layer]bool{}, Missing: map[Layer]string{}}
	set := func(l Layer, why string) {
		if why == "" {
			r.Available[l] = true
			return
		}
		r.Missing[l] = why
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &lim); err != nil {
		set(LayerRlimits, "getrlimit: "+err.Error())
	} else {
		set(LayerRlimits, "")
	}
	_, why := landlockABI()
	set(LayerLandlock, why)
	// With a NULL program, a kernel that has seccomp filters answers
	// EFAULT; one without answers EINVAL. Nothing is installed.
	if _, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, 0); e == unix.EFAULT {
		set(LayerSeccomp, "")
	} else {
		set(LayerSeccomp, fmt.Sprintf("the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER): prctl answered %v", e))
	}
	if _, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err != nil {
		set(LayerNoNewPrivs, "PR_GET_NO_NEW_PRIVS: "+err.Error())
	} else {
		set(LayerNoNewPrivs, "")
	}
	if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, 0, 0, 0, 0); err != nil {
		set(LayerCaps, "PR_CAPBSET_READ: "+err.Error())
	} else if _, err := capLast(); err != nil {
		set(LayerCaps, err.Error())
	} else {
		set(LayerCaps, "")
	}
	for l, why := range probeNamespaces() {
		set(l, why)
	}
	return r
}

var nsLayers = []struct {
	l    Layer
	flag uintptr
}{
	{LayerPIDNS, syscall.CLONE_NEWPID}, {LayerMountNS, syscall.CLONE_NEWNS}, {LayerIPCNS, syscall.CLONE_NEWIPC},
	{LayerUTSNS, syscall.CLONE_NEWUTS}, {LayerNetNS, syscall.CLONE_NEWNET},
}

// probeNamespaces starts the probe child in every namespace at once; if
// that fails it tries them one by one to name the ones refused. The child
// checks what needs more than clone: private mounts, a tmpfs and a fresh
// /proc.
func probeNamespaces() map[Layer]string {
	out := map[Layer]string{}
	root := os.Geteuid() == 0
	var all uintptr = syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET
	stdout, err := startProbe(all, true, root)
	if err == nil {
		for _, l := range []Layer{LayerUserNS, LayerPIDNS, LayerMountNS, LayerIPCNS, LayerUTSNS, LayerNetNS} {
			out[l] = ""
		}
		sc := bufio.NewScanner(bytes.NewReader(stdout))
		for sc.Scan() {
			if l, why, ok := strings.Cut(sc.Text(), ": "); ok {
				out[Layer(l)] = why
			}
		}
		return out
	}
	_, uerr := startProbe(syscall.CLONE_NEWUSER, true, root)
	if uerr != nil {
		out[LayerUserNS] = "cannot create a user namespace: " + uerr.Error()
	} else {
		out[LayerUserNS] = ""
	}
	for _, ns := range nsLayers {
		flags, user := ns.flag, false
		if uerr == nil {
			flags |= syscall.CLONE_NEWUSER
			user = true
		}
		if _, err := startProbe(flags, user, root); err != nil {
			out[ns.l] = "cannot create the namespace: " + err.Error()
		} else {
			out[ns.l] = ""
		}
	}
	return out
}

func startProbe(flags uintptr, user, root bool) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   []string{"airlock-isolate-probe", probeArg},
		Env:    []string{},
		Stdout: &stdout, Stderr: &stderr,
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL},
		WaitDelay:   time.Second,
	}
	if user {
		setMappings(cmd.SysProcAttr, root)
	}
	if !initCalled {
		return nil, fmt.Errorf("isolate.Init was not called first in main")
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return nil, fmt.Errorf("the probe process did not finish in 10s")
	}
	return stdout.Bytes(), nil
}

// runProbeChild checks, inside the namespaces, the mount operations the
// init needs; it prints "layer: why" for each that fails.
func runProbeChild() int {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Printf("%s: cannot make mounts private in the new mount namespace: %v\n", LayerMountNS, err)
		return 0
	}
	if err := unix.Mount("tmpfs", staging, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=64k"); err != nil {
		fmt.Printf("%s: cannot mount a tmpfs in the new mount namespace: %v\n", LayerMountNS, err)
		return 0
	}
	p := staging + "/proc"
	if err := os.Mkdir(p, 0o755); err != nil {
		fmt.Printf("%s: %v\n", LayerMountNS, err)
		return 0
	}
	if err := unix.Mount("proc", p, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		fmt.Printf("%s: cannot mount a fresh /proc for the new PID namespace: %v\n", LayerPIDNS, err)
	}
	if err := unix.Sethostname([]byte(Hostname)); err != nil {
		fmt.Printf("%s: cannot set the host name: %v\n", LayerUTSNS, err)
	}
	if err := loopbackUp(); err != nil {
		fmt.Printf("%s: %v\n", LayerNetNS, err)
	}
	return 0
}
