package policy

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// sameResult evaluates prg with the decision activation and with plain
// values as cel-go converts them itself (pointers to the structs, raw
// args and env), and fails unless both agree.
func sameResult(t *testing.T, src string, prg cel.Program, fast cel.Activation, ref cel.Activation) {
	t.Helper()
	got, _, gotErr := prg.Eval(fast)
	want, _, wantErr := prg.Eval(ref)
	switch {
	case gotErr != nil || wantErr != nil:
		if gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error() {
			t.Errorf("%s: error %v, want %v", src, gotErr, wantErr)
		}
	case got.Type().TypeName() != want.Type().TypeName():
		t.Errorf("%s: %v of type %s, want %v of type %s", src, got, got.Type().TypeName(), want, want.Type().TypeName())
	case types.Equal(got, want) != types.True && types.Equal(want, got) != types.True:
		t.Errorf("%s = %v, want %v", src, got, want)
	}
}

func compileAll(t *testing.T, env *cel.Env, exprs []string) map[string]cel.Program {
	t.Helper()
	out := map[string]cel.Program{}
	for _, src := range exprs {
		a, iss := env.Compile(src)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		prg, err := env.Program(a, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		out[src] = prg
	}
	return out
}

// TestObjectsBehaveLikeNativeStructs checks that the memoizing objects of
// the decision variables give every expression the same result as the
// structs cel-go adapts itself, including when fields are read repeatedly
// and when the same activation is reused (pooled) for another input.
func TestObjectsBehaveLikeNativeStructs(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	exprs := []string{
		`caller.spiffe_id`, `caller.trust_domain + caller.path`, `caller.spiffe_id == caller.spiffe_id`,
		`has(caller.path)`, `has(caller.spiffe_id)`, `caller.?path`, `caller.?path.orValue("none")`,
		`type(caller)`, `type(caller) == type(caller)`, `caller == caller`, `task == task`, `caller != caller`,
		`dyn(caller).spiffe_id`, `dyn(caller).path`, `dyn(task).labels`, `has(dyn(caller).path)`,
		`task.labels`, `task.labels.team`, `"team" in task.labels`, `task.labels.size()`, `has(task.labels.team)`,
		`task.started_at < request.time`, `task.expires_at - request.time`, `task.call_count + 1`,
		`task.started_at`, `has(task.started_at)`, `has(task.call_count)`,
		`tool.capabilities`, `tool.capabilities.network[0].ports[0]`, `tool.labels`, `tool.name + tool.risk`,
		`approval.state`, `approval.approver`, `has(approval.approver)`, `request.id + request.justification`,
		`[caller, caller][1].path`, `{"c": caller}.c.trust_domain`, `optional.of(caller).path`,
		`optional.ofNonZeroValue(approval).hasValue()`, `optional.ofNonZeroValue(task).hasValue()`,
		`[caller] == [caller]`, `caller in [caller]`,
		`caller.spiffe_id.startsWith("spiffe://a") && task.labels.team == "x" || request.id == "r"`,
	}
	prgs := compileAll(t, env, exprs)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tool, err := ToolFromManifest(mkTool("json.query", "low"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := []*Input{
		{Caller: Caller{SpiffeID: "spiffe://a.example/x", TrustDomain: "a.example", Path: "/x"},
			Task: Task{ID: "t", Labels: map[string]string{"team": "x"}, StartedAt: now, ExpiresAt: now.Add(time.Hour), CallCount: 3},
			Tool: tool, Request: Request{ID: "r", Time: now.Add(time.Minute), Justification: "j"},
			Approval: &Approval{State: ApprovalApproved, Approver: "ann"}},
		{}, // zero values everywhere: has() is false, labels are nil
		{Caller: Caller{SpiffeID: "spiffe://b"}, Task: Task{Labels: map[string]string{}}, Approval: &Approval{}},
	}
	e := &Engine{adapter: env.CELTypeAdapter()}
	e.objTypes = newObjectTypeSet(e.adapter)
	for i, in := range inputs {
		approval := in.Approval
		if approval == nil {
			approval = noApproval
		}
		act := e.activation(in, approval) // the pool hands back the previous one
		plain, err := cel.NewActivation(map[string]any{
			"caller": &in.Caller, "task": &in.Task, "tool": &in.Tool, "request": &in.Request,
			"approval": approval, "args": map[string]any{}, "env": map[string]any{},
		})
		if err != nil {
			t.Fatal(err)
		}
		act.args, act.env = map[string]any{}, map[string]any{}
		for range 2 { // the second round reads memoized fields
			for _, src := range exprs {
				sameResult(t, src, prgs[src], act, plain)
			}
		}
		if i == 0 && act.caller.have == 0 {
			t.Fatal("no field of caller was memoized")
		}
		e.release(act)
		if act.caller.ptr != nil || act.caller.have != 0 || act.task.fields[0] != nil {
			t.Fatal("release kept a reference to the input")
		}
	}
	// A struct built in an expression is read with cel-go's own getters.
	p := compileAll(t, env, []string{`policy.Caller{spiffe_id: "s"}.spiffe_id == "s"`})
	act := newActivation(e.adapter, &e.objTypes, &Input{}, noApproval, map[string]any{}, map[string]any{})
	for src, prg := range p {
		out, _, err := prg.Eval(act)
		if err != nil || out != types.True {
			t.Fatalf("%s = %v, %v", src, out, err)
		}
	}
}

// TestDeepArgsBehaveLikeLazyArgs checks that arguments converted to CEL
// values up front (celValue) give every expression the same result as the
// lazily converted ones, on random JSON-like arguments.
func TestDeepArgsBehaveLikeLazyArgs(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	exprs := []string{
		`args`, `type(args)`, `args.size()`, `has(args.path)`, `args.path`, `args.?path.orValue("none")`,
		`"path" in args`, `args.n + 1`, `args.n * 2.0`, `args.n > 100`, `string(args.n)`, `args.list`,
		`args.list[0]`, `args.list[3]`, `args.list.size()`, `1 in args.list`, `args.list == [1, "a"]`,
		`args.list.exists(x, x == 1)`, `args.list.all(x, x != null)`, `args.exists(k, k.startsWith("z"))`,
		`args.map(k, k).sort()`, `args == {"path": "secrets/x"}`, `args != {}`, `dyn(args).size()`, `args.z1`,
		`has(args.list)`, `args.?list[?0]`, `args.url.startsWith("https://")`, `args.q == 1`, `args.x.x`,
		`has(args.x.path)`, `[args] == [args]`, `{"a": args}.a == args`, `args[1]`,
		`sets.contains(args.list, [1])`, `"%s".format([args.path])`, `string(args)`,
	}
	prgs := compileAll(t, env, exprs)
	adapter := env.CELTypeAdapter()
	ts := newObjectTypeSet(adapter)
	r := rand.New(rand.NewPCG(3, 4))
	for range 400 {
		raw, err := normalizeValue(randomValue(r, 0))
		if err != nil {
			continue
		}
		in := &Input{}
		deep := newActivation(adapter, &ts, in, noApproval, celValue(adapter, raw), map[string]any{})
		lazy := newActivation(adapter, &ts, in, noApproval, raw, map[string]any{})
		for _, src := range exprs {
			sameResult(t, src, prgs[src], deep, lazy)
		}
	}
	// JSON numbers and Go ints convert like cel-go converts them.
	raw, err := normalizeValue(map[string]any{"a": json.Number("2"), "b": 3, "c": 2.5, "d": nil})
	if err != nil {
		t.Fatal(err)
	}
	deep := newActivation(adapter, &ts, &Input{}, noApproval, celValue(adapter, raw), map[string]any{})
	lazy := newActivation(adapter, &ts, &Input{}, noApproval, raw, map[string]any{})
	for src, prg := range compileAll(t, env, []string{`args.a + args.b`, `args.c`, `args.d == null`, `type(args.b)`}) {
		sameResult(t, src, prg, deep, lazy)
	}
}

// TestDecideWithDeepArgs decides with arguments converted up front (many
// reads of few values) and lazily (few reads), and checks both against
// rule-by-rule evaluation.
func TestDecideWithDeepArgs(t *testing.T) {
	tools := defaultTools()
	var rules strings.Builder
	for i := range 6 {
		rules.WriteString("    - name: d" + string(rune('a'+i)) + "\n      effect: deny\n      when: 'has(args.path) && args.path.startsWith(\"s" +
			string(rune('a'+i)) + "/\") && args.n > 1'\n")
	}
	e, _ := load(t, tools, Options{}, map[string]string{"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+rules.String())})
	tr := e.tools["json.query"]
	if tr.argRefs < 2*deepArgsFactor*3 {
		t.Fatalf("argRefs = %d", tr.argRefs)
	}
	small := map[string]any{"path": "sc/x", "n": json.Number("2")}
	wantDecision(t, decide(t, e, input(t, localCaller, "json.query", small, tools)), Deny, []string{"a/dc"}, "")
	big := map[string]any{"path": "ok", "n": 2, "list": make([]any, 100)}
	wantDecision(t, decide(t, e, input(t, localCaller, "json.query", big, tools)), Allow, []string{"a/allow-local"}, "")
}

// TestFoldingPerTool checks that rules decided by tool.name are folded to
// constants per tool, that the other rules stay evaluated, and that the
// outcome is the rule-by-rule one.
func TestFoldingPerTool(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: writes
      effect: deny
      when: 'tool.name == "workspace.write" && args.path.startsWith("x")'
    - name: reads
      effect: require_approval
      when: 'tool.name in ["workspace.read"] || 1 + 1 == 3'
    - name: big
      effect: deny
      when: 'has(args.n) && args.n > 10 * 10'
    - name: shadow
      effect: deny
      when: '[{"name": "json.query"}].exists(tool, tool.name == "nope")'
`)})
	want := map[string][]bool{ // per rule in deny, approval, allow order: constant?
		"json.query":      {true, false, false, true, false},
		"workspace.read":  {true, false, false, true, false},
		"workspace.write": {false, false, false, true, false},
	}
	for tool, consts := range want {
		tr := e.tools[tool]
		if !tr.batchOK {
			t.Fatalf("%s: no batch", tool)
		}
		order := tr.ordered()
		for i, c := range consts {
			if got := tr.consts[i] != nil; got != c {
				t.Errorf("%s: rule %s constant = %v, want %v", tool, order[i].qname, got, c)
			}
		}
	}
	// writes folds to false for json.query: its error (no args.path) never happens.
	wantDecision(t, decide(t, e, input(t, localCaller, "json.query", map[string]any{}, tools)), Allow, []string{"a/allow-local"}, "")
	wantDecision(t, decide(t, e, input(t, localCaller, "workspace.write", map[string]any{}, tools)), Deny, []string{"a/writes"}, "failed to evaluate")
	wantDecision(t, decide(t, e, input(t, localCaller, "workspace.write", map[string]any{"path": "xy", "n": 101}, tools)),
		Deny, []string{"a/writes", "a/big"}, "")
	wantDecision(t, decide(t, e, input(t, localCaller, "workspace.read", map[string]any{}, tools)),
		RequireApproval, []string{"a/reads"}, "")

	// A comprehension variable named tool shadows the decision variable:
	// nothing is bound then (only linear rules are folded, and they have no
	// comprehension, but the binding does not rely on that).
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	for src, n := range map[string]int{
		`tool.name == "a" && tool.name != "b" && has(tool.name)`:         2,
		`[{"name": "x"}].exists(tool, tool.name == "x")`:                 0,
		`tool.name == "a" && [1].exists(tool, tool == 1)`:                0,
		`[tool.name].exists(x, x == tool.name) && {"name": 1}.name == 1`: 2,
	} {
		a, iss := env.Compile(src)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		if got := len(toolNameSelects(a.NativeRep())); got != n {
			t.Errorf("%s: %d tool.name selections, want %d", src, got, n)
		}
	}

	// Non-linear rules are not folded: a constant comprehension would be
	// evaluated at Compile without a cost limit.
	e2, _ := load(t, tools, Options{}, map[string]string{"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+`    - name: huge
      effect: deny
      when: 'lists.range(100000).all(x, lists.range(100000).all(y, y >= 0)) && tool.name == "nope"'
`)})
	if tr := e2.tools["json.query"]; tr.consts[0] != nil || tr.consts[1] != nil {
		t.Fatal("a non-linear rule was folded")
	}
}

// TestBatchEqualsRuleByRuleWithFolding runs the random arguments of the
// fuzz policy against every tool, so that per-tool folding is compared
// with rule-by-rule evaluation on each.
func TestBatchEqualsRuleByRuleWithFolding(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{Timeout: time.Second}, map[string]string{"fz.yaml": fuzzPolicy, "t.yaml": policyDoc("t", `{tools: ["*"]}`, `    - name: by-tool
      effect: deny
      when: 'tool.name == "http.fetch" && has(args.path) || tool.name.startsWith("workspace.") && args.size() > 2'
    - name: by-tool-approval
      effect: require_approval
      when: 'tool.name != "json.query" && has(args.n)'
`)})
	r := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		tool := tools[r.IntN(len(tools))].Metadata.Name
		decide(t, e, input(t, localCaller, tool, randomValue(r, 0), tools))
	}
}
