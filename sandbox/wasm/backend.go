// Package wasm is the WebAssembly sandbox backend: it runs WASI preview1
// tools with wazero's compiler, a fresh instance per call, with only what
// the tool's manifest grants (ARCHITECTURE.md 3.4).
//
// Each prepared tool has its own wazero runtime, because the memory limit is
// a property of the runtime; all runtimes share one compilation cache (in
// memory and, with Config.CacheDir, on disk), so a module used by several
// tools is compiled once and a restart does not recompile.
package wasm

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
)

// Defaults of Config.
const (
	// DefaultWorkspaceQuota and DefaultWorkspaceMaxFiles bound a task's
	// workspace (sandbox's defaults, shared with the plugin backend).
	DefaultWorkspaceQuota    = sandbox.DefaultWorkspaceQuota
	DefaultWorkspaceMaxFiles = sandbox.DefaultWorkspaceMaxFiles
	DefaultMaxInstances      = 64
	DefaultMaxStderr         = 64 << 10
	// DefaultToolConcurrency bounds a tool's instances when its manifest
	// sets no limits.concurrency.
	DefaultToolConcurrency = 16
)

// HostModule is the module name of airlock's host functions (ABI v1).
const HostModule = "airlock_v1"

// pageSize is the size of a WebAssembly memory page.
const pageSize = 65536

// maxPages is the most pages a 32-bit memory can have.
const maxPages = 65536

// Config configures a Backend. The zero value is usable; a Config is copied
// by New and not read again.
type Config struct {
	// CacheDir holds compiled modules on disk so a restart does not
	// recompile. "" keeps the cache in memory only.
	CacheDir string
	// MaxInstances bounds the instances running at once across all tools
	// (default DefaultMaxInstances).
	MaxInstances int
	// MaxStderr caps the stderr kept per call; a guest writing more is
	// stopped with sandbox.KindOutputLimit (default DefaultMaxStderr).
	MaxStderr int
	// MaxHTTPRequests bounds the airlock_v1 HTTP requests of one call
	// (default DefaultMaxHTTPRequests).
	MaxHTTPRequests int
	// MaxHTTPResponseBytes bounds the response body bytes one call may
	// receive over all its requests; a response past it is truncated
	// (default DefaultMaxHTTPResponseBytes).
	MaxHTTPResponseBytes int64
	// MaxHTTPRequestBytes bounds the JSON request a guest passes to
	// http_request (default DefaultMaxHTTPRequestBytes).
	MaxHTTPRequestBytes int
	// WorkspaceQuota bounds the bytes a task's workspace may hold; a write
	// past it fails (EIO) in the guest (default DefaultWorkspaceQuota).
	WorkspaceQuota int64
	// WorkspaceMaxFiles bounds the files and directories a task's workspace
	// may hold (default DefaultWorkspaceMaxFiles).
	WorkspaceMaxFiles int64
	// WorkspaceOwner, when set, owns every file and directory a guest
	// creates in a workspace. An executor running as root sets it to the
	// unprivileged uid its native plugin tools run as, so that a plugin of
	// the same task can read what a WASM tool wrote (files are created
	// 0600 by most guests). nil (the default) leaves them to the
	// executor's uid.
	WorkspaceOwner *Owner
	// Logger receives prepare and run events; the zero value logs nothing
	// (like zerolog.Nop()). Guest output and environment are never logged.
	Logger zerolog.Logger
}

// Owner is a host uid and gid.
type Owner struct{ UID, GID int }

// Backend prepares WebAssembly tools. It is safe for concurrent use.
type Backend struct {
	cache     wazero.CompilationCache
	global    chan struct{}
	maxStderr int
	wsQuota   int64 // bytes a task workspace may hold
	wsFiles   int64 // entries a task workspace may hold
	wsOwner   *Owner
	log       zerolog.Logger
	httpReqs  int
	httpBytes int64
	httpReq   uint32

	mu     sync.Mutex
	tools  map[*tool]struct{}
	closed bool
}

