//go:build linux

package isolate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox/plugin/egressproxy"
)

var hostile struct {
	path, sum string
}

func TestMain(m *testing.M) {
	isolate.Init()
	dir, err := os.MkdirTemp("", "isolate-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// The unprivileged rerun (TestAsUnprivilegedUser) gets the binary
		// its root parent built: it has no Go toolchain to build one.
		if p := os.Getenv(envHostile); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			s := sha256.Sum256(b)
			hostile.path, hostile.sum = p, hex.EncodeToString(s[:])
			return m.Run()
		}
		// The binary lives in a root-only directory, like an operator's.
		if err := os.Chmod(dir, 0o700); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		hostile.path = filepath.Join(dir, "hostile")
		cmd := exec.Command("go", "build", "-trimpath", "-o", hostile.path, ".")
		cmd.Dir = filepath.Join("testdata", "hostile")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build testdata/hostile: %v\n%s", err, out)
			return 1
		}
		b, err := os.ReadFile(hostile.path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		s := sha256.Sum256(b)
		hostile.sum = hex.EncodeToString(s[:])
		return m.Run()
	}()
	os.Exit(code)
}

type run struct {
	out    map[string]string
	stdout string
	stderr string
	state  *os.ProcessState
	err    error
}

// needIsolation skips where the kernel refuses a layer, except on CI,
// which must provide them all.
// envHostile names the prebuilt hostile binary of the unprivileged rerun.
const envHostile = "AIRLOCK_ISOLATE_TEST_HOSTILE"

// An executor need not run as root: as another user, the plugin is root of
// its own user namespace, mapped to that user, with no capabilities. This
// reruns the isolation tests as uid 65534, so that path is proven wherever
// the suite runs as root (CI).
func TestAsUnprivilegedUser(t *testing.T) {
	if os.Getenv(envHostile) != "" {
		t.Skip("this is the unprivileged run")
	}
	if os.Geteuid() != 0 {
		t.Skip("switching to uid 65534 needs root; run as another user, this suite is itself the unprivileged run")
	}
	needIsolation(t)
	// Short paths: the tests put unix sockets below TMPDIR (108 bytes).
	dir, err := os.MkdirTemp("", "iso-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tmp := filepath.Join(dir, "t")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, isolate.SandboxUser, isolate.SandboxUser); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyExec := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyExec(self, filepath.Join(dir, "isolate.test"))
	copyExec(hostile.path, filepath.Join(dir, "hostile"))
	tests := []string{"FilesystemView", "ProcessesInvisible", "NoNetwork", "ForkBombStopsAtNPROC", "AddressSpaceLimit",
		"FileSizeLimit", "CPUTimeLimit", "DeniedSyscalls", "DeniedSyscallsMore", "NoInheritedDescriptors",
		"CredentialsAndEnvironment", "ModifiedBinaryRefused", "EgressProxyFromInside"}
	cmd := exec.Command(filepath.Join(dir, "isolate.test"), "-test.run", "^Test("+strings.Join(tests, "|")+")$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp, envHostile + "=" + filepath.Join(dir, "hostile"), "CI=" + os.Getenv("CI")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: isolate.SandboxUser, Gid: isolate.SandboxUser}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the isolation tests failed as uid %d: %v\n%s", isolate.SandboxUser, err, out)
	}
	for _, name := range tests {
		if !strings.Contains(string(out), "--- PASS: Test"+name+" ") {
			t.Errorf("Test%s did not pass as uid %d:\n%s", name, isolate.SandboxUser, out)
		}
	}
}

func needIsolation(t *testing.T) {
	t.Helper()
	rep := isolate.Probe()
	if len(rep.Missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must provide every isolation layer: %s", rep)
		}
		t.Skipf("isolation layers missing here: %s", rep)
	}
}

