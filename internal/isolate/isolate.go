// Package isolate starts native plugin processes under OS isolation
// (ARCHITECTURE.md 3.5, threat model 5): new user, PID, mount, IPC, UTS and
// network namespaces, a new root that shows only the system's read-only
// program directories, the task workspace and a socket directory, a private
// /tmp, a fresh /proc, rlimits, landlock, no_new_privs, no capabilities and a
// seccomp filter.
//
// Command returns an *exec.Cmd that runs this very executable
// (/proc/self/exe) with a hidden argument: Init, called first in main,
// recognises it, builds the sandbox from inside the new namespaces and
// replaces itself with the plugin binary, which then runs as PID 1 of its
// PID namespace. The binary is copied into the sandbox's private root while
// its SHA-256 is checked against the pin, so the bytes that run are the
// bytes that were checked.
//
// A layer the kernel refuses (see Probe) makes Command fail with an error
// that names the layer, unless the operator accepted running without it
// (Spec.Accept, `airlock serve --plugin-accept-missing LAYER`).
package isolate

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Layer is one isolation layer.
type Layer string

// The isolation layers.
const (
	LayerUserNS     Layer = "userns"
	LayerPIDNS      Layer = "pidns"
	LayerMountNS    Layer = "mountns"
	LayerIPCNS      Layer = "ipcns"
	LayerUTSNS      Layer = "utsns"
	LayerNetNS      Layer = "netns"
	LayerRlimits    Layer = "rlimits"
	LayerLandlock   Layer = "landlock"
	LayerSeccomp    Layer = "seccomp"
	LayerNoNewPrivs Layer = "nonewprivs"
	LayerCaps       Layer = "caps"
)

// Layers lists every layer, in the order Probe checks them.
var Layers = []Layer{LayerUserNS, LayerPIDNS, LayerMountNS, LayerIPCNS, LayerUTSNS, LayerNetNS,
	LayerRlimits, LayerLandlock, LayerSeccomp, LayerNoNewPrivs, LayerCaps}

// ParseLayer checks an operator-given layer name.
func ParseLayer(s string) (Layer, error) {
	for _, l := range Layers {
		if string(l) == s {
			return l, nil
		}
	}
	names := make([]string, len(Layers))
	for i, l := range Layers {
		names[i] = string(l)
	}
	return "", fmt.Errorf("isolation layer %q does not exist: use one of %s", s, strings.Join(names, ", "))
}

// Limits are the rlimits of a plugin process; a zero field means the
// package default (Default* constants).
type Limits struct {
	// AddressSpace is RLIMIT_AS in bytes. Go programs reserve a lot of
	// virtual memory up front: keep it at 1 GiB or more for them.
	AddressSpace int64
	// FileSize is RLIMIT_FSIZE in bytes: the largest file it may write.
	FileSize int64
	// OpenFiles is RLIMIT_NOFILE.
	OpenFiles int
	// Processes is RLIMIT_NPROC, counted in threads (a Go program uses 5
	// to 10 threads by itself).
	Processes int
	// CPUTime is RLIMIT_CPU, rounded up to whole seconds; the process is
	// killed (SIGKILL) when it has used that much CPU time.
	CPUTime time.Duration
}

// Defaults of Limits.
const (
	DefaultAddressSpace = 4 << 30
	DefaultFileSize     = 64 << 20
	DefaultOpenFiles    = 256
	DefaultProcesses    = 64
	DefaultCPUTime      = 60 * time.Second
	// TmpSize bounds the private /tmp of a plugin (a tmpfs).
	TmpSize = 64 << 20
	// MaxBinaryBytes bounds a plugin binary.
	MaxBinaryBytes = 512 << 20
	// MaxSpecBytes bounds the arguments and environment of a plugin once
	// encoded (they travel to the init through a pipe).
	MaxSpecBytes = 48 << 10
	// Hostname is the host name a plugin sees.
	Hostname = "airlock-plugin"
	// SandboxUser is the host uid and gid the plugin runs as when the
	// executor runs as root; otherwise it runs as the executor's own uid.
	SandboxUser = 65534
)

