package policy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

const allowLocal = `    - name: allow-local
      effect: allow
      when: 'caller.spiffe_id.startsWith("spiffe://airlock.local/")'
`

func TestDenyBeatsAllowAndListsEveryMatchingDeny(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{
		"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: no-big
      effect: deny
      when: 'has(args.size) && args.size > 10'
      message: '"size " + string(args.size) + " is too big"'
    - name: no-bad
      effect: deny
      when: 'has(args.bad)'
      message: '"bad"'
`),
	})
	d := decide(t, e, input(t, localCaller, "json.query", map[string]any{"size": 11, "bad": true}, tools))
	wantDecision(t, d, Deny, []string{"a/no-big", "a/no-bad"}, "size 11 is too big")
	d = decide(t, e, input(t, localCaller, "json.query", map[string]any{"bad": true}, tools))
	wantDecision(t, d, Deny, []string{"a/no-bad"}, "bad")
	d = decide(t, e, input(t, localCaller, "json.query", map[string]any{"size": 3}, tools))
	wantDecision(t, d, Allow, []string{"a/allow-local"}, "")
}

func TestRequireApproval(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{
		"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: writes-need-approval
      effect: require_approval
      when: 'tool.name == "workspace.write"'
      message: '"a human must approve writes to " + args.path'
`),
	})
	in := input(t, localCaller, "workspace.write", map[string]any{"path": "notes.txt"}, tools)
	d := decide(t, e, in)
	wantDecision(t, d, RequireApproval, []string{"a/writes-need-approval"}, "a human must approve writes to notes.txt")

	in.Approval = &Approval{State: ApprovalPending}
	wantDecision(t, decide(t, e, in), RequireApproval, []string{"a/writes-need-approval"}, "")

	in.Approval = &Approval{State: ApprovalApproved, Approver: "spiffe://airlock.local/human/ann"}
	wantDecision(t, decide(t, e, in), Allow, []string{"a/writes-need-approval", "a/allow-local"}, "")

	in.Approval = &Approval{State: ApprovalDenied, Approver: "spiffe://airlock.local/human/ann"}
	wantDecision(t, decide(t, e, in), Deny, []string{"a/writes-need-approval"}, "was denied by")

	// Approved, but no allow rule matches: still denied by default.
	in.Approval = &Approval{State: ApprovalApproved}
	in.Caller, _ = CallerFromSPIFFE("spiffe://remote.example/x")
	wantDecision(t, decide(t, e, in), Deny, nil, "an allow rule is still required")

	// Other tools are not affected.
	d = decide(t, e, input(t, localCaller, "json.query", map[string]any{}, tools))
	wantDecision(t, d, Allow, []string{"a/allow-local"}, "")
}

func TestRuleEvaluationErrorDeniesAndNamesTheRule(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{
		"a.yaml": policyDoc("a", `{tools: ["*"]}`, `    - name: missing-field
      effect: deny
      when: 'tool.name == "json.query" && args.missing.x == 1'
    - name: div-zero
      effect: require_approval
      when: 'tool.name == "workspace.read" && 10 / (args.n - args.n) == 1'
    - name: not-bool
      effect: allow
      when: 'tool.name == "workspace.write" ? args.flag : false'
`+allowLocal),
	})
	d := decide(t, e, input(t, localCaller, "json.query", map[string]any{"n": 1}, tools))
	wantDecision(t, d, Deny, []string{"a/missing-field"}, "rule a/missing-field failed to evaluate")
	if !strings.Contains(d.Message, "missing") {
		t.Fatalf("message does not name the error: %q", d.Message)
	}
	d = decide(t, e, input(t, localCaller, "workspace.read", map[string]any{"n": 1}, tools))
	wantDecision(t, d, Deny, []string{"a/div-zero"}, "division by zero")
	d = decide(t, e, input(t, localCaller, "workspace.write", map[string]any{"flag": "yes"}, tools))
	wantDecision(t, d, Deny, []string{"a/not-bool"}, "returned string, not bool")
	// A dyn when that is a bool at run time works.
	d = decide(t, e, input(t, localCaller, "workspace.write", map[string]any{"flag": true}, tools))
	wantDecision(t, d, Allow, []string{"a/not-bool"}, "")
	// A rule that does not apply stays quiet.
	d = decide(t, e, input(t, localCaller, "http.fetch", map[string]any{}, tools))
	wantDecision(t, d, Allow, []string{"a/allow-local"}, "")
}

