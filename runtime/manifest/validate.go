package manifest

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	nameRe     = regexp.MustCompile(`^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$`)
	versionRe  = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	sha256Re   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	ruleNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	envNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerRe   = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)
)

// maxNameLen bounds a tool name.
const maxNameLen = 128

var (
	risks       = []Risk{RiskLow, RiskMedium, RiskHigh, RiskCritical}
	httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	schemes     = []string{"http", "https"}
	effects     = []string{"allow", "deny", "require_approval"}
)

// checker runs the checks that follow decoding, each problem at the line
// of the offending key (for a missing key: of its parent).
type checker struct {
	*yamlDecoder
	m *Manifest
}

// at records a problem about path, unless decoding already reported one
// there.
func (c *checker) at(path, format string, args ...any) {
	if c.isBad(path) {
		return
	}
	c.problem(c.lineOf(path), format, args...)
}

func (c *checker) check() {
	m := c.m
	switch {
	case m.APIVersion == "":
		c.at("apiVersion", "apiVersion is required: write apiVersion: %s", APIVersion)
	case m.APIVersion != APIVersion:
		c.at("apiVersion", "apiVersion is %q; want %q", m.APIVersion, APIVersion)
	}
	switch {
	case m.Kind == "":
		c.at("kind", "kind is required: write kind: %s", KindTool)
	case m.Kind == "Policy":
		c.at("kind", "kind is Policy: this is a policy file, not a tool manifest; keep it with the policies")
	case m.Kind != KindTool:
		c.at("kind", "kind is %q; want %q", m.Kind, KindTool)
	}
	c.checkMetadata()
	c.checkRuntime()
	c.checkSchemas()
	switch {
	case m.Spec.Risk == "":
		c.at("spec.risk", "spec.risk is required: one of low, medium, high, critical")
	case !slices.Contains(risks, m.Spec.Risk):
		c.at("spec.risk", "spec.risk is %q; want one of low, medium, high, critical", m.Spec.Risk)
	}
	c.checkLimits()
	c.checkCapabilities()
	c.checkRules()
}

func (c *checker) checkMetadata() {
	md := c.m.Metadata
	switch {
	case md.Name == "":
		c.at("metadata.name", "metadata.name is required")
	case len(md.Name) > maxNameLen:
		c.at("metadata.name", "metadata.name is %d characters long; the limit is %d", len(md.Name), maxNameLen)
	case !nameRe.MatchString(md.Name):
		c.at("metadata.name", "metadata.name %q is not a tool name: use lower-case dot-separated words of letters, digits, _ and -, each starting with a letter, like json.query", md.Name)
	}
	switch {
	case md.Version == "":
		c.at("metadata.version", "metadata.version is required, like 1.0.0")
	case !versionRe.MatchString(md.Version):
		c.at("metadata.version", "metadata.version %q is not a semantic version: write MAJOR.MINOR.PATCH, like 1.0.0", md.Version)
	}
	if strings.TrimSpace(md.Description) == "" {
		c.at("metadata.description", "metadata.description is required: say what the tool does (planners show it to their model)")
	}
	for k := range md.Labels {
		if k == "" {
			c.at("metadata.labels", "metadata.labels has an empty key")
		}
	}
}

func (c *checker) checkRuntime() {
	rt := c.m.Spec.Runtime
	switch {
	case rt.Wasm == nil && rt.Plugin == nil:
		c.at("spec.runtime", "spec.runtime needs exactly one of wasm or plugin, like runtime: {wasm: {module: tool.wasm, sha256: ...}}")
		return
	case rt.Wasm != nil && rt.Plugin != nil:
		c.at("spec.runtime.plugin", "spec.runtime has both wasm and plugin: keep exactly one")
		return
	case rt.Plugin != nil:
		c.checkPlugin(rt.Plugin)
		return
	}
	w := rt.Wasm
	if w.Module == "" {
		c.at("spec.runtime.wasm.module", "spec.runtime.wasm.module is required: the module's path, relative to this manifest's directory")
	}
	pinOK := false
	switch {
	case w.SHA256 == "":
		c.at("spec.runtime.wasm.sha256", "spec.runtime.wasm.sha256 is required: pin the module with the output of sha256sum")
	case !sha256Re.MatchString(w.SHA256):
		c.at("spec.runtime.wasm.sha256", "spec.runtime.wasm.sha256 must be 64 lower-case hex digits (the output of sha256sum)")
	default:
		pinOK = true
	}
	if w.Module == "" || c.isBad("spec.runtime.wasm.module") {
		return
	}
	written := w.Module
	abs, err := filepath.Abs(c.file)
	if err != nil {
		c.at("spec.runtime.wasm.module", "cannot resolve the manifest's directory: %v", err)
		return
	}
	if filepath.IsAbs(written) {
		w.Module = filepath.Clean(written)
	} else {
		w.Module = filepath.Join(filepath.Dir(abs), written)
	}
	sum, err := hashFile(w.Module, nil)
	if err != nil {
		c.at("spec.runtime.wasm.module", "module %s (%s): %v: build it (make tools) or fix the path", written, w.Module, err)
		return
	}
	if pinOK && sum != w.SHA256 {
		c.at("spec.runtime.wasm.sha256", "%v", digestMismatch(written, sum, w.SHA256))
	}
}

