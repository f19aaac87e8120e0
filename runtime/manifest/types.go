// Package manifest loads capability manifests: strict YAML files, one per
// tool version, that say what a tool is and exactly what it may reach.
//
// A manifest is trusted operator input. Loading is strict: unknown keys,
// wrong types and missing required fields are errors that carry the file
// and line, and the module digest is verified before anything runs.
package manifest

import (
	"encoding/json"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// APIVersion and Kind identify a tool manifest document.
const (
	APIVersion = "airlock.dev/v1"
	KindTool   = "Tool"
)

// Risk is the operator's rating of what a tool can do.
type Risk string

// The four risk levels, in increasing order.
const (
	RiskLow      Risk = "low"
	RiskMedium   Risk = "medium"
	RiskHigh     Risk = "high"
	RiskCritical Risk = "critical"
)

// Manifest is one loaded, validated tool manifest.
type Manifest struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// File is the path the manifest was read from; Line positions inside it
	// are kept on the parts that need them (rules).
	File string `yaml:"-" json:"-"`

	// Set by the loader: the compiled input and output schemas.
	inputSchema  *jsonschema.Schema
	outputSchema *jsonschema.Schema
}

// Metadata names and describes the tool.
type Metadata struct {
	Name        string            `yaml:"name" json:"name"`
	Version     string            `yaml:"version" json:"version"`
	Owner       string            `yaml:"owner,omitempty" json:"owner,omitempty"`
	Description string            `yaml:"description" json:"description"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Spec is what the tool runs, takes, returns and may reach.
type Spec struct {
	Runtime      Runtime         `yaml:"runtime" json:"runtime"`
	Input        json.RawMessage `yaml:"input" json:"input"`   // JSON Schema of the arguments
	Output       json.RawMessage `yaml:"output" json:"output"` // JSON Schema of the result
	Capabilities Capabilities    `yaml:"capabilities" json:"capabilities"`
	Limits       Limits          `yaml:"limits" json:"limits"`
	Risk         Risk            `yaml:"risk" json:"risk"`
	Rules        []Rule          `yaml:"rules,omitempty" json:"rules,omitempty"`
}

// Runtime says how the tool runs: exactly one of Wasm or Plugin.
type Runtime struct {
	Wasm   *WasmRuntime   `yaml:"wasm,omitempty" json:"wasm,omitempty"`
	Plugin *PluginRuntime `yaml:"plugin,omitempty" json:"plugin,omitempty"`
}

// WasmRuntime is a WASI preview1 module pinned by its SHA-256.
type WasmRuntime struct {
	// Module is relative to the manifest file's directory in YAML; after
	// loading it is an absolute, cleaned path.
	Module string `yaml:"module" json:"module"`
	SHA256 string `yaml:"sha256" json:"sha256"` // lowercase hex
}

// PluginRuntime is a native go-plugin binary pinned by its SHA-256.
type PluginRuntime struct {
	// Command is the binary. In YAML it is absolute or relative to the
	// manifest file's directory; after loading it is an absolute, cleaned
	// path.
	Command string   `yaml:"command" json:"command"`
	Args    []string `yaml:"args,omitempty" json:"args,omitempty"`
	SHA256  string   `yaml:"sha256" json:"sha256"` // lowercase hex
}

// Capabilities is everything the tool may reach; nothing else is granted.
type Capabilities struct {
	Network     []NetworkRule     `yaml:"network,omitempty" json:"network,omitempty"`
	Filesystem  []FilesystemGrant `yaml:"filesystem,omitempty" json:"filesystem,omitempty"`
	Env         map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Credentials []Credential      `yaml:"credentials,omitempty" json:"credentials,omitempty"`
	// Clock grants the host's wall and monotonic clocks and sleeping. Without
	// it the guest sees a fixed fake clock.
	Clock bool `yaml:"clock,omitempty" json:"clock,omitempty"`
}

// NetworkRule allows requests to one host.
type NetworkRule struct {
	Host    string   `yaml:"host" json:"host"`
	Schemes []string `yaml:"schemes,omitempty" json:"schemes,omitempty"` // default [https]
	Ports   []int    `yaml:"ports,omitempty" json:"ports,omitempty"`     // default: the scheme's port
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"` // default [GET]
	Paths   []string `yaml:"paths,omitempty" json:"paths,omitempty"`     // globs, default ["/**"]
}

