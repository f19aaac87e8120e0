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
