package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testModuleDigest = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476"

// minimal is the smallest valid manifest; %s are the name, the module path
// and its digest. Extra YAML under spec can be appended.
const minimal = `apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: %s, version: 1.0.0, description: A test tool.}
spec:
  runtime:
    wasm:
      module: %s
      sha256: %s
  input: {type: object}
  output: {type: object}
  risk: low
`

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTool writes a module at dir/modules/NAME.wasm and a manifest for it
// at dir/manifests/FILE with the real digest, and returns the manifest path.
func writeTool(t testing.TB, dir, file, name, extra string) string {
	t.Helper()
	mod := []byte("\x00asm\x01\x00\x00\x00" + name)
	writeFile(t, filepath.Join(dir, "modules", name+".wasm"), mod)
	path := filepath.Join(dir, "manifests", file)
	writeFile(t, path, []byte(fmt.Sprintf(minimal, name, "../modules/"+name+".wasm", sha(mod))+extra))
	return path
}

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is %T, want Problems", err, err)
	}
	return ps
}

func TestLoadFileGood(t *testing.T) {
	m, err := LoadFile("testdata/good/json_query.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantModule, _ := filepath.Abs("testdata/tool.wasm")
	if m.ModulePath() != wantModule || m.Spec.Runtime.Wasm.Module != wantModule {
		t.Errorf("module path %q, want %q", m.ModulePath(), wantModule)
	}
	if m.Digest() != testModuleDigest {
		t.Errorf("digest %q", m.Digest())
	}
	if m.File != "testdata/good/json_query.yaml" {
		t.Errorf("File %q", m.File)
	}
	if m.Metadata.Name != "json.query" || m.Metadata.Version != "1.2.0-rc.1+build.5" || m.Metadata.Labels["tier"] != "1" {
		t.Errorf("metadata %+v", m.Metadata)
	}
	if m.Spec.Risk != RiskMedium {
		t.Errorf("risk %q", m.Spec.Risk)
	}
	wantLimits := Limits{Memory: 32 * MiB, Timeout: Duration(250 * time.Millisecond), Output: 512 * KiB, Concurrency: 4}
	if m.Spec.Limits != wantLimits {
		t.Errorf("limits %+v, want %+v", m.Spec.Limits, wantLimits)
	}
	if m.MemoryPages() != 512 {
		t.Errorf("MemoryPages %d, want 512", m.MemoryPages())
	}
	if g, ro := m.GrantsWorkspace(); !g || ro {
		t.Errorf("GrantsWorkspace = %v, %v; want true, false", g, ro)
	}
	// The schema is JSON with the key order of the YAML.
	if got := string(m.Spec.Output); got != `{"type":"object","required":["results"],"properties":{"results":{"type":"array"}}}` {
		t.Errorf("output schema %s", got)
	}
	if m.InputSchema() == nil || m.OutputSchema() == nil {
		t.Fatal("schemas not compiled")
	}
	// Network defaults are filled in; given values are kept.
	n := m.Spec.Capabilities.Network
	if !slices.Equal(n[0].Methods, []string{"GET", "HEAD"}) || !slices.Equal(n[0].Schemes, []string{"https"}) || !slices.Equal(n[0].Ports, []int{443}) {
		t.Errorf("network[0] %+v", n[0])
	}
	if !slices.Equal(n[1].Methods, defaultMethods) || !slices.Equal(n[1].Paths, defaultPaths) || len(n[1].Ports) != 0 {
		t.Errorf("network[1] %+v", n[1])
	}
	if c := m.Spec.Capabilities.Credentials[0]; c.Inject.HTTP == nil || c.Inject.HTTP.Format != "Bearer {{token}}" {
		t.Errorf("credential %+v", c)
	}
	if !m.Spec.Capabilities.Clock || m.Spec.Capabilities.Env["LOG_LEVEL"] != "info" {
		t.Errorf("capabilities %+v", m.Spec.Capabilities)
	}
	// Rules carry their line, for the policy package's errors.
	if len(m.Spec.Rules) != 2 || m.Spec.Rules[0].Line != 49 || m.Spec.Rules[1].Line != 50 {
		t.Errorf("rules %+v", m.Spec.Rules)
	}
	if m.Spec.Rules[1].When != "size(args.filter) > 1000\n" {
		t.Errorf("block scalar when %q", m.Spec.Rules[1].When)
	}
	b, err := m.ReadModule()
	if err != nil || sha(b) != testModuleDigest {
		t.Errorf("ReadModule: %v", err)
	}
}

func TestLoadFileDefaults(t *testing.T) {
	dir := t.TempDir()
	path := writeTool(t, dir, "a.yaml", "a.tool", "  capabilities: {filesystem: [{path: workspace, access: read-only}]}\n")
	m, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Spec.Limits != DefaultLimits() {
		t.Errorf("limits %+v, want the defaults", m.Spec.Limits)
	}
	if want := (Limits{Memory: 64 * MiB, Timeout: Duration(10 * time.Second), Output: MiB, Concurrency: 16}); DefaultLimits() != want {
		t.Errorf("DefaultLimits %+v", DefaultLimits())
	}
	if m.MemoryPages() != 1024 {
		t.Errorf("MemoryPages %d", m.MemoryPages())
	}
	if g, ro := m.GrantsWorkspace(); !g || !ro {
		t.Errorf("GrantsWorkspace = %v, %v; want true, true", g, ro)
	}
	m2, err := LoadFile(writeTool(t, dir, "b.yaml", "b.tool", ""))
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := m2.GrantsWorkspace(); g {
		t.Error("workspace granted without a grant")
	}
}

func TestModulePathIsRelativeToTheManifest(t *testing.T) {
	dir := t.TempDir()
	path := writeTool(t, dir, "tool.yaml", "rel.tool", "")
	want := filepath.Join(dir, "modules", "rel.tool.wasm")
	// Loading from elsewhere, by an absolute and by a relative path, finds
	// the module next to the manifest, not next to the working directory.
	other := t.TempDir()
	t.Chdir(other)
	rel, err := filepath.Rel(other, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, rel} {
		m, err := LoadFile(p)
		if err != nil {
			t.Fatalf("LoadFile(%s): %v", p, err)
		}
		if m.ModulePath() != want || !filepath.IsAbs(m.ModulePath()) {
			t.Errorf("LoadFile(%s): module %q, want %q", p, m.ModulePath(), want)
		}
	}
	// An absolute module path is taken as it is (cleaned).
	abs := filepath.Join(dir, "abs.yaml")
	writeFile(t, abs, []byte(fmt.Sprintf(minimal, "abs.tool", filepath.Join(dir, "x", "..", "modules", "rel.tool.wasm"), sha([]byte("\x00asm\x01\x00\x00\x00rel.tool")))))
	m, err := LoadFile(abs)
	if err != nil {
		t.Fatal(err)
	}
	if m.ModulePath() != want {
		t.Errorf("absolute module %q, want %q", m.ModulePath(), want)
	}
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	mod := []byte("\x00asm\x01\x00\x00\x00real")
	writeFile(t, filepath.Join(dir, "mods", "t.wasm"), mod)
	pinned := strings.Repeat("ab", 32)
	path := filepath.Join(dir, "t.yaml")
	writeFile(t, path, []byte(fmt.Sprintf(minimal, "t.tool", "mods/t.wasm", pinned)))

	_, err := LoadFile(path)
	ps := problemsOf(t, err)
	want := fmt.Sprintf("%s:8: module mods/t.wasm has sha256 %s but the manifest pins %s: rebuild the module or update the pin", path, sha(mod), pinned)
	if len(ps) != 1 || ps[0].String() != want {
		t.Fatalf("got %v\nwant %s", ps, want)
	}

	// With the right pin it loads; when the module then changes on disk,
	// ReadModule refuses it and so does a new load.
	writeFile(t, path, []byte(fmt.Sprintf(minimal, "t.tool", "mods/t.wasm", sha(mod))))
	m, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := m.ReadModule(); err != nil || string(b) != string(mod) {
		t.Fatalf("ReadModule = %q, %v", b, err)
	}
	swapped := []byte("\x00asm\x01\x00\x00\x00evil")
	writeFile(t, filepath.Join(dir, "mods", "t.wasm"), swapped)
	if _, err := m.ReadModule(); err == nil || !strings.Contains(err.Error(), "has sha256 "+sha(swapped)+" but the manifest pins "+sha(mod)) {
		t.Errorf("ReadModule after a swap: %v", err)
	}
	if _, err := LoadFile(path); err == nil {
		t.Error("LoadFile accepted a swapped module")
	}
}

func TestModuleProblems(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.yaml")
	writeFile(t, path, []byte(fmt.Sprintf(minimal, "t.tool", "missing.wasm", testModuleDigest)))
	ps := problemsOf(t, func() error { _, err := LoadFile(path); return err }())
	if len(ps) != 1 || ps[0].Line != 7 || !strings.HasPrefix(ps[0].Msg, "module missing.wasm ("+filepath.Join(dir, "missing.wasm")+"): cannot open module: ") ||
		!strings.HasSuffix(ps[0].Msg, ": build it (make tools) or fix the path") {
		t.Errorf("missing module: %v", ps)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.wasm"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, []byte(fmt.Sprintf(minimal, "t.tool", "dir.wasm", testModuleDigest)))
	ps = problemsOf(t, func() error { _, err := LoadFile(path); return err }())
	if len(ps) != 1 || !strings.Contains(ps[0].Msg, "is not a regular file") {
		t.Errorf("directory module: %v", ps)
	}
}

func TestFileProblems(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	writeFile(t, big, []byte("# "+strings.Repeat("x", MaxManifestBytes)+"\n"))
	_, err := LoadFile(big)
	if ps := problemsOf(t, err); len(ps) != 1 || ps.Error() != big+": the manifest is over 1MiB: split it or shorten its schemas" {
		t.Errorf("big file: %v", err)
	}
	deep := filepath.Join(dir, "deep.yaml")
	writeFile(t, deep, []byte("apiVersion: airlock.dev/v1\nspec: {input: "+strings.Repeat("[", 500000)+"\n"))
	_, err = LoadFile(deep)
	if ps := problemsOf(t, err); len(ps) != 1 || ps.Error() != deep+":2: YAML flow collections ([ and {) nest deeper than 100 levels here: flatten the manifest" {
		t.Errorf("deep file: %v", err)
	}
	_, err = LoadFile(filepath.Join(dir, "nope.yaml"))
	if ps := problemsOf(t, err); len(ps) != 1 || !strings.Contains(ps[0].Msg, "cannot read the manifest") {
		t.Errorf("missing file: %v", err)
	}
	_, err = LoadFile(dir)
	if ps := problemsOf(t, err); len(ps) != 1 || !strings.Contains(ps[0].Msg, "is not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	writeTool(t, dir, "b.yml", "b.tool", "")
	writeTool(t, dir, "a.yaml", "a.tool", "")
	writeFile(t, filepath.Join(dir, "manifests", "notes.txt"), []byte("not a manifest"))
	writeFile(t, filepath.Join(dir, "manifests", "sub", "bad.yaml"), []byte("this: is not read"))
	ms, err := LoadDir(filepath.Join(dir, "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Metadata.Name)
	}
	if !slices.Equal(names, []string{"a.tool", "b.tool"}) {
		t.Errorf("loaded %v", names)
	}
}

func TestLoadDirProblems(t *testing.T) {
	dir := t.TempDir()
	first := writeTool(t, dir, "one.yaml", "same.name", "")
	second := writeTool(t, dir, "two.yaml", "same.name", "")
	third := filepath.Join(dir, "manifests", "three.yaml")
	writeFile(t, third, []byte("apiVersion: airlock.dev/v1\nkind: Tool\nbogus: 1\n"))
	ms, err := LoadDir(filepath.Join(dir, "manifests"))
	if ms != nil {
		t.Error("manifests returned with an error")
	}
	ps := problemsOf(t, err)
	// Every problem of every file, not just the first.
	got := ps.Error()
	for _, want := range []string{
		third + ":1: metadata.name is required\n",
		third + ":1: spec.runtime needs exactly one of wasm or plugin, like runtime: {wasm: {module: tool.wasm, sha256: ...}}\n",
		third + ":3: unknown key \"bogus\" in the manifest: known keys are apiVersion, kind, metadata, spec\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problem %q missing from:\n%s", want, got)
		}
	}
	dup := fmt.Sprintf("%s:3: tool \"same.name\" is also defined in %s:3: keep one manifest per tool name", second, first)
	if !strings.Contains(got, dup) {
		t.Errorf("duplicate name problem %q missing from:\n%s", dup, got)
	}

	empty := t.TempDir()
	writeFile(t, filepath.Join(empty, "README.md"), []byte("no manifests"))
	_, err = LoadDir(empty)
	if ps := problemsOf(t, err); len(ps) != 1 || ps.Error() != empty+": no manifests here: a tool manifest is a *.yaml or *.yml file with kind: Tool" {
		t.Errorf("empty dir: %v", err)
	}
	_, err = LoadDir(filepath.Join(empty, "nope"))
	if ps := problemsOf(t, err); len(ps) != 1 || !strings.Contains(ps[0].Msg, "cannot read the manifest directory") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	good := writeTool(t, dir, "good.yaml", "good.tool", "")
	if ps := Lint(good, filepath.Join(dir, "manifests")); ps != nil {
		t.Errorf("Lint of good files: %v", ps)
	}
	missing := filepath.Join(dir, "missing.yaml")
	ps := Lint(good, "testdata/bad/rules.yaml", missing, "testdata/good")
	files := map[string]bool{}
	for _, p := range ps {
		files[p.File] = true
	}
	if len(files) != 2 || !files["testdata/bad/rules.yaml"] || !files[missing] {
		t.Errorf("Lint problems in %v:\n%v", files, ps)
	}
	if !slices.IsSortedFunc(ps, func(a, b Problem) int { return strings.Compare(a.File, b.File) }) {
		t.Errorf("problems not sorted by file: %v", ps)
	}
}

func TestLoadFileScalarStyles(t *testing.T) {
	m, err := LoadFile("testdata/good/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"object","properties":{"text":{"type":"string","pattern":"^[a-z]{1,3}[[:alpha:]]*$","maxLength":100},"mode":{"enum":["upper","lower",1,2.5,true,null]}}}`
	if string(m.Spec.Input) != want {
		t.Errorf("input schema\n%s\nwant\n%s", m.Spec.Input, want)
	}
	if string(m.Spec.Output) != "true" {
		t.Errorf("output schema %s", m.Spec.Output)
	}
	if m.Metadata.Description != "It's a tool [that] upper-cases {text}; \"quotes\" and brackets in plain scalars are fine.\n" {
		t.Errorf("description %q", m.Metadata.Description)
	}
	if m.Spec.Limits.Memory != 2*MiB || m.Spec.Limits.Output != KiB || m.MemoryPages() != 32 || m.Spec.Limits.Timeout != DefaultLimits().Timeout {
		t.Errorf("limits %+v", m.Spec.Limits)
	}
	if _, err := m.ValidateArgs([]byte(`{"text":"abc","mode":2.5}`)); err != nil {
		t.Error(err)
	}
	if _, err := m.ValidateArgs([]byte(`{"mode":"sideways"}`)); err == nil {
		t.Error("enum not enforced")
	}
	if _, err := m.ValidateOutput([]byte(`"anything"`)); err != nil {
		t.Errorf("output schema true refused: %v", err)
	}
}