// checkPlugin checks a plugin runtime and resolves its command against the
// manifest's directory, as wasm modules are, then verifies the pin.
func (c *checker) checkPlugin(p *PluginRuntime) {
	if p.Command == "" {
		c.at("spec.runtime.plugin.command", "spec.runtime.plugin.command is required: the plugin binary's path, absolute or relative to this manifest's directory")
	}
	if len(p.Args) > MaxPluginArgs {
		c.at("spec.runtime.plugin.args", "spec.runtime.plugin.args has %d arguments; the limit is %d", len(p.Args), MaxPluginArgs)
	}
	for i, a := range p.Args {
		if len(a) > MaxPluginArgBytes || strings.ContainsRune(a, 0) {
			c.at(fmt.Sprintf("spec.runtime.plugin.args[%d]", i), "spec.runtime.plugin.args[%d] must be at most %d bytes without NUL", i, MaxPluginArgBytes)
		}
	}
	pinOK := false
	switch {
	case p.SHA256 == "":
		c.at("spec.runtime.plugin.sha256", "spec.runtime.plugin.sha256 is required: pin the binary with the output of sha256sum")
	case !sha256Re.MatchString(p.SHA256):
		c.at("spec.runtime.plugin.sha256", "spec.runtime.plugin.sha256 must be 64 lower-case hex digits (the output of sha256sum)")
	default:
		pinOK = true
	}
	if p.Command == "" || c.isBad("spec.runtime.plugin.command") {
		return
	}
	written := p.Command
	if strings.ContainsRune(written, 0) {
		c.at("spec.runtime.plugin.command", "spec.runtime.plugin.command contains a NUL byte")
		return
	}
	abs, err := filepath.Abs(c.file)
	if err != nil {
		c.at("spec.runtime.plugin.command", "cannot resolve the manifest's directory: %v", err)
		return
	}
	if filepath.IsAbs(written) {
		p.Command = filepath.Clean(written)
	} else {
		p.Command = filepath.Join(filepath.Dir(abs), written)
	}
	sum, err := hashFile(p.Command, nil)
	if err != nil {
		c.at("spec.runtime.plugin.command", "plugin binary %s (%s): %v: build it (make plugins) or fix the path", written, p.Command, err)
		return
	}
	if pinOK && sum != p.SHA256 {
		c.at("spec.runtime.plugin.sha256", "plugin binary %s has sha256 %s but the manifest pins %s: rebuild the binary or update the pin", written, sum, p.SHA256)
	}
}

