package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

func TestLoadDirCollectsEveryProblemWithFileAndLine(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"a-unknown-key.yaml": `apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: a}
spec:
  match: {tools: ["*"]}
  rules:
    - name: r
      effect: allow
      when: 'true'
      whne: 'oops'
`,
		"b-bad-fields.yaml": `apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: "has space"}
spec:
  match: {tools: ["bad\\"], risk: [extreme]}
  rules:
    - name: r
      effect: permit
      when: 'true'
    - name: r
      effect: deny
`,
		"c-kind.yml":     "apiVersion: airlock.dev/v1\nkind: Tool\nmetadata: {name: x}\n",
		"d-version.yaml": "apiVersion: v2\nkind: Policy\n",
		"e-syntax.yaml":  "apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: {name: [unclosed\n",
		"f-anchor.yaml": `apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: f}
spec:
  match: &m {tools: ["*"]}
  rules: []
`,
		"g-empty.yaml": "# nothing\n",
		"ignored.txt":  "not yaml at all: [",
		"h-tests.yaml": `apiVersion: airlock.dev/v1
kind: PolicyTest
metadata: {name: t}
spec:
  cases:
    - name: one
      caller: not-a-spiffe-id
      tool: json.query
      approval: {state: maybe}
      expect: {effect: permit}
`,
	})
	_, err := LoadDir(dir)
	f := func(n string) string { return filepath.Join(dir, n) }
	wantProblem(t, err, f("a-unknown-key.yaml"), 10, "unknown field \"whne\"")
	wantProblem(t, err, f("b-bad-fields.yaml"), 3, `metadata.name: "has space" is not a valid name`)
	wantProblem(t, err, f("b-bad-fields.yaml"), 5, "spec.match.tools[0]")
	wantProblem(t, err, f("b-bad-fields.yaml"), 5, `spec.match.risk[0]: "extreme" is not a risk level`)
	wantProblem(t, err, f("b-bad-fields.yaml"), 8, `spec.rules[0].effect: must be allow, deny or require_approval, got "permit"`)
	wantProblem(t, err, f("b-bad-fields.yaml"), 10, `spec.rules[1].name: "r" is already used by the rule at line 7`)
	wantProblem(t, err, f("b-bad-fields.yaml"), 10, "spec.rules[1].when: required")
	wantProblem(t, err, f("c-kind.yml"), 2, `kind: must be "Policy" or "PolicyTest", got "Tool"`)
	wantProblem(t, err, f("d-version.yaml"), 1, `apiVersion: must be "airlock.dev/v1"`)
	wantProblem(t, err, f("e-syntax.yaml"), 3, "invalid YAML")
	wantProblem(t, err, f("f-anchor.yaml"), 5, "anchors and aliases")
	wantProblem(t, err, f("g-empty.yaml"), 0, "no YAML document")
	wantProblem(t, err, f("h-tests.yaml"), 7, "spec.cases[0].caller")
	wantProblem(t, err, f("h-tests.yaml"), 9, "spec.cases[0].approval.state")
	wantProblem(t, err, f("h-tests.yaml"), 10, "spec.cases[0].expect.effect")
	for _, p := range problemsOf(t, err) {
		if strings.Contains(p.File, "ignored.txt") {
			t.Fatalf("non-YAML file was read: %v", p)
		}
	}
	// The printed form is one file:line: message per line.
	first := strings.SplitN(err.Error(), "\n", 2)[0]
	if want := f("a-unknown-key.yaml") + ":10: "; !strings.HasPrefix(first, want) {
		t.Fatalf("first line %q does not start with %q", first, want)
	}
}

func TestLoadDirWarnsWithoutPolicies(t *testing.T) {
	set, err := LoadDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Warnings) != 1 || !strings.Contains(set.Warnings[0], "denied by default") {
		t.Fatalf("warnings = %q", set.Warnings)
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing directory accepted")
	}
	big := writeDir(t, map[string]string{"big.yaml": "# " + strings.Repeat("x", MaxFileSize)})
	_, err = LoadDir(big)
	wantProblem(t, err, "big.yaml", 0, "larger than")
}

