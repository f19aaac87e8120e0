package policy

import "testing"

func TestExamplePolicyDecidesAsWritten(t *testing.T) {
	tools := defaultTools()
	e, set := load(t, tools, Options{}, map[string]string{"local-dev.yaml": examplePolicy})
	if len(set.Policies) != 1 || len(set.Warnings) != 0 {
		t.Fatalf("set = %+v", set)
	}
	if r := set.Policies[0].Spec.Rules[1]; r.Line != 12 || r.MessageLine != 13 {
		t.Fatalf("rule lines = %d, %d; want 12, 13", r.Line, r.MessageLine)
	}

	// A local caller may use a low-risk tool.
	d := decide(t, e, input(t, localCaller, "json.query", map[string]any{"filter": ".", "input": map[string]any{}}, tools))
	wantDecision(t, d, Allow, []string{"local-dev/allow-local"}, "")

	// The deny beats the allow.
	d = decide(t, e, input(t, localCaller, "workspace.read", map[string]any{"path": "secrets/key"}, tools))
	wantDecision(t, d, Deny, []string{"local-dev/no-secrets-dir"}, "the secrets directory is off limits")
	if d.Message != "the secrets directory is off limits" {
		t.Fatalf("message = %q", d.Message)
	}

	// has(args.path) guards the deny when there is no path.
	d = decide(t, e, input(t, localCaller, "workspace.read", map[string]any{}, tools))
	wantDecision(t, d, Allow, []string{"local-dev/allow-local"}, "")

	// A remote caller is denied by default.
	d = decide(t, e, input(t, "spiffe://other.example/agent", "json.query", map[string]any{}, tools))
	wantDecision(t, d, Deny, nil, `no policy allows tool "json.query" for caller "spiffe://other.example/agent"`)

	// A high-risk tool is not selected by the policy: default deny.
	d = decide(t, e, input(t, localCaller, "http.fetch", map[string]any{}, tools))
	wantDecision(t, d, Deny, nil, "no policy allows")

	// An unknown tool is denied.
	d = decide(t, e, input(t, localCaller, "JSON.query", map[string]any{}, tools))
	wantDecision(t, d, Deny, nil, "not known to the policy engine")
}