func TestAllowRuleAfterFirstMatchIsNotEvaluated(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{
		"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: broken-allow
      effect: allow
      when: 'args.nope.nope'
`),
	})
	// The batch fails on the broken rule; the outcome is the rule-by-rule one.
	d := decide(t, e, input(t, localCaller, "json.query", map[string]any{}, tools))
	wantDecision(t, d, Allow, []string{"a/allow-local"}, "")
	d = decide(t, e, input(t, "spiffe://x.example/y", "json.query", map[string]any{}, tools))
	wantDecision(t, d, Deny, []string{"a/broken-allow"}, "failed to evaluate")
}

func TestMatchByGlobRiskAndLabels(t *testing.T) {
	tools := append(defaultTools(), mkTool("workspace", manifest.RiskLow), mkTool("a.b.c", manifest.RiskCritical))
	tools[0].Metadata.Labels = map[string]string{"team": "data"}
	allowAll := "    - name: all\n      effect: allow\n      when: 'true'\n"
	e, _ := load(t, tools, Options{}, map[string]string{
		"1.yaml": policyDoc("ws", `{tools: ["workspace.*"]}`, allowAll),
		"2.yaml": policyDoc("deep", `{tools: ["a.*"], risk: [critical]}`, allowAll),
		"3.yaml": policyDoc("data", `{tools: ["*"], labels: {team: data}}`, allowAll),
	})
	cases := map[string][]string{
		"workspace.read":  {"ws/all"},
		"workspace.write": {"ws/all"},
		"workspace":       nil, // "workspace.*" needs the dot
		"a.b.c":           {"deep/all"},
		"json.query":      {"data/all"},
		"http.fetch":      nil,
	}
	for tool, rules := range cases {
		d := decide(t, e, input(t, localCaller, tool, nil, tools))
		if rules == nil {
			wantDecision(t, d, Deny, nil, "no policy allows")
		} else {
			wantDecision(t, d, Allow, rules, "")
		}
	}
	// Risk must match too.
	tools2 := []*manifest.Manifest{mkTool("a.b", manifest.RiskLow)}
	e2, _ := load(t, tools2, Options{}, map[string]string{"2.yaml": policyDoc("deep", `{tools: ["a.*"], risk: [critical]}`, allowAll)})
	wantDecision(t, decide(t, e2, input(t, localCaller, "a.b", nil, tools2)), Deny, nil, "no policy allows")
}

func TestToolRulesApplyOnlyToTheirTool(t *testing.T) {
	tools := defaultTools()
	tools[1].Spec.Rules = []manifest.Rule{{
		Name: "no-dotfiles", Effect: "deny", Line: 30,
		When:    `args.path.startsWith(".")`,
		Message: `"dotfiles are private: " + args.path`,
	}}
	e, _ := load(t, tools, Options{}, map[string]string{"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal)})
	d := decide(t, e, input(t, localCaller, "workspace.read", map[string]any{"path": ".env"}, tools))
	wantDecision(t, d, Deny, []string{"tool:workspace.read/no-dotfiles"}, "dotfiles are private: .env")
	// Same args to another tool: the rule does not apply.
	d = decide(t, e, input(t, localCaller, "workspace.write", map[string]any{"path": ".env"}, tools))
	wantDecision(t, d, Allow, []string{"a/allow-local"}, "")
	// Without a path the tool's own rule errors and denies (fail closed).
	d = decide(t, e, input(t, localCaller, "workspace.read", map[string]any{}, tools))
	wantDecision(t, d, Deny, []string{"tool:workspace.read/no-dotfiles"}, "failed to evaluate")
}

func TestCostLimitStopsAnExpensiveExpression(t *testing.T) {
	tools := defaultTools()
	// A generous deadline so that only the cost limit can stop it.
	e, _ := load(t, tools, Options{CostLimit: 20_000, Timeout: time.Minute}, map[string]string{
		"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: cubic
      effect: deny
      when: 'args.items.exists(x, args.items.exists(y, args.items.exists(z, x + y + z < 0)))'
`),
	})
	items := make([]any, 300)
	for i := range items {
		items[i] = int64(i)
	}
	start := time.Now()
	d := decide(t, e, input(t, localCaller, "json.query", map[string]any{"items": items}, tools))
	wantDecision(t, d, Deny, []string{"a/cubic"}, "cost limit exceeded")
	t.Logf("denied in %v (two evaluations)", time.Since(start))
	// Small input stays under the limit.
	d = decide(t, e, input(t, localCaller, "json.query", map[string]any{"items": items[:5]}, tools))
	wantDecision(t, d, Allow, []string{"a/allow-local"}, "")
}