func TestLoadDirMultipleDocumentsAndTests(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"all.yaml": examplePolicy + "---\n" + policyDoc("second", `{tools: ["json.*"]}`, allowLocal) + `---
apiVersion: airlock.dev/v1
kind: PolicyTest
metadata: {name: local-dev-tests}
spec:
  cases:
    - name: local caller may query json
      caller: spiffe://airlock.local/uid/1000
      tool: json.query
      args: {filter: ".", input: {n: 1, f: 1.5, l: [1, "a"]}}
      task: {id: tsk_x, purpose: demo, sensitivity: internal, labels: {team: a}, started_at: "2024-01-01T00:00:00Z"}
      justification: "needed for the demo"
      approval: {state: approved, approver: spiffe://airlock.local/human/ann}
      expect: {effect: allow, rules: [local-dev/allow-local], message: ""}
`,
	})
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Policies) != 2 || len(set.Tests) != 1 {
		t.Fatalf("got %d policies, %d tests", len(set.Policies), len(set.Tests))
	}
	if set.Policies[1].Line != 15 || set.Policies[1].Metadata.Name != "second" {
		t.Fatalf("second policy = %+v", set.Policies[1])
	}
	c := set.Tests[0].Spec.Cases[0]
	if c.Line != 30 {
		t.Fatalf("case line = %d, want 30", c.Line)
	}
	in := c.Args.(map[string]any)["input"].(map[string]any)
	if in["n"] != int64(1) || in["f"] != 1.5 || in["l"].([]any)[0] != int64(1) {
		t.Fatalf("args = %#v", c.Args)
	}
	if c.Expect.Rules == nil || len(*c.Expect.Rules) != 1 || c.Expect.Message == nil {
		t.Fatalf("expect = %+v", c.Expect)
	}
}

func TestCompileRejectsBadExpressionsAtFileAndLine(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": `apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: p}
spec:
  match: {tools: ["*"]}
  rules:
    - name: unknown-var
      effect: allow
      when: 'callr.spiffe_id == "x"'
    - name: unknown-field
      effect: allow
      when: 'caller.spife_id == "x"'
    - name: not-bool
      effect: deny
      when: 'caller.spiffe_id'
    - name: syntax
      effect: deny
      when: 'caller.spiffe_id ==== "x"'
    - name: bad-message
      effect: deny
      when: 'true'
      message: '42'
    - name: unknown-function
      effect: deny
      when: |
        true &&
          nosuch(args)
    - name: fine
      effect: allow
      when: 'args.x == 1'
`})
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(set.Policies, defaultTools(), Options{})
	p := filepath.Join(dir, "p.yaml")
	wantProblem(t, err, p, 9, "rule p/unknown-var: spec.rules[0].when: undeclared reference to 'callr'")
	wantProblem(t, err, p, 12, "undefined field 'spife_id'")
	wantProblem(t, err, p, 15, "returns string, it must return bool")
	wantProblem(t, err, p, 18, "rule p/syntax")
	wantProblem(t, err, p, 22, "spec.rules[4].message: the expression returns int, it must return string")
	wantProblem(t, err, p, 25, "expression line 2")
	if n := len(problemsOf(t, err)); n != 6 {
		t.Fatalf("%d problems, want 6:\n%v", n, err)
	}
}

func TestCompileRejectsDuplicatesAndBadToolRules(t *testing.T) {
	a := examplePolicy
	dir := writeDir(t, map[string]string{"a.yaml": a, "b.yaml": a})
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(set.Policies, defaultTools(), Options{})
	wantProblem(t, err, filepath.Join(dir, "b.yaml"), 1, `policy "local-dev" is also defined at `)

	tools := defaultTools()
	tools[0].Spec.Rules = []manifest.Rule{
		{Name: "r", Effect: "deny", When: "args.x.size() > 3", Line: 40},
		{Name: "r", Effect: "deny", When: "true", Line: 44},
		{Name: "bad", Effect: "deny", When: "tool.nme == 1", Line: 48},
		{Name: "eff", Effect: "block", When: "true", Line: 52},
	}
	tools = append(tools, mkTool("json.query", manifest.RiskLow))
	_, err = Compile(nil, tools, Options{})
	mf := tools[0].File
	wantProblem(t, err, mf, 44, `rule "r" is defined twice in tool json.query`)
	wantProblem(t, err, mf, 48, "rule tool:json.query/bad: spec.rules[2].when: undefined field 'nme'")
	wantProblem(t, err, mf, 52, "effect: must be allow, deny or require_approval")
	wantProblem(t, err, mf, 0, `tool "json.query" is also defined by`)
}

func TestCallerFromSPIFFE(t *testing.T) {
	c, err := CallerFromSPIFFE("spiffe://airlock.local/uid/1000")
	if err != nil || c.TrustDomain != "airlock.local" || c.Path != "/uid/1000" {
		t.Fatalf("got %+v, %v", c, err)
	}
	c, err = CallerFromSPIFFE("spiffe://example.org")
	if err != nil || c.TrustDomain != "example.org" || c.Path != "" {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, bad := range []string{"", "http://x/y", "spiffe:///path", "spiffe://UPPER/x"} {
		if _, err := CallerFromSPIFFE(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLoadDirSkipsSubdirectories(t *testing.T) {
	dir := writeDir(t, map[string]string{"a.yaml": examplePolicy})
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	set, err := LoadDir(dir)
	if err != nil || len(set.Policies) != 1 {
		t.Fatalf("set = %+v, err = %v", set, err)
	}
}
