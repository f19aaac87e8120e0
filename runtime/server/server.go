// Package server assembles and runs the executor daemon (`airlock serve`):
// it loads and validates every manifest and policy, opens the store,
// prepares the sandbox, and serves the planner API over gRPC on a unix
// socket until its context ends, then drains.
package server

import (
	"context"

	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
	"github.com/airlock-dev/airlock/sandbox/wasm"
)

// Defaults of Options.
const (
	DefaultDataDir      = ".airlock"
	DefaultSocketName   = "airlock.sock"
	DefaultDrainTimeout = 30 * time.Second
	// MaxRequestBytes bounds a gRPC request: arguments are at most 1 MiB,
	// so a larger message is refused before it is read.
	MaxRequestBytes = 2 << 20
	// MaxConcurrentStreams bounds the concurrent requests of one connection.
	MaxConcurrentStreams = 1024
)

// Options configures the daemon.
type Options struct {
	// Socket is the unix socket path (default DataDir/airlock.sock). It is
	// created with mode 0600.
	Socket string
	// ManifestsDir holds the tool manifests; PoliciesDir the policies.
	ManifestsDir, PoliciesDir string
	// DataDir holds the store, the compilation cache and the workspaces
	// (default ./.airlock), created with mode 0700.
	DataDir string
	// DrainTimeout bounds the wait for in-flight calls at shutdown (30s).
	DrainTimeout time.Duration
	// CacheDir holds the compiled modules, so that a restart does not
	// recompile them (default DataDir/cache/wazero).
	CacheDir string
	// MaxInstances bounds concurrent sandbox instances (0: the sandbox default).
	MaxInstances int
	// StoreSync is the SQLite synchronous mode: "full" (default) or "normal".
	StoreSync string
	// Logger receives the daemon's logs and the audit mirror.
	Logger zerolog.Logger
	// Ready, when set, is called once the socket accepts connections.
	Ready func(socket string)
}

// LoadConfig loads and validates every manifest and policy and compiles the
// policy. The error lists every problem as file:line: message.
func LoadConfig(manifestsDir, policiesDir string, env map[string]any) ([]*manifest.Manifest, *policy.Engine, []string, error) {
	var problems []string
	tools, err := manifest.LoadDir(manifestsDir)
	if err != nil {
		problems = append(problems, splitLines(err)...)
	}
	set, perr := policy.LoadDir(policiesDir)
	if perr != nil {
		problems = append(problems, splitLines(perr)...)
	}
	if len(problems) > 0 {
		return nil, nil, nil, &ConfigError{Problems: problems}
	}
	eng, err := policy.Compile(set.Policies, tools, policy.Options{Env: env})
	if err != nil {
		return nil, nil, nil, &ConfigError{Problems: splitLines(err)}
	}
	return tools, eng, set.Warnings, nil
}

// ConfigError lists every problem of the configuration, one per line.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return fmt.Sprintf("the configuration has %d problem(s):\n%s", len(e.Problems), strings.Join(e.Problems, "\n"))
}

func splitLines(err error) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Run loads everything, serves until ctx ends, then drains: it stops taking
// requests, lets in-flight calls finish or reach their deadline (at most
// DrainTimeout), flushes the audit log and closes the store. Whatever was
// started is cleaned up when a later step fails.
func Run(ctx context.Context, o Options) (err error) {
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Socket == "" {
		o.Socket = filepath.Join(o.DataDir, DefaultSocketName)
	}
	// Workspaces are mounted into the sandbox by absolute path.
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("resolve data directory %s: %w", o.DataDir, err)
	}
	o.DataDir = abs
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(o.DataDir, "cache", "wazero")
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	log := o.Logger

	tools, eng, warnings, err := LoadConfig(o.ManifestsDir, o.PoliciesDir, nil)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn().Str("policies", o.PoliciesDir).Msg(w)
	}

	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w: pass a writable --data", o.DataDir, err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(o.DataDir, "airlock.db"), sqlite.Options{Synchronous: o.StoreSync})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()

	backend, err := wasm.New(ctx, wasm.Config{
		CacheDir: o.CacheDir, MaxInstances: o.MaxInstances, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("start the wasm sandbox: %w", err)
	}
	defer func() { _ = backend.Close(context.WithoutCancel(ctx)) }()

	x, err := executor.New(ctx, executor.Config{
		Tools: tools, Policy: eng, Backend: backend, Store: st, DataDir: o.DataDir, Logger: &log,
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if cerr := x.Close(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("flush the audit log: %w", cerr)
		}
	}()

	lis, err := listenUnix(o.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(o.Socket)

	gs := grpc.NewServer(
		grpc.Creds(identity.PeerCredentials()),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.ChainUnaryInterceptor(unaryAuth),
		grpc.ChainStreamInterceptor(streamAuth),
	)
	airlockv1.RegisterTaskServiceServer(gs, &taskService{x: x})
	airlockv1.RegisterIntentServiceServer(gs, &intentService{x: x})
	airlockv1.RegisterToolServiceServer(gs, &toolService{x: x})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	for _, svc := range []string{"", airlockv1.TaskService_ServiceDesc.ServiceName, airlockv1.IntentService_ServiceDesc.ServiceName, airlockv1.ToolService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	log.Info().Str("socket", o.Socket).Int("tools", len(tools)).Str("data", o.DataDir).Msg("airlock is serving")
	if o.Ready != nil {
		o.Ready(o.Socket)
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("grpc server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info().Dur("drain_timeout", o.DrainTimeout).Msg("draining: finishing in-flight calls")
	hs.Shutdown()
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(o.DrainTimeout):
		log.Warn().Msg("drain timeout: cancelling the calls still in flight")
		gs.Stop()
		<-done
	}
	log.Info().Msg("drained")
	return nil
}

// listenUnix listens on a unix socket with mode 0600. A stale socket file
// is replaced; a live one (another daemon) is an error.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket path %s exists and is not a socket: remove it or pass another --socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another daemon is serving on %s: stop it or pass another --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	old := syscall.Umask(0o177)
	lis, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("set mode of socket %s: %w", path, err)
	}
	if ul, ok := lis.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	return lis, nil
}