func TestDeadlineIsRespected(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{Timeout: 20 * time.Millisecond, CostLimit: 1 << 62}, map[string]string{
		"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: quartic
      effect: deny
      when: 'args.items.exists(w, args.items.exists(x, args.items.exists(y, args.items.exists(z, w + x + y + z < 0))))'
`),
	})
	items := make([]any, 1000) // 10^12 iterations: only the deadline ends it
	for i := range items {
		items[i] = int64(i)
	}
	start := time.Now()
	d := e.Decide(context.Background(), input(t, localCaller, "json.query", map[string]any{"items": items}, tools))
	wantDecision(t, d, Deny, []string{"a/quartic"}, "deadline")
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("decision took %v", el)
	}

	// A context that is already done denies without evaluating.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d = e.Decide(ctx, input(t, localCaller, "json.query", map[string]any{}, tools))
	wantDecision(t, d, Deny, nil, "context canceled")

	// A parent deadline shorter than Timeout wins.
	e2, _ := load(t, tools, Options{Timeout: time.Hour, CostLimit: 1 << 62}, map[string]string{
		"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: quartic
      effect: deny
      when: 'args.items.exists(w, args.items.exists(x, args.items.exists(y, args.items.exists(z, w + x + y + z < 0))))'
`),
	})
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	d = e2.Decide(ctx, input(t, localCaller, "json.query", map[string]any{"items": items}, tools))
	wantDecision(t, d, Deny, []string{"a/quartic"}, "deadline exceeded")
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("ctx.Err() = %v", ctx.Err())
	}
}

