package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Defaults of ToolManifest.
const (
	DefaultToolInput       = "{type: object}"
	DefaultToolOutput      = "{}"
	DefaultToolMemory      = "16MiB"
	DefaultToolTimeout     = "2s"
	DefaultToolOutputLimit = "64KiB"
)

// ToolManifest describes a tool manifest for a test module. WriteManifest
// turns it into a YAML file that the real manifest loader reads.
type ToolManifest struct {
	// Name is the tool name, like "hostile.spin" (required).
	Name string
	// Module is the module's path, absolute or relative to the manifest
	// directory (required).
	Module string
	// SHA256 is the pinned digest. Default: the module file's actual digest.
	SHA256 string
	// Input is the input JSON Schema in YAML flow style. Default
	// DefaultToolInput (any object).
	Input string
	// Output is the output JSON Schema in YAML flow style. Default
	// DefaultToolOutput (any JSON value).
	Output string
	// Memory, Timeout and OutputLimit are the limits as the manifest writes
	// them ("16MiB", "300ms", "64KiB"). Defaults DefaultToolMemory,
	// DefaultToolTimeout and DefaultToolOutputLimit.
	Memory, Timeout, OutputLimit string
	// Concurrency is limits.concurrency; 0 leaves it out (the default).
	Concurrency int
	// Workspace is the access to the task workspace: "" grants none, else
	// "read-only" or "read-write".
	Workspace string
	// Network lists hosts granted with the default rule (https GET).
	Network []string
	// Env is capabilities.env.
	Env map[string]string
}

// WriteManifest writes m as dir/<name>.yaml and returns the file's path.
func WriteManifest(tb testing.TB, dir string, m ToolManifest) string {
	tb.Helper()
	if m.Name == "" || m.Module == "" {
		tb.Fatalf("testenv.WriteManifest: Name and Module are required (got %q, %q)", m.Name, m.Module)
	}
	if m.SHA256 == "" {
		mod := m.Module
		if !filepath.IsAbs(mod) {
			mod = filepath.Join(dir, mod)
		}
		m.SHA256 = SHA256File(tb, mod)
	}
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: airlock.dev/v1\nkind: Tool\nmetadata:\n")
	fmt.Fprintf(&b, "  name: %s\n  version: 1.0.0\n  description: %s\n", quote(m.Name), quote("test tool "+m.Name))
	fmt.Fprintf(&b, "spec:\n  runtime:\n    wasm:\n      module: %s\n      sha256: %s\n", quote(m.Module), quote(m.SHA256))
	fmt.Fprintf(&b, "  input: %s\n  output: %s\n", def(m.Input, DefaultToolInput), def(m.Output, DefaultToolOutput))
	if m.Workspace == "" && len(m.Network) == 0 && len(m.Env) == 0 {
		b.WriteString("  capabilities: {}\n")
	} else {
		b.WriteString("  capabilities:\n")
	}
	if m.Workspace != "" {
		fmt.Fprintf(&b, "    filesystem: [{path: workspace, access: %s}]\n", quote(m.Workspace))
	}
	if len(m.Network) > 0 {
		b.WriteString("    network:\n")
		for _, h := range m.Network {
			fmt.Fprintf(&b, "      - {host: %s}\n", quote(h))
		}
	}
	if len(m.Env) > 0 {
		keys := make([]string, 0, len(m.Env))
		for k := range m.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("    env:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "      %s: %s\n", quote(k), quote(m.Env[k]))
		}
	}
	fmt.Fprintf(&b, "  limits: {memory: %s, timeout: %s, output: %s",
		def(m.Memory, DefaultToolMemory), def(m.Timeout, DefaultToolTimeout), def(m.OutputLimit, DefaultToolOutputLimit))
	if m.Concurrency != 0 {
		fmt.Fprintf(&b, ", concurrency: %d", m.Concurrency)
	}
	b.WriteString("}\n  risk: low\n")
	path := filepath.Join(dir, m.Name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatalf("write manifest %s: %v", path, err)
	}
	return path
}

// Manifests writes every manifest into a new temp directory and returns the
// directory, ready for Options.Manifests.
func Manifests(tb testing.TB, ms ...ToolManifest) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, m := range ms {
		WriteManifest(tb, dir, m)
	}
	return dir
}

// quote writes s as a YAML double-quoted scalar (a JSON string is one).
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
