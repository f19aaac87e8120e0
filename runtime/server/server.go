// Package server assembles and runs the executor daemon (`airlock serve`):
// it loads and validates every manifest and policy, opens the store,
// prepares the sandbox, and serves the planner API over gRPC on a unix
// socket (callers identified by the kernel) and, optionally, on a TCP
// address with SPIFFE mTLS (callers identified by their X.509-SVID), until
// its context ends, then drains.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/airlock-dev/airlock/internal/isolate"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
	"github.com/airlock-dev/airlock/runtime/server/approvalsweb"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/postgres"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
	"github.com/airlock-dev/airlock/sandbox"
	"github.com/airlock-dev/airlock/sandbox/plugin"
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
	// Store is a PostgreSQL URL (postgres://...) shared by several
	// executors; "" keeps the embedded SQLite store in DataDir.
	Store string
	// StoreSync is the SQLite synchronous mode: "full" (default) or "normal".
	StoreSync string
	// CredentialsFile is the operator's credential sources (kind:
	// Credentials); "" means none, and tools that declare credentials are
	// refused at load.
	CredentialsFile string
	// LeaseKeyFile is the key that seals lease revocation references (32
	// bytes, raw or hex; mode 0600), shared by every executor of one
	// deployment so that each can revoke the leases the others issued.
	// Required with a PostgreSQL Store and credential sources; "" keeps a
	// key of this executor alone in DataDir/keys.
	LeaseKeyFile string
	// CredentialsListen, when set, serves the jwt sources' JWKS and token
	// introspection over HTTP on this loopback address, for verifiers.
	CredentialsListen string
	// Egress performs tools' HTTP requests (default: the system resolver
	// and dialer, with egress's default bounds). Tests inject one whose
	// resolver and dialer reach only loopback test servers.
	Egress *egress.Client
	// Logger receives the daemon's logs and the audit mirror.
	Logger zerolog.Logger
	// Ready, when set, is called once the socket accepts connections.
	Ready func(socket string)

	// Listen, when set, is a TCP address (host:port) on which the same
	// services are served over mTLS with X.509-SVIDs, in addition to the
	// unix socket. Port 0 picks a free port (see ListenReady). A host that
	// is not loopback is refused unless ListenPublic is set.
	Listen string
	// ListenPublic allows Listen on a non-loopback address.
	ListenPublic bool
	// SVID is where the listener's own SVID and the trust bundles that
	// verify callers come from (the Workload API or files).
	SVID identity.SVIDConfig
	// Allow says which callers the mTLS listener admits: trust domains
	// and SPIFFE ID patterns. It must admit someone when Listen is set.
	Allow identity.Allow
	// ListenReady, when set, is called with the mTLS listener's actual
	// address once it accepts connections.
	ListenReady func(addr string)
	// PluginAcceptMissing lists the OS isolation layers (internal/isolate:
	// userns, pidns, mountns, ipcns, utsns, netns, rlimits, landlock,
	// seccomp, nonewprivs, caps) the operator accepts missing on this host.
	// Empty: a plugin tool is refused when any layer is unavailable.
	PluginAcceptMissing []string

	// Auditors are the SPIFFE ID patterns of the callers that may read the
	// audit log through the AuditService (StreamAudit, VerifyAudit).
	// Empty: executor.LocalOperators (the executor's own uid and root on
	// the unix socket).
	Auditors []string
	// ApprovalsListen, when set, serves the approvals web page on this
	// loopback address (port 0 picks a free port); OpenApprovalsPage mints
	// links to it. A non-loopback address is refused.
	ApprovalsListen string

	// ApprovalTTL bounds how long an approval stays pending (default 1h,
	// never past its task's expiry); ApprovalWaitMax caps how long Submit
	// and GetIntent wait for a decision (default 5m); ApprovalPoll is how
	// often the approvals loop runs approved intents nobody waits for
	// (default 500ms).
	ApprovalTTL, ApprovalWaitMax, ApprovalPoll time.Duration
	// ExecutorID names this executor in audit events and idempotency
	// reservations (see executor.Config.ExecutorID). Empty: the hostname
	// and a random suffix, new on every start.
	ExecutorID string
	// IdempotencyTTL is how long an idempotency key stays bound to its
	// intent before it is purged (see executor.Config.IdempotencyTTL).
	// Zero: 24h, or the floor when that is longer; a value below the
	// floor (executor.IdempotencyTTLFloor, at least 1h) is refused.
	IdempotencyTTL time.Duration
	// Approvers are the SPIFFE ID patterns of the callers that may list,
	// approve and deny every approval (never their own intent's). Empty:
	// executor.LocalOperators (the executor's own uid and root on the unix
	// socket); other callers see only their own approvals.
	Approvers []string
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

	// The mTLS flags are checked before anything is loaded or opened.
	var authz *identity.Authorizer
	if o.Listen != "" {
		if err := CheckListenAddr(ctx, o.Listen, o.ListenPublic); err != nil {
			return err
		}
		if authz, err = identity.NewAuthorizer(o.Allow); err != nil {
			return err
		}
	} else if o.ListenPublic {
		return fmt.Errorf("--listen-public needs --listen ADDRESS")
	}
	auditors, err := NewAuditors(o.Auditors)
	if err != nil {
		return err
	}
	approvers, err := parseApprovers(o.Approvers)
	if err != nil {
		return err
	}
	if o.ApprovalsListen != "" {
		if err := approvalsweb.CheckAddr(o.ApprovalsListen); err != nil {
			return err
		}
	}
	if err := checkCredentialsListen(o.CredentialsListen, o.CredentialsFile); err != nil {
		return err
	}
	if o.ExecutorID != "" {
		if err := executor.CheckExecutorID(o.ExecutorID); err != nil {
			return fmt.Errorf("--executor-id: %w", err)
		}
	}
	if o.IdempotencyTTL < 0 || (o.IdempotencyTTL > 0 && o.IdempotencyTTL < executor.MinIdempotencyTTL) {
		return fmt.Errorf("--idempotency-ttl %s is below the minimum %s: idempotency keys must outlive every intent that may still run: set --idempotency-ttl to at least %s (default 24h)",
			o.IdempotencyTTL, executor.MinIdempotencyTTL, executor.MinIdempotencyTTL)
	}

	leaseKey, err := loadLeaseKey(o)
	if err != nil {
		return err
	}

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
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := OpenStore(ctx, o.Store, o.DataDir, o.StoreSync, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()

	wcfg := wasm.Config{CacheDir: o.CacheDir, MaxInstances: o.MaxInstances, Logger: log}
	if uid, gid := isolate.SandboxIDs(); uid != os.Geteuid() {
		// Native plugins of a task run as another uid than the executor:
		// what WASM tools create in the workspace is theirs too.
		wcfg.WorkspaceOwner = &wasm.Owner{UID: uid, GID: gid}
	}
	backend, err := wasm.New(ctx, wcfg)
	if err != nil {
		return fmt.Errorf("start the wasm sandbox: %w", err)
	}
	defer func() { _ = backend.Close(context.WithoutCancel(ctx)) }()
	// Native plugin tools run in isolated processes (sandbox/plugin).
	plugins, err := plugin.New(ctx, plugin.Config{Logger: log, Accept: o.PluginAcceptMissing})
	if err != nil {
		return fmt.Errorf("start the plugin sandbox: %w", err)
	}
	defer func() { _ = plugins.Close(context.WithoutCancel(ctx)) }()
	sandboxes := &sandbox.Mux{Wasm: backend, Plugin: plugins}
	warnMissingIsolation(log, tools, o.PluginAcceptMissing)

	if o.Egress == nil {
		o.Egress = egress.New(egress.Config{Logger: log})
	}
	var creds *credentials.Registry
	if o.CredentialsFile != "" {
		if creds, err = credentials.Load(o.CredentialsFile); err != nil {
			return err
		}
		defer creds.Close()
	}
	x, err := executor.New(ctx, executor.Config{
		Tools: tools, Policy: eng, Backend: sandboxes, Store: st, DataDir: o.DataDir, Logger: &log,
		Egress: o.Egress, Credentials: creds, LeaseKey: leaseKey,
		ApprovalTTL: o.ApprovalTTL, ApprovalWaitMax: o.ApprovalWaitMax, ApprovalPoll: o.ApprovalPoll, Approvers: approvers,
		ExecutorID: o.ExecutorID, IdempotencyTTL: o.IdempotencyTTL,
		// The embedded SQLite store under --data is this executor's alone.
		SoleExecutor: !isPostgresURL(o.Store),
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

	// The mTLS listener's identity and listening address come first: a
	// bad flag or an unreachable Workload API fails before the socket
	// is taken.
	var tcp *mtlsListener
	if o.Listen != "" {
		tcp, err = openMTLS(ctx, o, authz, log)
		if err != nil {
			return err
		}
		defer tcp.close()
	}

	if o.CredentialsListen != "" {
		stop, err := serveCredentials(o.CredentialsListen, creds, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	ext := newExtraServices(st, auditors)
	if o.ApprovalsListen != "" {
		page, stop, err := startApprovalsPage(o.ApprovalsListen, x, log)
		if err != nil {
			return err
		}
		defer stop()
		ext.page = page
	}

	lis, err := listenUnix(o.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(o.Socket)

	hs := health.NewServer()
	// drain ends the streams that follow (see streamAuth) when draining
	// begins.
	drain, startDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer startDrain()
	servers := []*grpc.Server{newGRPCServer(x, hs, ext, drain, grpc.Creds(identity.PeerCredentials()))}
	listeners := []net.Listener{lis}
	if tcp != nil {
		servers = append(servers, newGRPCServer(x, hs, ext, drain, grpc.Creds(tcp.creds), grpc.ConnectionTimeout(MTLSHandshakeTimeout)))
		listeners = append(listeners, tcp.lis)
	}
	for _, svc := range []string{"", airlockv1.TaskService_ServiceDesc.ServiceName, airlockv1.IntentService_ServiceDesc.ServiceName, airlockv1.ToolService_ServiceDesc.ServiceName, airlockv1.ApprovalService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}

	serveErr := make(chan error, len(servers))
	for i, gs := range servers {
		go func() { serveErr <- gs.Serve(listeners[i]) }()
	}
	ev := log.Info().Str("socket", o.Socket).Int("tools", len(tools)).Str("data", o.DataDir)
	if tcp != nil {
		ev = ev.Str("listen", tcp.lis.Addr().String()).Str("spiffe_id", tcp.id)
	}
	ev.Msg("airlock is serving")
	if o.Ready != nil {
		o.Ready(o.Socket)
	}
	if tcp != nil && o.ListenReady != nil {
		o.ListenReady(tcp.lis.Addr().String())
	}

	var runErr error
	select {
	case err := <-serveErr:
		runErr = fmt.Errorf("grpc server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info().Dur("drain_timeout", o.DrainTimeout).Msg("draining: finishing in-flight calls")
	hs.Shutdown()
	startDrain()
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, gs := range servers {
			wg.Go(gs.GracefulStop)
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(o.DrainTimeout):
		log.Warn().Msg("drain timeout: cancelling the calls still in flight")
		for _, gs := range servers {
			gs.Stop()
		}
		<-done
	}
	log.Info().Msg("drained")
	return runErr
}

// newGRPCServer builds a gRPC server with the planner API, health and
// reflection, identifying callers with the given credentials. Its streams
// end when drain ends.
func newGRPCServer(x *executor.Executor, hs *health.Server, ext *extraServices, drain context.Context, opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.ChainUnaryInterceptor(unaryAuth),
		grpc.ChainStreamInterceptor(streamAuth(drain)),
	}, opts...)...)
	airlockv1.RegisterTaskServiceServer(gs, &taskService{x: x})
	airlockv1.RegisterIntentServiceServer(gs, &intentService{x: x})
	airlockv1.RegisterToolServiceServer(gs, &toolService{x: x})
	ext.register(gs)
	airlockv1.RegisterApprovalServiceServer(gs, ext.withApprovalsPage(&approvalService{x: x}))
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return gs
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

// checkCredentialsListen checks --credentials-listen before anything is
// loaded: it needs credential sources and a loopback host:port.
func checkCredentialsListen(addr, credentialsFile string) error {
	if addr == "" {
		return nil
	}
	if credentialsFile == "" {
		return fmt.Errorf("--credentials-listen %s needs --credentials FILE", addr)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--credentials-listen %q: %w: write host:port", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--credentials-listen %s: serve the JWKS on a loopback address and publish it through a proxy you control", addr)
	}
	return nil
}

// serveCredentials serves the jwt sources' JWKS and introspection on addr
// (checked by checkCredentialsListen), for the services that verify
// minted tokens.
func serveCredentials(addr string, creds *credentials.Registry, log zerolog.Logger) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--credentials-listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: creds.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() { _ = srv.Serve(l) }()
	log.Info().Str("addr", l.Addr().String()).Msg("serving JWKS and token introspection")
	return func() { _ = srv.Close() }, nil
}

// OpenStore opens the store: PostgreSQL when url is a postgres:// or
// postgresql:// URL, else the embedded SQLite file in dataDir.
func OpenStore(ctx context.Context, url, dataDir, sync string, log zerolog.Logger) (store.Store, error) {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return postgres.Open(ctx, url, postgres.Options{Logger: log})
	}
	if url != "" {
		return nil, fmt.Errorf("--store %q: give a postgres:// URL, or leave it empty for SQLite under --data", url)
	}
	return sqlite.Open(ctx, filepath.Join(dataDir, "airlock.db"), sqlite.Options{Synchronous: sync, Logger: log})
}

// loadLeaseKey loads --lease-key-file. Several executors share a
// PostgreSQL store: when they lease credentials, each must be able to
// revoke the leases the others issued (a task ended on one, an executor
// that never comes back), so the key is required then.
func loadLeaseKey(o Options) (*credentials.Sealer, error) {
	if o.LeaseKeyFile == "" {
		if o.CredentialsFile != "" && isPostgresURL(o.Store) {
			return nil, fmt.Errorf("--store postgres://... with --credentials needs --lease-key-file FILE, the same file for every executor of the store, so that each can revoke the leases the others issued: create it with (umask 077; openssl rand -hex 32 > FILE)")
		}
		return nil, nil
	}
	// Checked even without credential sources: a deployment passes the
	// same flags to every executor.
	return credentials.LoadSealerFile(o.LeaseKeyFile)
}

func isPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// warnMissingIsolation says at start which isolation layers this kernel
// lacks when native plugin tools are loaded: their calls are refused
// unless the operator accepted the layer (--plugin-accept-missing).
func warnMissingIsolation(log zerolog.Logger, tools []*manifest.Manifest, accepted []string) {
	var plugins []string
	for _, m := range tools {
		if m.Spec.Runtime.Plugin != nil {
			plugins = append(plugins, m.Metadata.Name)
		}
	}
	if len(plugins) == 0 {
		return
	}
	ok := map[string]bool{}
	for _, a := range accepted {
		ok[a] = true
	}
	for l, why := range isolate.Probe().Missing {
		if ok[string(l)] {
			log.Warn().Str("layer", string(l)).Str("why", why).Msg("native plugin tools run without this isolation layer: --plugin-accept-missing accepts it")
			continue
		}
		log.Error().Str("layer", string(l)).Str("why", why).Strs("tools", plugins).
			Msg("this kernel lacks an isolation layer: these native plugin tools are refused until it is available or --plugin-accept-missing " + string(l) + " accepts the weaker mode")
	}
}

// lockDataDir takes an exclusive lock on DATA/airlock.lock for the life of
// the executor: one executor per data directory. Its workspaces, keys and
// (with SQLite) its store are its own, and an executor alone on its store
// trusts its task cache (executor.Config.SoleExecutor). The kernel drops the
// lock when the process dies, so a restart after kill -9 takes it again.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "airlock.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w: pass a writable --data", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another airlock serve: stop it, or give this executor its own --data (executors share state through --store postgres://...)", dir)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