func (c *checker) checkSchemas() {
	for _, s := range []struct {
		path string
		doc  json.RawMessage
		dst  **jsonschema.Schema
	}{
		{"spec.input", c.m.Spec.Input, &c.m.inputSchema},
		{"spec.output", c.m.Spec.Output, &c.m.outputSchema},
	} {
		if len(s.doc) == 0 {
			c.at(s.path, "%s is required: a JSON Schema written as YAML, like {type: object}", s.path)
			continue
		}
		name := strings.TrimPrefix(s.path, "spec.")
		compiled, parsed, err := compileSchema(s.doc, name)
		if err != nil {
			c.at(s.path, "%s is not a valid JSON Schema: %s", s.path, schemaProblem(err))
			continue
		}
		if s.path == "spec.input" {
			obj, _ := parsed.(map[string]any)
			if typ, _ := obj["type"].(string); typ != "object" {
				c.at(s.path, "spec.input must have type: object (arguments are a JSON object)")
				continue
			}
		}
		*s.dst = compiled
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (c *checker) checkLimits() {
	l := &c.m.Spec.Limits
	def := DefaultLimits()
	if c.present("spec.limits.memory") {
		switch {
		case l.Memory < MinMemory || l.Memory > MaxMemory:
			c.at("spec.limits.memory", "spec.limits.memory %s is out of bounds: between %s and %s", l.Memory, MinMemory, MaxMemory)
		case l.Memory%WasmPageSize != 0:
			c.at("spec.limits.memory", "spec.limits.memory %s is not a whole number of 64KiB pages", l.Memory)
		}
	} else {
		l.Memory = def.Memory
	}
	if c.present("spec.limits.timeout") {
		if l.Timeout < MinTimeout || l.Timeout > MaxTimeout {
			c.at("spec.limits.timeout", "spec.limits.timeout %s is out of bounds: between %s and %s", l.Timeout, MinTimeout, MaxTimeout)
		}
	} else {
		l.Timeout = def.Timeout
	}
	if c.present("spec.limits.output") {
		if l.Output < MinOutput || l.Output > MaxOutput {
			c.at("spec.limits.output", "spec.limits.output %s is out of bounds: between %s and %s", l.Output, MinOutput, MaxOutput)
		}
	} else {
		l.Output = def.Output
	}
	c.checkPluginLimits()
	if c.present("spec.limits.concurrency") {
		if l.Concurrency < MinConcurrency || l.Concurrency > MaxConcurrency {
			c.at("spec.limits.concurrency", "spec.limits.concurrency %d is out of bounds: between %d and %d", l.Concurrency, MinConcurrency, MaxConcurrency)
		}
	} else {
		l.Concurrency = def.Concurrency
	}
}

// checkPluginLimits checks the OS limits, which only plugin tools have,
// and fills in their defaults.
func (c *checker) checkPluginLimits() {
	l := &c.m.Spec.Limits
	plugin := c.m.Spec.Runtime.Plugin != nil && c.m.Spec.Runtime.Wasm == nil
	fields := []string{"processes", "open_files", "cpu_time", "file_size"}
	if !plugin {
		for _, f := range fields {
			if c.present("spec.limits." + f) {
				c.at("spec.limits."+f, "spec.limits.%s applies to plugin tools only: remove it", f)
			}
		}
		l.Processes, l.OpenFiles, l.CPUTime, l.FileSize = 0, 0, 0, 0
		return
	}
	if !c.present("spec.limits.memory") {
		l.Memory = DefaultPluginMemory
	}
	if c.present("spec.limits.processes") {
		if l.Processes < MinProcesses || l.Processes > MaxProcesses {
			c.at("spec.limits.processes", "spec.limits.processes %d is out of bounds: between %d and %d", l.Processes, MinProcesses, MaxProcesses)
		}
	} else {
		l.Processes = DefaultProcesses
	}
	if c.present("spec.limits.open_files") {
		if l.OpenFiles < MinOpenFiles || l.OpenFiles > MaxOpenFiles {
			c.at("spec.limits.open_files", "spec.limits.open_files %d is out of bounds: between %d and %d", l.OpenFiles, MinOpenFiles, MaxOpenFiles)
		}
	} else {
		l.OpenFiles = DefaultOpenFiles
	}
	if c.present("spec.limits.cpu_time") {
		if l.CPUTime < MinCPUTime || l.CPUTime > MaxCPUTime {
			c.at("spec.limits.cpu_time", "spec.limits.cpu_time %s is out of bounds: between %s and %s", l.CPUTime, MinCPUTime, MaxCPUTime)
		}
	} else {
		l.CPUTime = l.Timeout
	}
	if c.present("spec.limits.file_size") {
		if l.FileSize < MinFileSize || l.FileSize > MaxFileSize {
			c.at("spec.limits.file_size", "spec.limits.file_size %s is out of bounds: between %s and %s", l.FileSize, MinFileSize, MaxFileSize)
		}
	} else {
		l.FileSize = DefaultFileSize
	}
}

func (c *checker) checkCapabilities() {
	caps := &c.m.Spec.Capabilities
	for i := range caps.Network {
		c.checkNetwork(fmt.Sprintf("spec.capabilities.network[%d]", i), &caps.Network[i])
	}
	for i, g := range caps.Filesystem {
		p := fmt.Sprintf("spec.capabilities.filesystem[%d]", i)
		if i > 0 {
			c.at(p, "%s: at most one filesystem grant (the workspace)", p)
			continue
		}
		if g.Path != "workspace" {
			c.at(p+".path", "%s.path is %q; the only path is workspace (the task's scratch directory)", p, g.Path)
		}
		if g.Access != AccessReadOnly && g.Access != AccessReadWrite {
			c.at(p+".access", "%s.access is %q; want %s or %s", p, g.Access, AccessReadOnly, AccessReadWrite)
		}
	}
	for k := range caps.Env {
		if !envNameRe.MatchString(k) {
			c.at("spec.capabilities.env."+k, "spec.capabilities.env: %q is not an environment variable name: use letters, digits and _, not starting with a digit", k)
		}
	}
	seen := map[string]int{}
	for i, cr := range caps.Credentials {
		p := fmt.Sprintf("spec.capabilities.credentials[%d]", i)
		if cr.Name == "" {
			c.at(p+".name", "%s.name is required", p)
		} else if first, dup := seen[cr.Name]; dup {
			c.at(p+".name", "%s.name %q is already used by credentials[%d]", p, cr.Name, first)
		} else {
			seen[cr.Name] = i
		}
		if cr.Source == "" {
			c.at(p+".source", "%s.source is required: the name of a credential source in the executor's configuration", p)
		}
		c.checkInject(p+".inject", cr.Inject)
	}
}

func (c *checker) checkNetwork(p string, r *NetworkRule) {
	switch {
	case r.Host == "":
		c.at(p+".host", "%s.host is required", p)
	case strings.ContainsAny(r.Host, "/:@ \t") || r.Host != strings.ToLower(r.Host):
		c.at(p+".host", "%s.host %q must be a lower-case host name alone, without scheme, port or path", p, r.Host)
	}
	for i, s := range r.Schemes {
		if !slices.Contains(schemes, s) {
			c.at(fmt.Sprintf("%s.schemes[%d]", p, i), "%s.schemes: %q is not http or https", p, s)
		}
	}
	for i, port := range r.Ports {
		if port < 1 || port > 65535 {
			c.at(fmt.Sprintf("%s.ports[%d]", p, i), "%s.ports: %d is not a port (1 to 65535)", p, port)
		}
	}
	for i, m := range r.Methods {
		if !slices.Contains(httpMethods, m) {
			c.at(fmt.Sprintf("%s.methods[%d]", p, i), "%s.methods: %q is not one of %s", p, m, strings.Join(httpMethods, ", "))
		}
	}
	for i, path := range r.Paths {
		if !strings.HasPrefix(path, "/") {
			c.at(fmt.Sprintf("%s.paths[%d]", p, i), "%s.paths: %q must start with /", p, path)
		}
	}
	if len(r.Schemes) == 0 {
		r.Schemes = slices.Clone(defaultSchemes)
	}
	if len(r.Methods) == 0 {
		r.Methods = slices.Clone(defaultMethods)
	}
	if len(r.Paths) == 0 {
		r.Paths = slices.Clone(defaultPaths)
	}
}

func (c *checker) checkInject(p string, in Inject) {
	n := 0
	if in.HTTP != nil {
		n++
	}
	if in.Env != nil {
		n++
	}
	if in.File != nil {
		n++
	}
	if n != 1 {
		c.at(p, "%s needs exactly one of http, env or file (it has %d)", p, n)
		return
	}
	switch {
	case in.HTTP != nil:
		h := in.HTTP
		if h.Host == "" {
			c.at(p+".http.host", "%s.http.host is required", p)
		}
		if !headerRe.MatchString(h.Header) {
			c.at(p+".http.header", "%s.http.header %q is not an HTTP header name", p, h.Header)
		}
		if !strings.Contains(h.Format, "{{token}}") {
			c.at(p+".http.format", "%s.http.format must contain {{token}}, like \"Bearer {{token}}\"", p)
		}
	case in.Env != nil:
		if !envNameRe.MatchString(in.Env.Name) {
			c.at(p+".env.name", "%s.env.name %q is not an environment variable name", p, in.Env.Name)
		}
	case in.File != nil:
		if in.File.Path == "" {
			c.at(p+".file.path", "%s.file.path is required", p)
		}
	}
}

func (c *checker) checkRules() {
	seen := map[string]int{}
	for i := range c.m.Spec.Rules {
		r := &c.m.Spec.Rules[i]
		p := fmt.Sprintf("spec.rules[%d]", i)
		r.Line = c.lineOf(p).line
		switch {
		case r.Name == "":
			c.at(p+".name", "%s.name is required", p)
		case !ruleNameRe.MatchString(r.Name):
			c.at(p+".name", "%s.name %q: use lower-case letters, digits, _ and -", p, r.Name)
		default:
			if first, dup := seen[r.Name]; dup {
				c.at(p+".name", "%s.name %q is already used by the rule at line %d", p, r.Name, first)
			} else {
				seen[r.Name] = r.Line
			}
		}
		if !slices.Contains(effects, r.Effect) {
			c.at(p+".effect", "%s.effect is %q; want allow, deny or require_approval", p, r.Effect)
		}
		if strings.TrimSpace(r.When) == "" {
			c.at(p+".when", "%s.when is required: a CEL expression that returns bool", p)
		}
	}
}