// spec is a workspace and socket directory in t's temporary directory
// (itself below a root-only directory when run as root).
func spec(t *testing.T, args ...string) isolate.Spec {
	t.Helper()
	base := t.TempDir()
	ws := filepath.Join(base, "workspace")
	sock := filepath.Join(base, "sock")
	for _, d := range []string{ws, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return isolate.Spec{
		Binary: hostile.path, SHA256: hostile.sum, Args: args,
		Env:       []string{"PATH=/usr/bin:/bin", "PLUGIN_VAR=1"},
		Workspace: ws, SocketDir: sock,
		Limits: isolate.Limits{CPUTime: 20 * time.Second},
	}
}

func start(t *testing.T, s isolate.Spec) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, cleanup, err := isolate.Command(ctx, s)
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	defer cleanup()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		werr = <-done
		t.Fatalf("the isolated process did not finish: %v; stderr: %s", werr, stderr.String())
	}
	r := run{out: map[string]string{}, stdout: stdout.String(), stderr: stderr.String(), state: cmd.ProcessState, err: werr}
	for _, l := range strings.Split(r.stdout, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			r.out[k] = v
		}
	}
	if r.state.ExitCode() == isolate.ExitInitFailed {
		t.Fatalf("the init failed: %s", r.stderr)
	}
	return r
}

func (r run) want(t *testing.T, key, substr string) {
	t.Helper()
	v, ok := r.out[key]
	if !ok {
		t.Fatalf("%s: no output (stdout %q, stderr %q, %v)", key, r.stdout, r.stderr, r.err)
	}
	if !strings.Contains(v, substr) {
		t.Errorf("%s = %q, want it to contain %q", key, v, substr)
	}
}

func TestProbe(t *testing.T) {
	rep := isolate.Probe()
	t.Logf("probe: %s", rep)
	for _, l := range isolate.Layers {
		if rep.Available[l] == (rep.Missing[l] != "") {
			t.Errorf("layer %s: available %v, missing %q: exactly one must be set", l, rep.Available[l], rep.Missing[l])
		}
	}
	if os.Geteuid() == 0 && len(rep.Missing) > 0 {
		t.Errorf("as root on this kernel every layer should work: %s", rep)
	}
}

