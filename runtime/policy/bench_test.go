package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// benchRules returns n realistic rules, all of which must be evaluated for
// the benchmark input: n-1 deny rules that do not match, then the allow
// rule that does.
func benchRules(n int) string {
	templates := []string{
		`caller.spiffe_id.startsWith("spiffe://blocked%d.example/")`,
		`has(args.path) && args.path.startsWith("secrets%d/")`,
		`tool.name in ["x%[1]d.read", "x%[1]d.write", "x%[1]d.list"]`,
		`args.size() > 50 || task.sensitivity == "restricted%d"`,
		`has(args.limit) && args.limit > 1000 + %d`,
	}
	var b strings.Builder
	for i := 0; i < n-1; i++ {
		fmt.Fprintf(&b, "    - name: deny-%d\n      effect: deny\n      when: '%s'\n", i, fmt.Sprintf(templates[i%len(templates)], i))
	}
	b.WriteString(allowLocal)
	return b.String()
}

func benchEngine(b *testing.B, n int) (*Engine, *Input) {
	tools := []*manifest.Manifest{mkTool("workspace.read", manifest.RiskLow)}
	e, _ := load(b, tools, Options{}, map[string]string{"bench.yaml": policyDoc("bench", `{tools: ["*"]}`, benchRules(n))})
	in := input(b, localCaller, "workspace.read", map[string]any{"path": "notes/today.md", "limit": int64(10)}, tools)
	in.Task = Task{ID: "tsk_1", Purpose: "bench", Sensitivity: "internal", StartedAt: time.Now()}
	in.Request = Request{ID: "int_1", Time: time.Now()}
	if d := e.Decide(context.Background(), in); d.Effect != Allow || d.Rules[0] != "bench/allow-local" {
		b.Fatalf("decision = %+v", d)
	}
	return e, in
}

// BenchmarkDecide measures one decision at 1, 10 and 100 applicable rules,
// every rule evaluated (the allow rule is last).
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			e, in := benchEngine(b, n)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if d := e.Decide(ctx, in); d.Effect != Allow {
					b.Fatal(d)
				}
			}
		})
	}
}

// BenchmarkDecideRuleByRule is BenchmarkDecide without the batch program,
// for comparison.
func BenchmarkDecideRuleByRule(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			e, in := benchEngine(b, n)
			e.noBatch = true
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if d := e.Decide(ctx, in); d.Effect != Allow {
					b.Fatal(d)
				}
			}
		})
	}
}

// BenchmarkCompile measures Compile of 100 rules (a fifth of them naming
// tools, so folded per tool) for 20 tools.
func BenchmarkCompile(b *testing.B) {
	var tools []*manifest.Manifest
	for i := range 20 {
		tools = append(tools, mkTool(fmt.Sprintf("x%d.read", i), manifest.RiskLow))
	}
	set, err := LoadDir(writeDir(b, map[string]string{"bench.yaml": policyDoc("bench", `{tools: ["*"]}`, benchRules(100))}))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Compile(set.Policies, tools, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
