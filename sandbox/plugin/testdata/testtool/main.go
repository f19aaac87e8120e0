// Command testtool is a native plugin tool for the sandbox/plugin tests:
// its input's mode selects a behaviour, well-behaved or hostile.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/tools/sdk"
	"github.com/airlock-dev/airlock/tools/sdk/plugin"
)

// In selects what the call does.
type In struct {
	Mode string `json:"mode"`
	Text string `json:"text,omitempty"`
	N    int    `json:"n,omitempty"`
}

// Out reports what the tool saw.
type Out struct {
	Text      string   `json:"text,omitempty"`
	PID       int      `json:"pid"`
	Env       []string `json:"env,omitempty"`
	Found     bool     `json:"found,omitempty"`
	Deadline  bool     `json:"deadline,omitempty"`
	Workspace string   `json:"workspace,omitempty"`
	// Boot is random per process: the same Boot, the same process (PIDs
	// repeat across PID namespaces).
	Boot string `json:"boot"`
}

var boot = func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

func run(ctx context.Context, in In) (Out, error) {
	out := Out{PID: os.Getpid(), Workspace: plugin.Workspace(ctx), Boot: boot}
	switch in.Mode {
	case "echo":
		out.Text = in.Text
	case "env":
		out.Env = os.Environ()
	case "cred":
		out.Text, out.Found = plugin.Credential(ctx, in.Text)
	case "deadline":
		_, out.Deadline = ctx.Deadline()
	case "fail":
		return Out{}, sdk.Errorf("bad_thing", "it failed: %s", in.Text)
	case "panic":
		panic("boom")
	case "crash":
		// Written to fd 2 itself, as the Go runtime writes a fatal error:
		// go-plugin streams os.Stderr, which may not flush before exit.
		_, _ = syscall.Write(2, []byte("crashing on purpose\n"))
		os.Exit(3)
	case "sleep": // honours cancellation
		select {
		case <-ctx.Done():
			return Out{}, ctx.Err()
		case <-time.After(time.Minute):
		}
	case "hang": // ignores cancellation
		time.Sleep(time.Hour)
	case "marker": // proves the cancellation reaches the plugin
		ws := plugin.Workspace(ctx)
		if err := os.WriteFile(filepath.Join(ws, "started"), nil, 0o644); err != nil {
			return Out{}, err
		}
		<-ctx.Done()
		_ = os.WriteFile(filepath.Join(ws, "canceled"), []byte(ctx.Err().Error()), 0o644)
		os.Exit(4)
	case "stderr": // to fd 2 itself, like the runtime; os.Stderr is streamed
		chunk := []byte(strings.Repeat("e", 1023) + "\n")
		for i := 0; i < in.N; i++ {
			_, _ = syscall.Write(2, chunk)
		}
	case "spin": // burns N ms of CPU time
		end := time.Now().Add(time.Duration(in.N) * time.Millisecond)
		x := 0
		for time.Now().Before(end) {
			x++
		}
		out.Text = fmt.Sprint(x > 0)
	case "orphan": // leaves a running child behind
		p, err := os.StartProcess("/usr/bin/sleep", []string{"sleep", "600"}, &os.ProcAttr{})
		if err != nil {
			return Out{}, err
		}
		out.Text = fmt.Sprint(p.Pid)
	case "zombie": // leaves an exited child nobody waits for
		p, err := os.StartProcess("/usr/bin/true", []string{"true"}, &os.ProcAttr{})
		if err != nil {
			return Out{}, err
		}
		out.Text = fmt.Sprint(p.Pid)
		time.Sleep(100 * time.Millisecond)
	case "big":
		out.Text = strings.Repeat("x", in.N)
	case "read":
		b, err := os.ReadFile(filepath.Join(plugin.Workspace(ctx), in.Text))
		if err != nil {
			return Out{}, err
		}
		out.Text = string(b)
	case "fill": // writes N files of len(text) bytes, then sleeps 2 s (a watched plugin is stopped before)
		for i := range in.N {
			if err := os.WriteFile(filepath.Join(plugin.Workspace(ctx), fmt.Sprintf("fill-%d", i)), []byte(in.Text), 0o644); err != nil {
				return Out{}, err
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	case "status": // the value of the line text of /proc/self/status
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return Out{}, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == in.Text {
				out.Text, out.Found = strings.TrimSpace(v), true
			}
		}
	case "write":
		if err := os.WriteFile(filepath.Join(plugin.Workspace(ctx), "out.txt"), []byte(in.Text), 0o644); err != nil {
			return Out{}, err
		}
	case "http":
		resp, err := plugin.HTTPClient(ctx).Get(in.Text)
		if err != nil {
			return Out{}, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return Out{}, err
		}
		out.Text = fmt.Sprintf("%d %s", resp.StatusCode, b)
	default:
		return Out{}, fmt.Errorf("unknown mode %q", in.Mode)
	}
	return out, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "garbage" {
		fmt.Println("this is not a plugin")
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "slowstart" {
		time.Sleep(time.Hour) // never reaches the handshake
	}
	plugin.Main(run)
}