var (
	_ sandbox.Backend = (*Backend)(nil)
	_ sandbox.Tool    = (*tool)(nil)
)

// New returns a Backend with the compilation cache of cfg.
func New(_ context.Context, cfg Config) (*Backend, error) {
	if cfg.MaxInstances < 0 || cfg.MaxStderr < 0 || cfg.MaxHTTPRequests < 0 || cfg.MaxHTTPResponseBytes < 0 || cfg.MaxHTTPRequestBytes < 0 {
		return nil, errors.New("wasm backend: MaxInstances, MaxStderr and the MaxHTTP limits must not be negative (0 selects the default)")
	}
	if cfg.MaxHTTPRequests == 0 {
		cfg.MaxHTTPRequests = DefaultMaxHTTPRequests
	}
	if cfg.MaxHTTPResponseBytes == 0 {
		cfg.MaxHTTPResponseBytes = DefaultMaxHTTPResponseBytes
	}
	if cfg.MaxHTTPRequestBytes == 0 || cfg.MaxHTTPRequestBytes > 1<<30 {
		cfg.MaxHTTPRequestBytes = DefaultMaxHTTPRequestBytes
	}
	if cfg.MaxInstances == 0 {
		cfg.MaxInstances = DefaultMaxInstances
	}
	if cfg.MaxStderr == 0 {
		cfg.MaxStderr = DefaultMaxStderr
	}
	if cfg.WorkspaceQuota <= 0 {
		cfg.WorkspaceQuota = DefaultWorkspaceQuota
	}
	if cfg.WorkspaceMaxFiles <= 0 {
		cfg.WorkspaceMaxFiles = DefaultWorkspaceMaxFiles
	}
	log := cfg.Logger
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm backend: open compilation cache %s: %w (check the directory is writable or set another cache directory)", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	return &Backend{
		cache:     cache,
		global:    make(chan struct{}, cfg.MaxInstances),
		maxStderr: cfg.MaxStderr,
		wsQuota:   cfg.WorkspaceQuota,
		wsFiles:   cfg.WorkspaceMaxFiles,
		wsOwner:   cfg.WorkspaceOwner,
		httpReqs:  cfg.MaxHTTPRequests,
		httpBytes: cfg.MaxHTTPResponseBytes,
		httpReq:   uint32(cfg.MaxHTTPRequestBytes),
		log:       log.With().Str("component", "sandbox.wasm").Logger(),
		tools:     map[*tool]struct{}{},
	}, nil
}

// moduleError is a Prepare failure about the module of m.
func moduleError(format string, args ...any) *sandbox.Error {
	return &sandbox.Error{Kind: sandbox.KindModule, Message: fmt.Sprintf(format, args...)}
}

