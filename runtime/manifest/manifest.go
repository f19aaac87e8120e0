package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Bounds of Limits, checked at load.
const (
	MinMemory      = 2 * MiB
	MaxMemory      = 4 * GiB
	MinTimeout     = Duration(time.Millisecond)
	MaxTimeout     = Duration(10 * time.Minute)
	MinOutput      = KiB
	MaxOutput      = 64 * MiB
	MinConcurrency = 1
	MaxConcurrency = 1024

	// WasmPageSize is the size of a WebAssembly memory page; memory limits
	// are whole pages.
	WasmPageSize = 64 * KiB

	// MaxModuleBytes bounds the size of a tool's module file or plugin
	// binary.
	MaxModuleBytes = 256 * MiB

	// Bounds and defaults of the plugin limits.
	MinProcesses        = 1
	MaxProcesses        = 4096
	DefaultProcesses    = 16
	MinOpenFiles        = 16
	MaxOpenFiles        = 65536
	DefaultOpenFiles    = 256
	MinCPUTime          = Duration(10 * time.Millisecond)
	MaxCPUTime          = Duration(time.Hour)
	MinFileSize         = KiB
	MaxFileSize         = 64 * GiB
	DefaultFileSize     = 64 * MiB
	DefaultPluginMemory = 2 * GiB

	// MaxPluginArgs bounds spec.runtime.plugin.args, and MaxPluginArgBytes
	// each of them.
	MaxPluginArgs     = 64
	MaxPluginArgBytes = 4096
)

// DefaultLimits are the limits of a manifest that sets none: memory 64MiB,
// timeout 10s, output 1MiB, concurrency 16.
func DefaultLimits() Limits {
	return Limits{Memory: 64 * MiB, Timeout: Duration(10 * time.Second), Output: MiB, Concurrency: 16}
}

// Network rule defaults, filled in at load when a rule leaves them out
// (ports stay empty: the scheme's port).
var (
	defaultSchemes = []string{"https"}
	defaultMethods = []string{"GET"}
	defaultPaths   = []string{"/**"}
)

// InputSchema is the compiled JSON Schema of the arguments (nil unless the
// manifest came from LoadFile, LoadDir).
func (m *Manifest) InputSchema() *jsonschema.Schema { return m.inputSchema }

// OutputSchema is the compiled JSON Schema of the result (nil unless the
// manifest came from LoadFile, LoadDir).
func (m *Manifest) OutputSchema() *jsonschema.Schema { return m.outputSchema }

// ModulePath is the absolute, cleaned path of the tool's WebAssembly
// module, or "" for a tool that is not a wasm tool.
func (m *Manifest) ModulePath() string {
	if m.Spec.Runtime.Wasm == nil {
		return ""
	}
	return m.Spec.Runtime.Wasm.Module
}

// Digest is the SHA-256 (lowercase hex) the manifest pins for the tool's
// module or plugin binary.
func (m *Manifest) Digest() string {
	switch {
	case m.Spec.Runtime.Wasm != nil:
		return m.Spec.Runtime.Wasm.SHA256
	case m.Spec.Runtime.Plugin != nil:
		return m.Spec.Runtime.Plugin.SHA256
	}
	return ""
}

// PluginPath is the absolute, cleaned path of the tool's plugin binary,
// or "" for a tool that is not a plugin tool.
func (m *Manifest) PluginPath() string {
	if m.Spec.Runtime.Plugin == nil {
		return ""
	}
	return m.Spec.Runtime.Plugin.Command
}

// MemoryPages is the memory limit in 64KiB WebAssembly pages.
func (m *Manifest) MemoryPages() uint32 {
	return uint32(m.Spec.Limits.Memory / WasmPageSize)
}

// GrantsWorkspace reports whether the tool is granted the task workspace,
// and whether only for reading.
func (m *Manifest) GrantsWorkspace() (granted, readOnly bool) {
	for _, g := range m.Spec.Capabilities.Filesystem {
		if g.Path == "workspace" {
			return true, g.Access != AccessReadWrite
		}
	}
	return false, false
}

// ReadModule reads the tool's module and checks it against the pinned
// digest, so that the bytes a caller compiles are the bytes that were
// verified (the file may have changed since the manifest was loaded).
func (m *Manifest) ReadModule() ([]byte, error) {
	w := m.Spec.Runtime.Wasm
	if w == nil {
		return nil, fmt.Errorf("tool %s has no wasm module", m.Metadata.Name)
	}
	var buf bytes.Buffer
	sum, err := hashFile(w.Module, &buf)
	if err != nil {
		return nil, err
	}
	if sum != w.SHA256 {
		return nil, digestMismatch(w.Module, sum, w.SHA256)
	}
	return buf.Bytes(), nil
}

func digestMismatch(module, got, pinned string) error {
	return fmt.Errorf("module %s has sha256 %s but the manifest pins %s: rebuild the module or update the pin", module, got, pinned)
}

// hashFile returns the SHA-256 of a regular file of at most MaxModuleBytes,
// copying its bytes to w as well when w is not nil.
func hashFile(path string, w io.Writer) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot open module: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("cannot stat module: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("module %s is not a regular file", path)
	}
	if fi.Size() > int64(MaxModuleBytes) {
		return "", fmt.Errorf("module %s is %d bytes, over the limit of %s", path, fi.Size(), MaxModuleBytes)
	}
	h := sha256.New()
	dst := io.Writer(h)
	if w != nil {
		dst = io.MultiWriter(h, w)
	}
	n, err := io.Copy(dst, io.LimitReader(f, int64(MaxModuleBytes)+1))
	if err != nil {
		return "", fmt.Errorf("cannot read module %s: %w", path, err)
	}
	if n > int64(MaxModuleBytes) {
		return "", fmt.Errorf("module %s grew over the limit of %s while being read", path, MaxModuleBytes)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
