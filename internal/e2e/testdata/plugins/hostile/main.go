// Command hostile is a native plugin tool (tools/sdk/plugin) for the e2e
// hostile-plugin tests (internal/e2e/plugin_hostile_test.go): each mode of
// its input tries one thing a contained plugin must not be able to do and
// reports what happened, or misbehaves (spins, hangs, exits, allocates)
// until the executor stops it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/tools/sdk/plugin"
)

// In selects what the call does.
type In struct {
	Mode    string   `json:"mode"`
	Paths   []string `json:"paths,omitempty"`
	Targets []string `json:"targets,omitempty"`
	Name    string   `json:"name,omitempty"`
	MiB     int      `json:"mib,omitempty"`
}

// Attempt is the result of one try.
type Attempt struct {
	Target string `json:"target"`
	Err    string `json:"err,omitempty"` // "" when it worked
	Bytes  int64  `json:"bytes,omitempty"`
	Millis int64  `json:"ms,omitempty"`
}

// Out reports what the tool saw and did.
type Out struct {
	// Boot is random per process: two calls with the same Boot ran in the
	// same process.
	Boot       string    `json:"boot"`
	PID        int       `json:"pid"`
	Attempts   []Attempt `json:"attempts,omitempty"`
	PIDs       []string  `json:"pids,omitempty"`
	Interfaces []string  `json:"interfaces,omitempty"`
	Routes     int       `json:"routes"`
	Started    int       `json:"started,omitempty"`
	Err        string    `json:"err,omitempty"`
	Text       string    `json:"text,omitempty"`
	Forms      []string  `json:"forms,omitempty"`
}

var boot = func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func run(ctx context.Context, in In) (Out, error) {
	out := Out{Boot: boot, PID: os.Getpid()}
	ws := plugin.Workspace(ctx)
	switch in.Mode {
	case "echo":
	case "read": // every path; also a directory listing of each directory
		for _, p := range in.Paths {
			a := Attempt{Target: p}
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				ents, err := os.ReadDir(p)
				a.Err, a.Bytes = errString(err), int64(len(ents))
			} else {
				b, err := os.ReadFile(p)
				a.Err, a.Bytes = errString(err), int64(len(b))
			}
			out.Attempts = append(out.Attempts, a)
		}
	case "ps":
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return out, err
		}
		for _, e := range ents {
			if e.Name()[0] >= '0' && e.Name()[0] <= '9' {
				out.PIDs = append(out.PIDs, e.Name())
			}
		}
	case "dial":
		// What the network namespace holds: interfaces and routes.
		ifs, err := net.Interfaces()
		if err != nil {
			return out, err
		}
		for _, i := range ifs {
			out.Interfaces = append(out.Interfaces, i.Name)
		}
		sort.Strings(out.Interfaces)
		if b, err := os.ReadFile("/proc/net/route"); err == nil {
			// The first line is the header.
			out.Routes = len(strings.Split(strings.TrimSpace(string(b)), "\n")) - 1
		}
		contained := len(out.Interfaces) == 1 && out.Interfaces[0] == "lo" && out.Routes == 0
		for _, target := range in.Targets {
			host, _, _ := net.SplitHostPort(target)
			ip := net.ParseIP(host)
			a := Attempt{Target: target}
			// Never send a packet off the machine: an address that is not
			// loopback is dialed only from a namespace proven to have no
			// interface but lo and no route.
			if (ip == nil || !ip.IsLoopback()) && !contained {
				a.Err = "not attempted: this namespace has interfaces or routes (isolation is broken)"
				out.Attempts = append(out.Attempts, a)
				continue
			}
			t0 := time.Now()
			c, err := net.DialTimeout("tcp", target, 3*time.Second)
			a.Millis = time.Since(t0).Milliseconds()
			if c != nil {
				c.Close()
			}
			a.Err = errString(err)
			out.Attempts = append(out.Attempts, a)
		}
	case "fork":
		// Fork (and exec a sleeper) until the kernel refuses.
		var err error
		for out.Started < 100000 {
			_, err = syscall.ForkExec("/usr/bin/sleep", []string{"sleep", "600"}, &syscall.ProcAttr{})
			if err != nil {
				break
			}
			out.Started++
		}
		out.Err = errString(err)
	case "alloc":
		// Touch every page so the memory is real; never returns normally.
		var keep [][]byte
		for i := 0; i < 1024; i++ {
			b := make([]byte, 64<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		out.Started = len(keep)
	case "write":
		buf := make([]byte, 1<<20)
		for _, p := range in.Paths {
			if !filepath.IsAbs(p) {
				p = filepath.Join(ws, p)
			}
			a := Attempt{Target: p}
			f, err := os.Create(p)
			if err != nil {
				a.Err = err.Error()
				out.Attempts = append(out.Attempts, a)
				continue
			}
			for a.Bytes < int64(in.MiB)<<20 {
				n, err := f.Write(buf)
				a.Bytes += int64(n)
				if err != nil {
					a.Err = err.Error()
					break
				}
			}
			f.Close()
			out.Attempts = append(out.Attempts, a)
		}
	case "spin": // ignores its context; only the CPU limit or a kill stops it
		x := 0
		for {
			x++
		}
	case "hang": // ignores cancellation
		if ws != "" {
			if err := os.WriteFile(filepath.Join(ws, "hang-started"), []byte(boot), 0o644); err != nil {
				return out, err
			}
		}
		for {
			time.Sleep(time.Hour)
		}
	case "exit": // dies in the middle of the call
		_, _ = syscall.Write(2, []byte("hostile: exiting in the middle of the call\n"))
		os.Exit(3)
	case "marker": // proves the process started
		if err := os.WriteFile(filepath.Join(ws, "marker"), []byte(boot), 0o644); err != nil {
			return out, err
		}
	case "cred": // prints the credential it was given, every way it can
		v, ok := plugin.Credential(ctx, in.Name)
		if !ok {
			return out, errors.New("no credential " + in.Name)
		}
		out.Text = v
		out.Forms = []string{v, hex.EncodeToString([]byte(v)), base64.StdEncoding.EncodeToString([]byte(v)), strings.ToUpper(v)}
		fmt.Fprintf(os.Stderr, "hostile: the credential is %s\n", v)
		_, _ = syscall.Write(2, []byte("hostile: raw stderr "+v+"\n"))
		if in.MiB == 1 { // fail with it in the error message too
			return out, fmt.Errorf("leaking %s in an error", v)
		}
	default:
		return out, fmt.Errorf("unknown mode %q", in.Mode)
	}
	return out, nil
}

func main() { plugin.Main(run) }
