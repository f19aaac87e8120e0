package policy

import (
	"strings"
	"testing"
)

func TestIsLinear(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		`caller.spiffe_id.startsWith("spiffe://a/")`:                    true,
		`has(args.path) && args.path.startsWith("x") && args.n + 1 > 2`: true,
		`tool.name in ["a", "b"] && url(args.u).host() == "h"`:          true,
		`args.?x.orValue(1) == 1 && ip(args.ip).isPrivate()`:            true,
		`args.s.matches("^a+$") && glob("*.x", args.h)`:                 true,
		`math.greatest([1, 2]) == 2`:                                    true,
		`args.s.matches(args.re)`:                                       false, // pattern from input
		`glob(args.p, "x")`:                                             false,
		`args.items.exists(x, x == 1)`:                                  false, // comprehension
		`sets.intersects(args.a, args.b)`:                               false, // quadratic
		`lists.range(10).size() == 10`:                                  false,
		`args.s.replace("a", "bbbb") == ""`:                             false, // grows
		`[1, 2].map(x, x * 2) == [2, 4]`:                                false,
	}
	for src, want := range cases {
		a, iss := env.Compile(src)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		if got := isLinear(a); got != want {
			t.Errorf("isLinear(%s) = %v, want %v", src, got, want)
		}
	}
}

func TestHeavyInputTakesTheTrackedPath(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{}, map[string]string{"a.yaml": examplePolicy})
	tr := e.tools["workspace.read"]
	if tr.fast == nil || tr.batch == nil {
		t.Fatal("linear rules got no fast batch")
	}
	heavy := map[string]any{"path": "secrets/" + strings.Repeat("x", fastPathWeight)}
	in := input(t, localCaller, "workspace.read", heavy, tools)
	if light(in, in.Args) {
		t.Fatal("heavy input counted as light")
	}
	wantDecision(t, decide(t, e, in), Deny, []string{"local-dev/no-secrets-dir"}, "off limits")
	in.Args = map[string]any{"path": "ok/" + strings.Repeat("x", fastPathWeight)}
	wantDecision(t, decide(t, e, in), Allow, []string{"local-dev/allow-local"}, "")
	// Task labels count too: they come from the planner.
	in = input(t, localCaller, "workspace.read", map[string]any{}, tools)
	if !light(in, in.Args) {
		t.Fatal("small input counted as heavy")
	}
	in.Task.Labels = map[string]string{"k": strings.Repeat("v", fastPathWeight)}
	if light(in, in.Args) {
		t.Fatal("heavy labels counted as light")
	}
	// A comprehension anywhere in a tool's rules disables its fast batch.
	e2, _ := load(t, tools, Options{}, map[string]string{"a.yaml": policyDoc("a", `{tools: ["*"]}`, allowLocal+
		"    - name: c\n      effect: deny\n      when: 'has(args.l) && args.l.exists(x, x == 1)'\n")})
	if tr := e2.tools["json.query"]; tr.fast != nil || tr.batch == nil {
		t.Fatalf("fast = %v, batch = %v", tr.fast != nil, tr.batch != nil)
	}
}

func TestReachedMaps(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]reach{
		`caller.spiffe_id == "a" && task.id == "t" && tool.name == "n"`: 0,
		`task.labels.team == "a"`:                       reachTaskLabels,
		`tool.labels.team == "a" && tool.risk == "low"`: reachToolLabels,
		`has(tool.capabilities.network)`:                reachToolCaps,
		`tool.?capabilities.hasValue()`:                 reachToolLabels | reachToolCaps,
		`dyn(task) == task`:                             reachTaskLabels,
		`[tool][0].name == "x"`:                         reachToolLabels | reachToolCaps,
		`args.exists(tool, tool == "x")`:                reachToolLabels | reachToolCaps, // conservative
	}
	for src, want := range cases {
		a, iss := env.Compile(src)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		if got := reachedMaps(a); got != want {
			t.Errorf("reachedMaps(%s) = %b, want %b", src, got, want)
		}
	}
}

// TestUnreadMapsDoNotWeigh checks that heavy tool capabilities count
// towards the fast path's weight only when the tool's rules can read them.
func TestUnreadMapsDoNotWeigh(t *testing.T) {
	tools := defaultTools()
	heavy := map[string]any{"x": strings.Repeat("c", fastPathWeight)}
	for rules, wantLight := range map[string]bool{
		allowLocal: true,
		allowLocal + "    - name: caps\n      effect: deny\n      when: 'has(tool.capabilities.x) && tool.capabilities.x == \"\"'\n": false,
		allowLocal + "    - name: whole\n      effect: deny\n      when: 'dyn(tool) == tool && args.size() > 100'\n":                 false,
	} {
		e, _ := load(t, tools, Options{}, map[string]string{"a.yaml": policyDoc("a", `{tools: ["*"]}`, rules)})
		in := input(t, localCaller, "json.query", map[string]any{}, tools)
		in.Tool.Capabilities = heavy
		tr := e.tools["json.query"]
		if got, _ := weigh(in, in.Args, tr.reach); got != wantLight {
			t.Errorf("rules %q: light = %v, want %v", rules, got, wantLight)
		}
		wantDecision(t, decide(t, e, in), Allow, []string{"a/allow-local"}, "")
	}
}