// Access modes of a filesystem grant.
const (
	AccessReadOnly  = "read-only"
	AccessReadWrite = "read-write"
)

// FilesystemGrant grants a directory. The only path in v1 is "workspace":
// the task-scoped scratch directory, preopened in the guest at /workspace.
type FilesystemGrant struct {
	Path   string `yaml:"path" json:"path"`
	Access string `yaml:"access" json:"access"`
}

// Credential names a credential the tool gets and how it is injected.
type Credential struct {
	Name   string   `yaml:"name" json:"name"`
	Source string   `yaml:"source" json:"source"`
	Scopes []string `yaml:"scopes,omitempty" json:"scopes,omitempty"`
	Inject Inject   `yaml:"inject" json:"inject"`
}

// Inject is exactly one injection mode.
type Inject struct {
	HTTP *InjectHTTP `yaml:"http,omitempty" json:"http,omitempty"`
	Env  *InjectEnv  `yaml:"env,omitempty" json:"env,omitempty"`
	File *InjectFile `yaml:"file,omitempty" json:"file,omitempty"`
}

// InjectHTTP attaches the credential host-side to requests for Host.
type InjectHTTP struct {
	Host   string `yaml:"host" json:"host"`
	Header string `yaml:"header" json:"header"`
	Format string `yaml:"format" json:"format"` // contains {{token}}
}

// InjectEnv sets an environment variable of the guest.
type InjectEnv struct {
	Name string `yaml:"name" json:"name"`
}

// InjectFile writes the value to a file visible to the guest.
type InjectFile struct {
	Path string `yaml:"path" json:"path"`
}

// Limits bound one call of the tool. Zero values are replaced by defaults
// at load (see DefaultLimits).
type Limits struct {
	Memory  ByteSize `yaml:"memory" json:"memory"`
	Timeout Duration `yaml:"timeout" json:"timeout"`
	Output  ByteSize `yaml:"output" json:"output"`
	// Concurrency bounds the tool's simultaneous instances (default 16);
	// for a plugin tool, its processes.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`

	// The OS limits of a plugin tool's process (rlimits); zero for a wasm
	// tool, which may not set them. For a plugin, Memory bounds the address
	// space (RLIMIT_AS; default DefaultPluginMemory).

	// Processes bounds the processes and threads of the plugin (RLIMIT_NPROC,
	// default 16).
	Processes int `yaml:"processes,omitempty" json:"processes,omitempty"`
	// OpenFiles bounds its open file descriptors (RLIMIT_NOFILE, default 256).
	OpenFiles int `yaml:"open_files,omitempty" json:"open_files,omitempty"`
	// CPUTime bounds the CPU time of one process (RLIMIT_CPU, default
	// Timeout). A process that has used half of it is not reused.
	CPUTime Duration `yaml:"cpu_time,omitempty" json:"cpu_time,omitempty"`
	// FileSize bounds the size of a file the plugin writes (RLIMIT_FSIZE,
	// default 64MiB).
	FileSize ByteSize `yaml:"file_size,omitempty" json:"file_size,omitempty"`
}

// Rule is one of the tool's own CEL rules; it applies to this tool only.
type Rule struct {
	Name    string `yaml:"name" json:"name"`
	Effect  string `yaml:"effect" json:"effect"`
	When    string `yaml:"when" json:"when"`
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// Line is the 1-based line of the rule in File, for error messages.
	Line int `yaml:"-" json:"-"`
}

// ByteSize is a size in bytes written as "64MiB", "512KiB", "1MiB" or a
// plain integer.
type ByteSize int64

// Duration is a time.Duration written as "10s", "500ms".
type Duration time.Duration