func TestFilesystemView(t *testing.T) {
	needIsolation(t)
	// A file of the executor (its data directory) and of the host.
	secret := filepath.Join(t.TempDir(), "store.db")
	if err := os.WriteFile(secret, []byte("audit"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec(t, "read", "/etc/shadow", secret, "/root/.bashrc", hostile.path, "/usr/bin/sleep", "/etc/ssl")
	r := start(t, s)
	r.want(t, "read0", "no such file")
	r.want(t, "read1", "no such file")
	r.want(t, "read2", "no such file")
	r.want(t, "read3", "no such file")
	r.want(t, "read4", "ok")

	s = spec(t)
	s.Args = []string{"write", "/workspace/out.txt", "/tmp/scratch", "/usr/evil", "/etc/evil", "/evil", "/run/airlock/plugin/evil", s.SocketDir + "/sock.txt"}
	r = start(t, s)
	r.want(t, "write0", "ok")
	r.want(t, "write1", "ok")
	r.want(t, "write2", "read-only file system")
	r.want(t, "write3", "read-only file system")
	r.want(t, "write4", "read-only file system")
	r.want(t, "write5", "read-only file system")
	r.want(t, "write6", "ok")
	if b, err := os.ReadFile(filepath.Join(s.Workspace, "out.txt")); err != nil || string(b) != "hostile" {
		t.Errorf("the workspace write did not reach the host: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(s.SocketDir, "sock.txt")); err != nil {
		t.Errorf("the socket directory write did not reach the host: %v", err)
	}

	// The host's other directories do not exist in the sandbox (reading a
	// directory that exists says "is a directory").
	r = start(t, spec(t, "read", "/root", "/home", "/var", "/work", "/sys", "/boot", "/usr"))
	for i := 0; i < 6; i++ {
		r.want(t, fmt.Sprintf("read%d", i), "no such file")
	}
	r.want(t, "read6", "is a directory")
	// Landlock grants nothing on the root itself.
	r = start(t, spec(t, "ls", "/"))
	r.want(t, "lserr", "permission denied")
	r = start(t, spec(t, "ls", "/etc"))
	for _, name := range strings.Split(r.out["ls"], ",") {
		if name == "shadow" || name == "gshadow" || name == "sudoers" {
			t.Errorf("/etc shows %s", name)
		}
	}
}

func TestProcessesInvisible(t *testing.T) {
	needIsolation(t)
	r := start(t, spec(t, "ps"))
	r.want(t, "self", "1")
	if pids := r.out["pids"]; pids != "1" {
		t.Errorf("/proc shows pids %q: the plugin must see its own process only", pids)
	}
}

func TestNoNetwork(t *testing.T) {
	needIsolation(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	r := start(t, spec(t, "connect", lis.Addr().String()))
	if r.out["connect"] == "ok" {
		t.Fatalf("the plugin connected to the host's %s", lis.Addr())
	}
	r.want(t, "connect", "connect")
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host listener accepted %d connection(s) from the plugin", n)
	}
}

func TestForkBombStopsAtNPROC(t *testing.T) {
	needIsolation(t)
	s := spec(t, "forkbomb")
	s.Limits.Processes = 24
	r := start(t, s)
	r.want(t, "forkerr", "resource temporarily unavailable")
	n, err := strconv.Atoi(r.out["started"])
	if err != nil || n >= 24 {
		t.Errorf("started %q processes, want fewer than the limit of 24", r.out["started"])
	}
}

func TestAddressSpaceLimit(t *testing.T) {
	needIsolation(t)
	s := spec(t, "alloc")
	s.Limits.AddressSpace = 1 << 30
	r := start(t, s)
	if r.out["alloc"] != "" || r.state.Success() {
		t.Fatalf("the plugin allocated past its 1 GiB address space: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "out of memory") {
		t.Errorf("stderr %q should say the allocation failed", r.stderr)
	}
	if n, _ := strconv.Atoi(r.out["allocated_mib"]); n >= 1024 {
		t.Errorf("allocated %d MiB under a 1 GiB limit", n)
	}
}

func TestFileSizeLimit(t *testing.T) {
	needIsolation(t)
	s := spec(t, "bigfile", "/workspace/big")
	s.Limits.FileSize = 1 << 20
	r := start(t, s)
	r.want(t, "writeerr", "file too large")
	fi, err := os.Stat(filepath.Join(s.Workspace, "big"))
	if err != nil || fi.Size() > 1<<20 {
		t.Errorf("the file has %v bytes (%v), want at most 1 MiB", fi.Size(), err)
	}
}

func TestCPUTimeLimit(t *testing.T) {
	needIsolation(t)
	s := spec(t, "spin")
	s.Limits.CPUTime = time.Second
	r := start(t, s)
	ws, ok := r.state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the spinning plugin ended with %v, want killed by SIGKILL at its CPU limit", r.state)
	}
}

func TestDeniedSyscalls(t *testing.T) {
	needIsolation(t)
	r := start(t, spec(t, "syscalls"))
	for _, k := range []string{"ptrace", "mount", "bpf", "unshare", "chroot"} {
		r.want(t, k, "operation not permitted")
	}
}

// Container runtimes' default profiles refuse these too; modify_ldt is
// x86-64 only.
func TestDeniedSyscallsMore(t *testing.T) {
	needIsolation(t)
	r := start(t, spec(t, "syscalls2"))
	r.want(t, "kcmp", "operation not permitted")
	r.want(t, "set_mempolicy", "operation not permitted")
	if runtime.GOARCH == "amd64" {
		r.want(t, "modify_ldt", "operation not permitted")
	}
}

// The filter checks the architecture: an x32 syscall is refused and an
// i386 one (int 0x80 on x86-64, whose numbers differ) kills the process.
func TestForeignSyscallABIs(t *testing.T) {
	needIsolation(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("x32 and int 0x80 exist on amd64 only")
	}
	r := start(t, spec(t, "x32"))
	r.want(t, "x32", "operation not permitted")
	r = start(t, spec(t, "int80"))
	if v, ok := r.out["int80"]; ok {
		t.Fatalf("an i386 syscall through int 0x80 returned %s", v)
	}
	ws, ok := r.state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Errorf("the int 0x80 plugin ended with %v, want killed by SIGSYS", r.state)
	}
}

// A descriptor the executor opened without O_CLOEXEC (a library that
// forgets it) and the executor's own stdin (go-plugin passes it to the
// plugin) never reach the plugin: it holds stdin on /dev/null, stdout and
// stderr, nothing else.
func TestNoInheritedDescriptors(t *testing.T) {
	needIsolation(t)
	secret := filepath.Join(t.TempDir(), "store.db")
	if err := os.WriteFile(secret, []byte("audit chain"), 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(secret, syscall.O_RDONLY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	stdin, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, cleanup, err := isolate.Command(ctx, spec(t, "fds"))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s %s", err, out, stderr.String())
	}
	lines := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			lines[k] = v
		}
	}
	fds := strings.Split(lines["fds"], ",")
	if len(fds) != 3 || !strings.HasPrefix(fds[0], "0:/dev/null") || !strings.HasPrefix(fds[1], "1:") || !strings.HasPrefix(fds[2], "2:") {
		t.Errorf("the plugin holds descriptors %q: want exactly 0 (/dev/null), 1 and 2", lines["fds"])
	}
	if strings.Contains(lines["fds"], secret) || strings.Contains(lines["stdin"], "audit") {
		t.Errorf("an executor file reached the plugin: fds %q, stdin %q", lines["fds"], lines["stdin"])
	}
	if want := `"" ok`; lines["stdin"] != want {
		t.Errorf("stdin read %s, want %s (/dev/null)", lines["stdin"], want)
	}
}

func TestCredentialsAndEnvironment(t *testing.T) {
	needIsolation(t)
	t.Setenv("AIRLOCK_HOST_SECRET", "hunter2")
	r := start(t, spec(t, "status", "a b", "c"))
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		r.want(t, k, "0000000000000000")
	}
	r.want(t, "NoNewPrivs", "1")
	r.want(t, "Seccomp", "2")
	r.want(t, "hostname", "airlock-plugin")
	r.want(t, "args", "a b|c")
	r.want(t, "exe", isolate.PluginDir+"/hostile")
	if env := r.out["env"]; env != "PATH=/usr/bin:/bin|PLUGIN_VAR=1" {
		t.Errorf("environment %q: want exactly the spec's", env)
	}
	if os.Geteuid() == 0 {
		r.want(t, "Uid", "65534 65534 65534 65534")
		r.want(t, "Gid", "65534 65534 65534 65534")
		if g := r.out["Groups"]; g != "" {
			t.Errorf("supplementary groups %q: want none", g)
		}
	}
}