// Prepare verifies, checks and compiles the module of m. Every failure is a
// *sandbox.Error of kind KindModule naming the module and what to do.
func (b *Backend) Prepare(ctx context.Context, m *manifest.Manifest) (sandbox.Tool, error) {
	if m == nil || m.Spec.Runtime.Wasm == nil {
		return nil, moduleError("manifest has no spec.runtime.wasm: the wasm backend runs only wasm tools")
	}
	name := m.Metadata.Name
	if name == "" {
		return nil, moduleError("manifest has no metadata.name")
	}
	path := m.Spec.Runtime.Wasm.Module
	if !filepath.IsAbs(path) {
		return nil, moduleError("tool %s: module path %q is not absolute (the manifest loader resolves it against the manifest's directory)", name, path)
	}
	lim := m.Spec.Limits
	if lim.Memory <= 0 || lim.Timeout <= 0 || lim.Output <= 0 {
		return nil, moduleError("tool %s: limits.memory, limits.timeout and limits.output must be positive (got %d bytes, %s, %d bytes): set them in the manifest", name, lim.Memory, time.Duration(lim.Timeout), lim.Output)
	}
	if lim.Concurrency < 0 {
		return nil, moduleError("tool %s: limits.concurrency %d is negative: set a positive bound or leave it out for %d", name, lim.Concurrency, DefaultToolConcurrency)
	}
	pages := uint64(lim.Memory) / pageSize
	if pages == 0 || pages > maxPages {
		return nil, moduleError("tool %s: limits.memory %d bytes is not between 64KiB and 4GiB: set it in that range", name, lim.Memory)
	}
	want := strings.ToLower(m.Spec.Runtime.Wasm.SHA256)

	bin, got, fp, err := readModule(path)
	if err != nil {
		return nil, &sandbox.Error{Kind: sandbox.KindModule, Message: fmt.Sprintf("tool %s: cannot read module %s: check the path in the manifest", name, path), Err: err}
	}
	if got != want {
		return nil, moduleError("tool %s: module %s has sha256 %s but the manifest pins %s: rebuild the module from the reviewed source or update spec.runtime.wasm.sha256 after reviewing the new module", name, path, got, want)
	}

	scan, err := scanModule(bin)
	if err != nil {
		return nil, &sandbox.Error{Kind: sandbox.KindModule, Message: fmt.Sprintf("tool %s: module %s does not parse as WebAssembly: rebuild it for wasip1 (GOOS=wasip1 GOARCH=wasm)", name, path), Err: err}
	}
	for _, mem := range scan.Memories {
		if mem.Min > pages {
			return nil, moduleError("tool %s: module %s declares a minimum memory of %d pages (%d bytes), more than limits.memory allows (%d pages, %d bytes): raise limits.memory", name, path, mem.Min, mem.Min*pageSize, pages, pages*pageSize)
		}
	}
	if err := checkImports(scan.Imports, m, path); err != nil {
		return nil, err
	}
	if _, ok := scan.Exports["_start"]; !ok {
		if _, ok := scan.Exports["_initialize"]; ok {
			return nil, moduleError("tool %s: module %s is a reactor (exports _initialize but not _start), which this executor does not run yet: build it as a command (a main package without -buildmode=c-shared)", name, path)
		}
		return nil, moduleError("tool %s: module %s exports no _start function: build it as a WASI command (a Go main package with GOOS=wasip1 GOARCH=wasm)", name, path)
	}

	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, &sandbox.Error{Kind: sandbox.KindInternal, Message: "the wasm backend is closed"}
	}

	// The runtime lets memory grow to the wasm maximum so that every grow
	// reaches the memoryGuard, which enforces limits.memory and records a
	// refusal (see memoryGuard).
	rcfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(b.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(maxPages)
	rt := wazero.NewRuntimeWithConfig(ctx, rcfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, &sandbox.Error{Kind: sandbox.KindInternal, Message: "cannot instantiate wasi_snapshot_preview1", Err: err}
	}
	if len(m.Spec.Capabilities.Network) > 0 {
		if err := instantiateHostModule(ctx, rt); err != nil {
			_ = rt.Close(ctx)
			return nil, &sandbox.Error{Kind: sandbox.KindInternal, Message: "cannot instantiate the " + HostModule + " host module", Err: err}
		}
	}
	start := time.Now()
	compiled, err := rt.CompileModule(ctx, bin)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, &sandbox.Error{Kind: sandbox.KindModule, Message: fmt.Sprintf("tool %s: module %s is not a valid WebAssembly module: rebuild it for wasip1", name, path), Err: err}
	}
	if err := checkSignatures(rt, compiled, name, path); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}

	t := newTool(b, m, rt, compiled, &pin{path: path, want: want, last: fp, ok: true, got: got}, pages)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = rt.Close(ctx)
		return nil, &sandbox.Error{Kind: sandbox.KindInternal, Message: "the wasm backend is closed"}
	}
	b.tools[t] = struct{}{}
	b.mu.Unlock()
	b.log.Info().Str("tool", name).Str("module", path).Str("sha256", got).
		Uint64("memory_pages", pages).Dur("compile", time.Since(start)).Msg("tool prepared")
	return t, nil
}

