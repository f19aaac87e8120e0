package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/airlock-dev/airlock/sandbox"
	"github.com/airlock-dev/airlock/sandbox/plugin/pluginv1"
)

// noFollow refuses a symbolic link as the last path element.
const noFollow = syscall.O_NOFOLLOW

// proc is one plugin process: it serves one call at a time.
type proc struct {
	t        *tool
	key      poolKey
	client   *goplugin.Client
	tc       pluginv1.ToolClient
	cmd      *exec.Cmd
	cleanup  func()
	cancel   context.CancelFunc // ends the context the process is bound to
	sockDir  string
	isolated bool
	pid      int
	sink     *stderrSink
	log      zerolog.Logger

	proxy     egressProxy
	proxyPath string

	lastUsed time.Time   // guarded by t.mu
	inCall   atomic.Bool // a call's window is open: Run logs the stderr
	secrets  atomic.Bool // a call gave it credentials: its stderr is not logged

	killOnce sync.Once
	status   string // how it ended, set by kill
}

// egressProxy is the per-process egress proxy: bound to one call's egress
// at a time, nil refusing every request.
type egressProxy interface {
	Bind(e sandbox.Egress)
	Close() error
}

// serveEgress starts an egress proxy on the unix socket path.
// Only processes in the PID namespace of pid may connect.
var serveEgress func(ctx context.Context, path string, pid int, log zerolog.Logger) (egressProxy, error)

// startOp is one process start. Its fields are guarded by t.mu.
type startOp struct {
	abort     context.CancelFunc // kills the process, started or not
	done      chan struct{}      // closed when p or err is set
	abandoned bool               // the call stopped waiting for it
	p         *proc
	err       *sandbox.Error
}

// start starts a process for key; the slot is already taken and passes to
// the start, as does one count of t.starts. The start is bounded by runCtx:
// a start the call stops waiting for is aborted (its process, if any, is
// killed) and ends in the background, where its process is reaped before
// its slot is freed. Close aborts and waits for the starts in flight.
func (t *tool) start(ctx, runCtx context.Context, key poolKey) (*proc, *sandbox.Error) {
	pctx, abort := context.WithCancel(t.life)
	op := &startOp{abort: abort, done: make(chan struct{})}
	go t.runStart(pctx, op, key)
	select {
	case <-op.done:
	case <-runCtx.Done():
		t.mu.Lock()
		select {
		case <-op.done: // it ended meanwhile: its result is the call's
		default:
			op.abandoned = true
		}
		t.mu.Unlock()
		if op.abandoned {
			op.abort()
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, t.runError(sandbox.KindCanceled, ctx.Err(), "the caller canceled the call while the plugin process started")
			}
			return nil, t.runError(sandbox.KindTimeout, runCtx.Err(), "the call passed its deadline (limits.timeout %s) while the plugin process started", t.timeout)
		}
	}
	return op.p, op.err
}

// runStart spawns the process of op and settles its accounting: a process
// handed to the call is counted in t.all; otherwise (the start failed, was
// abandoned, or the tool closed) the process is killed and reaped, then
// the slot is freed.
func (t *tool) runStart(ctx context.Context, op *startOp, key poolKey) {
	defer t.starts.Done()
	p, err := t.spawn(ctx, op.abort, key)
	t.mu.Lock()
	if p != nil && (op.abandoned || t.closed) {
		why := "backend closed"
		if op.abandoned {
			why = "start abandoned"
		}
		t.mu.Unlock()
		p.kill(why) // reaps it
		t.mu.Lock()
		p = nil
	}
	if p == nil && t.closed {
		err = t.runError(sandbox.KindInternal, err, "tool is closed: reload the manifest")
	}
	if p != nil {
		t.all[p] = struct{}{}
	} else {
		op.abort() // releases the context of a process that never started
		t.live--
		t.signalLocked()
	}
	op.p, op.err = p, err
	close(op.done)
	t.mu.Unlock()
}