func TestEnvAppendedByCallerKept(t *testing.T) {
	needIsolation(t)
	cmd, cleanup, err := isolate.Command(context.Background(), spec(t, "status"))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	cmd.Env = append(cmd.Env, "PLUGIN_MAGIC_COOKIE=x")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "env=PATH=/usr/bin:/bin|PLUGIN_VAR=1|PLUGIN_MAGIC_COOKIE=x\n") {
		t.Errorf("output %s: want go-plugin's appended variable kept", out)
	}
}

func TestModifiedBinaryRefused(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "plugin")
	b, err := os.ReadFile(hostile.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := spec(t, "status")
	s.Binary = bin
	// Modified after the manifest pinned it.
	f, err := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("trojan"))
	_ = f.Close()
	cmd, _, err := isolate.Command(context.Background(), s)
	var pe *isolate.PinError
	if !errors.As(err, &pe) || cmd != nil {
		t.Fatalf("Command = %v, %v; want a *PinError and no command", cmd, err)
	}
	for _, want := range []string{bin, hostile.sum, pe.Got} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should name %s", err, want)
		}
	}
	if _, _, err := isolate.Command(context.Background(), isolate.Spec{Binary: bin, SHA256: "abc"}); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("a malformed pin: %v", err)
	}
}

func TestMissingLayerRefusedUnlessAccepted(t *testing.T) {
	needIsolation(t)
	restore := isolate.SimulateMissing(isolate.LayerSeccomp, "simulated by the test")
	defer restore()
	_, _, err := isolate.Command(context.Background(), spec(t, "status"))
	var me *isolate.MissingLayerError
	if !errors.As(err, &me) || me.Layer != isolate.LayerSeccomp {
		t.Fatalf("Command = %v, want a *MissingLayerError for seccomp", err)
	}
	for _, want := range []string{"seccomp", "simulated by the test", isolate.AcceptFlag + " seccomp"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should contain %q", err, want)
		}
	}
	s := spec(t, "status")
	s.Accept = []isolate.Layer{isolate.LayerSeccomp}
	r := start(t, s)
	// Accepted: it runs, without that layer only.
	r.want(t, "Seccomp", "0")
	r.want(t, "NoNewPrivs", "1")
	r.want(t, "CapEff", "0000000000000000")
}