func TestVariables(t *testing.T) {
	tools := defaultTools()
	rules := `    - name: all
      effect: allow
      when: >-
        caller.trust_domain == "airlock.local" && caller.path == "/uid/1000" &&
        task.id == "tsk_1" && task.purpose == "demo" && task.sensitivity in ["internal", "public"] &&
        task.labels.team == "a" && task.call_count < 5 &&
        task.started_at < request.time && request.time < task.expires_at &&
        request.id == "int_1" && request.justification.contains("needed") &&
        approval.state == "none" && approval.approver == "" &&
        tool.name == "json.query" && tool.version == "1.0.0" && tool.risk == "low" &&
        tool.digest.size() == 64 && tool.labels.team == "core" &&
        tool.capabilities.network[0].host == "api.example.com" && tool.capabilities.network[0].ports[0] == 443 &&
        env.region == "eu-west" && env.limits.max == 3 && 
        args.n % 2 == 1 && args.f > 2.4 && args.big > 1e18 && args.list.size() == 2 &&
        args.?missing.orValue("dflt") == "dflt"
`
	e, _ := load(t, tools, Options{Env: map[string]any{"region": "eu-west", "limits": map[string]any{"max": json.Number("3")}}},
		map[string]string{"a.yaml": policyDoc("a", `{tools: ["*"]}`, rules)})
	now := time.Now()
	in := input(t, localCaller, "json.query", map[string]any{
		"n": json.Number("3"), "f": json.Number("2.5"), "big": json.Number("12345678901234567890"),
		"list": []any{json.Number("1"), 2.0},
	}, tools)
	in.Task = Task{ID: "tsk_1", Purpose: "demo", Sensitivity: "internal", Labels: map[string]string{"team": "a"},
		StartedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Minute), CallCount: 2}
	in.Request = Request{ID: "int_1", Time: now, Justification: "it is needed"}
	wantDecision(t, decide(t, e, in), Allow, []string{"a/all"}, "")
	in.Task.CallCount = 5
	wantDecision(t, decide(t, e, in), Deny, nil, "no policy allows")

	// Options.Env must be JSON-like.
	if _, err := Compile(nil, tools, Options{Env: map[string]any{"bad": struct{}{}}}); err == nil {
		t.Fatal("non-JSON env accepted")
	}
}

func TestArgsNormalization(t *testing.T) {
	orig := map[string]any{"a": json.Number("2"), "b": []any{3.0, 3.5, "x"}}
	got, err := normalizeValue(orig)
	if err != nil {
		t.Fatal(err)
	}
	m := got.(map[string]any)
	if m["a"] != int64(2) || m["b"].([]any)[0] != int64(3) || m["b"].([]any)[1] != 3.5 {
		t.Fatalf("normalized = %#v", got)
	}
	if orig["a"] != json.Number("2") {
		t.Fatal("normalizeValue modified its input")
	}
	already := map[string]any{"a": int64(1), "b": "s", "c": 1.5}
	if got, _ := normalizeValue(already); got.(map[string]any)["c"] != 1.5 {
		t.Fatal("already normalized value changed")
	}
	if _, err := normalizeValue(map[string]any{"x": json.Number("1e999")}); err == nil {
		t.Fatal("out of range number accepted")
	}
	if _, err := normalizeValue(map[string]any{"x": make(chan int)}); err == nil {
		t.Fatal("channel accepted")
	}
	deep := any("leaf")
	for range maxArgsDepth + 5 {
		deep = []any{deep}
	}
	if _, err := normalizeValue(deep); err == nil {
		t.Fatal("overly deep args accepted")
	}
}

func TestNilAndOddInputs(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{"a.yaml": examplePolicy})
	wantDecision(t, e.Decide(context.Background(), nil), Deny, nil, "nil")
	//nolint:staticcheck // a nil context must not panic either
	wantDecision(t, e.Decide(nil, input(t, localCaller, "json.query", nil, tools)), Allow, []string{"local-dev/allow-local"}, "")
	wantDecision(t, e.Decide(context.Background(), input(t, localCaller, "json.query", map[string]any{"x": make(chan int)}, tools)),
		Deny, nil, "arguments cannot be evaluated")
	// A tool without applicable rules is denied by default.
	e2, err := Compile(nil, tools, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantDecision(t, e2.Decide(context.Background(), input(t, localCaller, "json.query", nil, tools)), Deny, nil, "no policy allows")
}

func TestConcurrentDecide(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{"a.yaml": examplePolicy})
	done := make(chan Decision, 8)
	for i := range 8 {
		go func() {
			var d Decision
			for range 200 {
				path := "notes"
				if i%2 == 0 {
					path = "secrets/x"
				}
				d = e.Decide(context.Background(), input(t, localCaller, "workspace.read", map[string]any{"path": path}, tools))
			}
			done <- d
		}()
	}
	for range 8 {
		if d := <-done; d.Effect != Allow && d.Effect != Deny {
			t.Fatalf("decision %+v", d)
		}
	}
}