// spawn verifies the binary and starts one process up to the go-plugin
// handshake.
// The process is bound to ctx (see Backend.command); cancel ends ctx, and
// kill calls it.
func (t *tool) spawn(ctx context.Context, cancel context.CancelFunc, key poolKey) (*proc, *sandbox.Error) {
	b := t.b
	sockDir, err := os.MkdirTemp(b.cfg.TempDir, "airlock-plugin-")
	if err != nil {
		return nil, t.runError(sandbox.KindInternal, err, "cannot create the process's socket directory in %s: check it is writable", b.cfg.TempDir)
	}
	fail := func(e *sandbox.Error) (*proc, *sandbox.Error) {
		_ = os.RemoveAll(sockDir)
		return nil, e
	}
	env := append(append([]string(nil), t.env...), goplugin.EnvUnixSocketDir+"="+sockDir)
	spec := spawnSpec{
		Binary: t.binary, SHA256: t.sha, Args: t.args, Env: env,
		Workspace: key.workspace, SocketDir: sockDir, Limits: t.limits,
	}
	cmd, cleanup, secure, serr := b.command(ctx, t, spec)
	if serr != nil {
		return fail(serr)
	}
	p := &proc{t: t, key: key, cmd: cmd, cleanup: cleanup, cancel: cancel, sockDir: sockDir, isolated: !b.cfg.Unisolated,
		sink: newStderrSink(b.cfg.MaxStderr)}
	p.client = goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  pluginv1.Handshake,
		Plugins:          goplugin.PluginSet{pluginv1.PluginName: &pluginv1.GRPCPlugin{}},
		Cmd:              cmd,
		SecureConfig:     secure,
		SkipHostEnv:      true,
		AutoMTLS:         true,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		StartTimeout:     b.cfg.StartTimeout,
		Logger:           hclog.NewNullLogger(),
		Stderr:           p.sink,
		SyncStderr:       p.sink,
		SyncStdout:       p.sink,
		UnixSocketConfig: &goplugin.UnixSocketConfig{TempDir: sockDir},
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(t.output+pluginv1.Slack),
			grpc.MaxCallSendMsgSize(pluginv1.MaxInputBytes+pluginv1.Slack))},
	})
	rpc, err := p.client.Client()
	if cmd.Process != nil {
		p.pid = cmd.Process.Pid
	}
	p.log = t.log.With().Int("pid", p.pid).Logger()
	if err != nil {
		p.kill("start failed")
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			got, _ := hashBinary(t.binary)
			return nil, digestError(t.name, t.binary, got, t.sha)
		}
		msg := tail(p.sink.drain(), 512)
		if msg != "" {
			msg = " (stderr: " + msg + ")"
		}
		return nil, t.runError(sandbox.KindCrash, err, "the plugin process did not start: %v%s: check the binary serves the airlock plugin protocol v1 (tools/sdk/plugin)", err, msg)
	}
	raw, err := rpc.Dispense(pluginv1.PluginName)
	tc, ok := raw.(pluginv1.ToolClient)
	if err != nil || !ok {
		p.kill("dispense failed")
		return nil, t.runError(sandbox.KindCrash, err, "the plugin does not serve the Tool service: build it with tools/sdk/plugin")
	}
	p.tc = tc
	if t.network {
		if serveEgress == nil {
			p.kill("no egress proxy")
			return nil, t.runError(sandbox.KindInternal, nil, "this executor has no egress proxy for plugin tools")
		}
		p.proxyPath = sockDir + "/egress.sock"
		px, err := serveEgress(context.Background(), p.proxyPath, p.pid, p.log)
		if err != nil {
			p.kill("egress proxy failed")
			return nil, t.runError(sandbox.KindInternal, err, "cannot start the egress proxy of the plugin process")
		}
		p.proxy = px
	}
	p.log.Debug().Str("workspace", key.workspace).Msg("plugin process started")
	return p, nil
}

