package policy

import (
	"strings"
	"testing"
)

const exampleTests = `apiVersion: airlock.dev/v1
kind: PolicyTest
metadata: {name: local-dev-tests}
spec:
  cases:
    - name: local caller may query json
      caller: spiffe://airlock.local/uid/1000
      tool: json.query
      args: {filter: ".", input: {}}
      task: {id: tsk_x, purpose: demo, sensitivity: internal, labels: {team: a}}
      justification: "the demo needs it"
      expect: {effect: allow, rules: [local-dev/allow-local]}
    - name: secrets are off limits
      caller: spiffe://airlock.local/uid/1000
      tool: workspace.read
      args: {path: secrets/key}
      expect: {effect: deny, rules: [local-dev/no-secrets-dir], message: "the secrets directory is off limits"}
    - name: wrong expectation
      caller: spiffe://elsewhere.example/agent
      tool: json.query
      args: {}
      expect: {effect: allow, rules: [local-dev/allow-local]}
    - name: wrong message
      caller: spiffe://airlock.local/uid/1000
      tool: workspace.read
      args: {path: secrets/key}
      expect: {effect: deny, message: "nope"}
    - name: unknown tool
      caller: spiffe://airlock.local/uid/1000
      tool: JSON.query
      expect: {effect: deny}
`

func TestRunTests(t *testing.T) {
	tools := defaultTools()
	e, set := load(t, tools, Options{}, map[string]string{"policy.yaml": examplePolicy, "tests.yaml": exampleTests})
	res := e.RunTests(set.Tests, toolMap(tools))
	if len(res) != 5 {
		t.Fatalf("%d results, want 5", len(res))
	}
	for _, i := range []int{0, 1} {
		if !res[i].Pass || res[i].Diff != "" {
			t.Errorf("case %q failed: %s", res[i].Name, res[i].Diff)
		}
	}
	r := res[2]
	if r.Pass || r.Name != "local-dev-tests/wrong expectation" || r.Line != 18 || !strings.HasSuffix(r.File, "tests.yaml") {
		t.Fatalf("result = %+v", r)
	}
	wantDiff := "effect: want allow, got deny\nrules: want [local-dev/allow-local], got []"
	if r.Diff != wantDiff {
		t.Fatalf("diff =\n%s\nwant\n%s", r.Diff, wantDiff)
	}
	if r := res[3]; r.Pass || r.Diff != `message: want "nope", got "the secrets directory is off limits"` {
		t.Fatalf("message diff = %q", r.Diff)
	}
	if r := res[4]; r.Pass || !strings.Contains(r.Diff, `no manifest named "JSON.query"`) || !strings.Contains(r.Diff, "json.query") {
		t.Fatalf("unknown tool result = %+v", r)
	}
}