// Spec describes one plugin process.
type Spec struct {
	// Binary is the absolute path of the plugin executable.
	Binary string
	// SHA256 is the pinned lower-case hex digest of Binary (required).
	SHA256 string
	// Args are the plugin's arguments after argv[0].
	Args []string
	// Env is the plugin's whole environment ("K=V"); nothing of the host's
	// is added. go-plugin appends its own variables to the Cmd's Env:
	// they are kept.
	Env []string
	// Workspace is a host directory shown read-write at /workspace ("":
	// none). When the executor runs as root, Command makes the directory
	// itself (not its content) owned by SandboxUser so that the plugin can
	// write in it.
	Workspace string
	// SocketDir is a host directory bind-mounted read-write at the same
	// path inside, for the go-plugin socket and the egress proxy socket
	// ("": none). Command makes it owned by the sandbox user as above.
	SocketDir string
	// Limits are the plugin's rlimits.
	Limits Limits
	// Accept lists the layers the operator accepts missing. A layer the
	// kernel refuses and that is not accepted makes Command fail.
	Accept []Layer
}

// Report says which layers this kernel and process provide.
type Report struct {
	// Available is true for each layer that works here.
	Available map[Layer]bool
	// Missing says, for each layer that does not, why.
	Missing map[Layer]string
}

// String lists the layers, available ones first.
func (r Report) String() string {
	var ok, miss []string
	for _, l := range Layers {
		if r.Available[l] {
			ok = append(ok, string(l))
		} else {
			miss = append(miss, fmt.Sprintf("%s (%s)", l, r.Missing[l]))
		}
	}
	sort.Strings(ok)
	s := "available: " + strings.Join(ok, ", ")
	if len(miss) > 0 {
		s += "; missing: " + strings.Join(miss, "; ")
	}
	return s
}

// AcceptFlag is the serve flag that accepts a missing layer, named in
// Command's errors.
const AcceptFlag = "--plugin-accept-missing"

// MissingLayerError is Command's error for a layer that is unavailable and
// not accepted.
type MissingLayerError struct {
	Layer Layer
	Why   string
}

func (e *MissingLayerError) Error() string {
	return fmt.Sprintf("isolate: isolation layer %s is not available here (%s): the plugin is refused; fix the host, or accept the weaker isolation with `airlock serve %s %s`", e.Layer, e.Why, AcceptFlag, e.Layer)
}

// PinError is Command's error for a binary whose digest is not the pin.
type PinError struct {
	Binary      string
	Pinned, Got string
}

func (e *PinError) Error() string {
	return fmt.Sprintf("isolate: plugin binary %s has sha256 %s but its manifest pins %s: it changed after the manifest was written, so it is refused and nothing was started; re-pin it only if the change is trusted", e.Binary, e.Got, e.Pinned)
}

// Command checks the binary against its pin and returns a command that
// starts it isolated, and a cleanup function that closes the executor's
// copies of the descriptors handed to the process: call it once the
// process has exited, or if it never started. The caller may add to the
// Cmd's Env and set its Stdout and Stderr (go-plugin does both); it must
// keep Path, Args, ExtraFiles and SysProcAttr. ctx bounds the hashing only;
// the caller ends the process.
func Command(ctx context.Context, s Spec) (*exec.Cmd, func(), error) {
	return command(ctx, s)
}

// Init runs the isolation init when this process was started by Command,
// and never returns then. Otherwise it returns at once. Call it first in
// main, and in TestMain of tests that start isolated processes.
func Init() { initMain() }

// Probe reports which layers work here. The first call tries them (it
// starts one short-lived process); later calls return the same report.
func Probe() Report { return probe() }

// SandboxIDs returns the host uid and gid a plugin process runs as:
// SandboxUser when the executor runs as root, else the executor's own. A
// socket the plugin must connect to is given to them.
func SandboxIDs() (uid, gid int) { return sandboxIDs() }
