package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// examplePolicy is the policy file of the brief and the design, verbatim.
const examplePolicy = `apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: local-dev}
spec:
  match: {tools: ["*"], risk: [low, medium]}
  rules:
    - name: allow-local
      effect: allow                # allow | deny | require_approval
      when: 'caller.spiffe_id.startsWith("spiffe://airlock.local/")'
    - name: no-secrets-dir
      effect: deny
      when: 'tool.name.startsWith("workspace.") && has(args.path) && args.path.startsWith("secrets/")'
      message: '"the secrets directory is off limits"'   # a CEL expression returning string; optional
`

const localCaller = "spiffe://airlock.local/uid/1000"

func mkTool(name string, risk manifest.Risk, rules ...manifest.Rule) *manifest.Manifest {
	m := &manifest.Manifest{
		APIVersion: manifest.APIVersion,
		Kind:       manifest.KindTool,
		Metadata:   manifest.Metadata{Name: name, Version: "1.0.0", Description: name, Labels: map[string]string{"team": "core"}},
		File:       "/manifests/" + name + ".yaml",
	}
	m.Spec.Risk = risk
	m.Spec.Runtime.Wasm = &manifest.WasmRuntime{Module: "/m/" + name + ".wasm", SHA256: strings.Repeat("ab", 32)}
	m.Spec.Capabilities.Network = []manifest.NetworkRule{{Host: "api.example.com", Ports: []int{443}}}
	m.Spec.Rules = rules
	return m
}

func defaultTools() []*manifest.Manifest {
	return []*manifest.Manifest{
		mkTool("json.query", manifest.RiskLow),
		mkTool("workspace.read", manifest.RiskLow),
		mkTool("workspace.write", manifest.RiskMedium),
		mkTool("http.fetch", manifest.RiskHigh),
	}
}

func toolMap(ms []*manifest.Manifest) map[string]*manifest.Manifest {
	out := map[string]*manifest.Manifest{}
	for _, m := range ms {
		out[m.Metadata.Name] = m
	}
	return out
}

// writeDir writes files (name -> content) to a temporary directory.
func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// load writes the files, loads the directory and compiles it with tools.
func load(t testing.TB, tools []*manifest.Manifest, opts Options, files map[string]string) (*Engine, *Set) {
	t.Helper()
	set, err := LoadDir(writeDir(t, files))
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	e, err := Compile(set.Policies, tools, opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e, set
}

// policyDoc builds a policy document with the given match and rules YAML.
func policyDoc(name, match, rules string) string {
	return "apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: {name: " + name + "}\nspec:\n  match: " + match + "\n  rules:\n" + rules
}

func input(t testing.TB, caller, tool string, args any, tools []*manifest.Manifest) *Input {
	t.Helper()
	c, err := CallerFromSPIFFE(caller)
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Caller: c, Args: args}
	for _, m := range tools {
		if m.Metadata.Name == tool {
			if in.Tool, err = ToolFromManifest(m); err != nil {
				t.Fatal(err)
			}
			return in
		}
	}
	in.Tool = Tool{Name: tool}
	return in
}

func decide(t testing.TB, e *Engine, in *Input) Decision {
	t.Helper()
	d := e.Decide(context.Background(), in)
	// Every decision must be the same rule by rule as with the batch.
	e.noBatch = true
	d2 := e.Decide(context.Background(), in)
	e.noBatch = false
	if d.Effect != d2.Effect || !slices.Equal(d.Rules, d2.Rules) || d.Message != d2.Message {
		t.Fatalf("batch and rule-by-rule disagree:\nbatch: %+v\nrules: %+v", d, d2)
	}
	return d
}

func wantDecision(t testing.TB, got Decision, effect Effect, rules []string, msgContains string) {
	t.Helper()
	if got.Effect != effect || !slices.Equal(got.Rules, rules) || !strings.Contains(got.Message, msgContains) {
		t.Fatalf("decision = %+v\nwant effect %s, rules %v, message containing %q", got, effect, rules, msgContains)
	}
}

func problemsOf(t testing.TB, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) is not Problems", err, err)
	}
	return ps
}

// wantProblem asserts that err holds a problem at file:line whose message
// contains substr.
func wantProblem(t testing.TB, err error, file string, line int, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s:%d: ...%s...", file, line, substr)
	}
	for _, p := range problemsOf(t, err) {
		if filepath.Base(p.File) == filepath.Base(file) && p.Line == line && strings.Contains(p.Msg, substr) {
			return
		}
	}
	t.Fatalf("no problem at %s:%d containing %q in:\n%v", file, line, substr, err)
}
