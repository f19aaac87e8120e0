// Command hostile is a test plugin for package isolate: each mode tries
// one thing a contained plugin must not be able to do, and prints what
// happened as key=value lines.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func say(k string, v any) { fmt.Printf("%s=%v\n", k, v) }

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func errno(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return e.Error()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hostile MODE [ARGS]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "read":
		for i, p := range os.Args[2:] {
			_, err := os.ReadFile(p)
			say(fmt.Sprintf("read%d", i), errString(err))
		}
	case "write":
		for i, p := range os.Args[2:] {
			err := os.WriteFile(p, []byte("hostile"), 0o644)
			say(fmt.Sprintf("write%d", i), errString(err))
		}
	case "ls":
		ents, err := os.ReadDir(os.Args[2])
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		say("ls", strings.Join(names, ","))
		say("lserr", errString(err))
	case "ps":
		ents, _ := os.ReadDir("/proc")
		var pids []string
		for _, e := range ents {
			if e.Name()[0] >= '0' && e.Name()[0] <= '9' {
				pids = append(pids, e.Name())
			}
		}
		say("pids", strings.Join(pids, ","))
		say("self", os.Getpid())
	case "connect":
		c, err := net.DialTimeout("tcp", os.Args[2], 2*time.Second)
		if c != nil {
			c.Close()
		}
		say("connect", errString(err))
	case "forkbomb":
		n := 0
		var err error
		for n < 10000 {
			_, err = syscall.ForkExec("/usr/bin/sleep", []string{"sleep", "60"}, &syscall.ProcAttr{})
			if err != nil {
				break
			}
			n++
		}
		say("started", n)
		say("forkerr", errString(err))
	case "alloc":
		var keep [][]byte
		for i := 1; i <= 64; i++ {
			b := make([]byte, 64<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
			say("allocated_mib", i*64)
		}
		say("alloc", "all 4096 MiB")
	case "bigfile":
		f, err := os.Create(os.Args[2])
		if err != nil {
			say("create", errString(err))
			return
		}
		buf := make([]byte, 1<<20)
		total := 0
		for total < 64<<20 {
			var n int
			n, err = f.Write(buf)
			total += n
			if err != nil {
				break
			}
		}
		f.Close()
		say("written", total)
		say("writeerr", errString(err))
	case "proxy":
		// One request through airlock's egress proxy socket, absolute form.
		c, err := net.Dial("unix", os.Args[2])
		if err != nil {
			say("proxy", errString(err))
			return
		}
		defer c.Close()
		req, _ := http.NewRequest("GET", os.Args[3], nil)
		if err := req.WriteProxy(c); err != nil {
			say("proxy", errString(err))
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			say("proxy", errString(err))
			return
		}
		b, _ := io.ReadAll(resp.Body)
		say("status", resp.StatusCode)
		say("code", resp.Header.Get("X-Airlock-Egress-Error"))
		say("body", string(b))
	case "spin":
		x := 0
		for {
			x++
		}
	case "syscalls":
		_, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
		say("ptrace", e.Error())
		say("mount", errString(syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, "")))
		var attr [64]byte
		_, _, e = syscall.RawSyscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		say("bpf", e.Error())
		say("unshare", errString(syscall.Unshare(syscall.CLONE_NEWUSER)))
		say("chroot", errString(syscall.Chroot("/tmp")))
	case "fds":
		// Every descriptor it holds besides the one listing them, with its
		// target, and what it reads from stdin.
		// Raw syscalls: os.Open would start the runtime's poller, whose
		// descriptors are the plugin's own.
		dfd, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			say("fds", errString(err))
			return
		}
		buf := make([]byte, 8192)
		var names []string
		for {
			n, err := syscall.ReadDirent(dfd, buf)
			if err != nil || n <= 0 {
				break
			}
			_, _, names = syscall.ParseDirent(buf[:n], -1, names)
		}
		var fds []string
		for _, n := range names {
			if n == fmt.Sprint(dfd) {
				continue
			}
			target, _ := os.Readlink("/proc/self/fd/" + n)
			fds = append(fds, n+":"+target)
		}
		syscall.Close(dfd)
		say("fds", strings.Join(fds, ","))
		b := make([]byte, 64)
		n, err := syscall.Read(0, b)
		say("stdin", fmt.Sprintf("%q %s", b[:max(n, 0)], errString(err)))
	case "syscalls2":
		pid := uintptr(os.Getpid())
		_, _, e := syscall.RawSyscall6(unix.SYS_KCMP, pid, pid, 0, 0, 0, 0)
		say("kcmp", errno(e))
		var ldt [16]byte
		_, _, e = syscall.RawSyscall(154, 0, uintptr(unsafe.Pointer(&ldt[0])), uintptr(len(ldt))) // modify_ldt
		say("modify_ldt", errno(e))
		_, _, e = syscall.RawSyscall6(unix.SYS_SET_MEMPOLICY, 0, 0, 0, 0, 0, 0)
		say("set_mempolicy", errno(e))
	case "x32":
		// getpid through the x32 ABI (syscall number | 0x40000000).
		_, _, e := syscall.RawSyscall(0x40000000|39, 0, 0, 0)
		say("x32", errno(e))
	case "int80":
		// getpid (20) through the i386 ABI: the filter must kill.
		os.Stdout.Sync()
		say("int80", int80(20))
	case "status":
		b, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if ok && strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Seccomp" || k == "Uid" || k == "Gid" || k == "Groups" {
				say(k, strings.Join(strings.Fields(v), " "))
			}
		}
		h, _ := os.Hostname()
		say("hostname", h)
		say("env", strings.Join(os.Environ(), "|"))
		wd, _ := os.Getwd()
		say("cwd", wd)
		exe, _ := os.Executable()
		say("exe", filepath.Clean(exe))
		say("args", strings.Join(os.Args[2:], "|"))
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