// workspacePath is the workspace as the process sees it.
func (p *proc) workspacePath() string {
	if p.isolated {
		return WorkspaceGuestPath
	}
	return p.key.workspace
}

func (p *proc) bindEgress(e sandbox.Egress) {
	if p.proxy != nil {
		p.proxy.Bind(e)
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool { return p.client.Exited() }

// stop lets the process exit by itself for up to grace, then kills it. It
// returns how the process ended when it ended by itself, "" when killed.
func (p *proc) stop(grace time.Duration, why string) string {
	deadline := time.Now().Add(grace)
	for !p.exited() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	self := p.exited()
	p.kill(why)
	if self {
		return p.status
	}
	return ""
}

// kill ends the process (SIGKILL to it and, unisolated, its process
// group), reaps it, and removes its sockets. It is idempotent.
func (p *proc) kill(why string) {
	p.killOnce.Do(func() {
		if p.cmd.Process != nil && !p.client.Exited() {
			if !p.isolated && p.pid > 0 {
				_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			}
			_ = p.cmd.Process.Kill()
		}
		p.client.Kill() // waits for cmd.Wait: no zombie
		if p.proxy != nil {
			_ = p.proxy.Close()
		}
		if p.cleanup != nil {
			p.cleanup()
		}
		_ = os.RemoveAll(p.sockDir)
		if p.cancel != nil {
			p.cancel()
		}
		p.status = describeExit(p.cmd.ProcessState)
		ev := p.log.Debug().Str("reason", why).Str("exit", p.status)
		if !p.inCall.Load() {
			if rest, total, dropped := p.sink.end(); total > 0 {
				ev = logStderr(ev, p, rest, total, dropped)
			}
		}
		ev.Msg("plugin process ended")
	})
}

// describeExit says how a process ended.
func describeExit(ps *os.ProcessState) string {
	if ps == nil {
		return "ended"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %s", ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

// stderrSink collects a process's stderr per call window, capped. A window
// ends with each call (and with the process); what the process writes while
// idle counts in the next window.
type stderrSink struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	total   int
	dropped int
}

var _ io.Writer = (*stderrSink)(nil)

func newStderrSink(max int) *stderrSink { return &stderrSink{max: max} }

// Write keeps what fits under the cap and counts the rest.
func (s *stderrSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total += len(b)
	room := s.max - len(s.buf)
	if room > len(b) {
		room = len(b)
	}
	if room > 0 {
		s.buf = append(s.buf, b[:room]...)
	}
	s.dropped += len(b) - max(room, 0)
	return len(b), nil
}

// end returns the window's stderr (capped), its total size and the bytes
// dropped, and starts a new window.
func (s *stderrSink) end() ([]byte, int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]byte(nil), s.buf...)
	total, dropped := s.total, s.dropped
	s.buf, s.total, s.dropped = s.buf[:0], 0, 0
	return out, total, dropped
}

// drain returns the window's stderr so far without ending it.
func (s *stderrSink) drain() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.buf...)
}

// readFull reads until b is full or EOF.
func readFull(r io.Reader, b []byte) (int, error) {
	n, err := io.ReadFull(r, b)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return n, nil
	}
	return n, err
}

// clockTick is the kernel's USER_HZ, the unit of /proc/PID/stat times.
const clockTick = 10 * time.Millisecond

// childPIDs lists the direct children of the process pid (zombies
// included) from /proc/PID/task/*/children.
func childPIDs(pid int) []int {
	var pids []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				pids = append(pids, c)
			}
		}
	}
	return pids
}

// cpuUsed is the CPU time used so far by the process pid and its direct
// children, from /proc.
func cpuUsed(pid int) time.Duration {
	pids := append([]int{pid}, childPIDs(pid)...)
	var ticks int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
		st, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
		ticks += ut + st
	}
	return time.Duration(ticks) * clockTick
}