func TestBadSpecs(t *testing.T) {
	s := spec(t, "status")
	for name, mod := range map[string]func(*isolate.Spec){
		"relative binary":  func(s *isolate.Spec) { s.Binary = "hostile" },
		"missing binary":   func(s *isolate.Spec) { s.Binary = "/nonexistent/hostile" },
		"workspace file":   func(s *isolate.Spec) { s.Workspace = hostile.path },
		"relative ws":      func(s *isolate.Spec) { s.Workspace = "ws" },
		"socket under usr": func(s *isolate.Spec) { s.SocketDir = "/usr/lib" },
		"socket is /tmp":   func(s *isolate.Spec) { s.SocketDir = "/tmp" },
		"negative limit":   func(s *isolate.Spec) { s.Limits.Processes = -1 },
	} {
		c := s
		mod(&c)
		if cmd, _, err := isolate.Command(context.Background(), c); err == nil || cmd != nil {
			t.Errorf("%s: Command accepted it", name)
		}
	}
}

func TestParseLayer(t *testing.T) {
	if l, err := isolate.ParseLayer("landlock"); err != nil || l != isolate.LayerLandlock {
		t.Errorf("ParseLayer(landlock) = %v, %v", l, err)
	}
	if _, err := isolate.ParseLayer("selinux"); err == nil || !strings.Contains(err.Error(), "seccomp") {
		t.Errorf("ParseLayer(selinux) = %v, want an error listing the layers", err)
	}
}

// TestEgressProxyFromInside: the isolated plugin's only network is the
// egress proxy socket in its socket directory; through it an allowed
// request gets the credential attached host-side, a refused one a 403.
func TestEgressProxyFromInside(t *testing.T) {
	needIsolation(t)
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "auth=%v", r.Header.Get("Authorization") == "Bearer inside-secret")
	}))
	defer api.Close()
	roots := x509.NewCertPool()
	roots.AddCert(api.Certificate())
	c := testenv.LoopbackEgress(t, api.Listener.Addr().String(), "93.184.215.14", roots, map[string]string{"example.com": "93.184.215.14"})
	b, err := c.Bind([]manifest.NetworkRule{{Host: "example.com"}}, []egress.Injection{{CredentialName: "api", Host: "example.com", Header: "Authorization", Value: "Bearer inside-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	s := spec(t)
	sock := filepath.Join(s.SocketDir, "egress.sock")
	p, err := egressproxy.Serve(context.Background(), sock, b, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	s.Args = []string{"proxy", sock, "https://example.com/x"}
	r := start(t, s)
	r.want(t, "status", "200")
	r.want(t, "body", "auth=true")

	s.Args = []string{"proxy", sock, "https://evil.example.org/x"}
	r = start(t, s)
	r.want(t, "status", "403")
	r.want(t, "code", egress.CodeNotAllowed)
}