// checkImports refuses every import the manifest does not grant: only
// wasi_snapshot_preview1 functions, and the airlock_v1 functions this
// executor provides when network is granted.
func checkImports(imports []importEntry, m *manifest.Manifest, path string) error {
	name := m.Metadata.Name
	for _, im := range imports {
		what := fmt.Sprintf("%s.%s", im.Module, im.Name)
		switch im.Module {
		case wasi_snapshot_preview1.ModuleName:
			if im.Kind != externFunc {
				return moduleError("tool %s: module %s imports %s, which is not a function: wasi_snapshot_preview1 provides functions only", name, path, what)
			}
		case HostModule:
			if len(m.Spec.Capabilities.Network) == 0 {
				return moduleError("tool %s: module %s imports host function %s but the manifest grants no network: grant capabilities.network or rebuild the tool without it", name, path, what)
			}
			if im.Kind != externFunc || !hostFuncs[im.Name] {
				return moduleError("tool %s: module %s imports host function %s, which is not provided by this executor: upgrade airlock or rebuild the tool without it", name, path, what)
			}
		default:
			return moduleError("tool %s: module %s imports %s, which is not granted: a tool may import only wasi_snapshot_preview1 and %s functions; rebuild it without that import", name, path, what, HostModule)
		}
	}
	return nil
}

// checkSignatures refuses a WASI import that does not exist or has the
// wrong type, at Prepare rather than at the first call.
func checkSignatures(rt wazero.Runtime, compiled wazero.CompiledModule, name, path string) error {
	wasi := rt.Module(wasi_snapshot_preview1.ModuleName)
	if wasi == nil {
		return &sandbox.Error{Kind: sandbox.KindInternal, Message: "wasi_snapshot_preview1 is not instantiated"}
	}
	provided := map[string]map[string]api.FunctionDefinition{wasi_snapshot_preview1.ModuleName: wasi.ExportedFunctionDefinitions()}
	if hm := rt.Module(HostModule); hm != nil {
		provided[HostModule] = hm.ExportedFunctionDefinitions()
	}
	for _, def := range compiled.ImportedFunctions() {
		mod, fn, _ := def.Import()
		h, ok := provided[mod][fn]
		if !ok {
			return moduleError("tool %s: module %s imports %s.%s, which this executor does not provide: rebuild it for wasip1", name, path, mod, fn)
		}
		if !sameTypes(def.ParamTypes(), h.ParamTypes()) || !sameTypes(def.ResultTypes(), h.ResultTypes()) {
			if mod == HostModule {
				return moduleError("tool %s: module %s imports host function %s.%s with type %s, which is not provided by this executor (it provides %s): rebuild the tool with the current tools/sdk", name, path, mod, fn, signature(def), signature(h))
			}
			return moduleError("tool %s: module %s imports %s.%s with the wrong signature: rebuild it for wasip1", name, path, mod, fn)
		}
	}
	for _, def := range compiled.ImportedMemories() {
		mod, n, _ := def.Import()
		return moduleError("tool %s: module %s imports memory %s.%s, which is not granted: rebuild it to define its own memory", name, path, mod, n)
	}
	return nil
}

// signature writes a function type like (i32, i32) -> i32.
func signature(def api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(def.ParamTypes()) + " -> " + names(def.ResultTypes())
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Close closes every prepared tool (waiting for their running calls until
// ctx is done) and the compilation cache.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	tools := make([]*tool, 0, len(b.tools))
	for t := range b.tools {
		tools = append(tools, t)
	}
	b.mu.Unlock()
	sort.Slice(tools, func(i, j int) bool { return tools[i].name < tools[j].name })
	var errs []error
	for _, t := range tools {
		if err := t.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.cache.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close compilation cache: %w", err))
	}
	return errors.Join(errs...)
}

// forget drops a closed tool.
func (b *Backend) forget(t *tool) {
	b.mu.Lock()
	delete(b.tools, t)
	b.mu.Unlock()
}
