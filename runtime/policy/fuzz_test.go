package policy

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// fuzzPolicy touches args in many ways that fail on unexpected shapes.
var fuzzPolicy = policyDoc("fz", `{tools: ["*"]}`, `    - name: d1
      effect: deny
      when: 'has(args.path) && args.path.startsWith("secrets/")'
    - name: d2
      effect: deny
      when: 'args.size() > 3 && args.exists(k, k.startsWith("z"))'
    - name: a1
      effect: require_approval
      when: 'has(args.n) && args.n > 100'
    - name: r1
      effect: allow
      when: 'has(args.list) && args.list.all(x, x != null) && glob("a*", string(args.list[0]))'
    - name: r2
      effect: allow
      when: 'args.?url.hasValue() && url(args.url).host().endsWith(".example.com") && ip("10.0.0.1").isPrivate()'
    - name: r3
      effect: allow
      when: 'caller.spiffe_id.startsWith("spiffe://airlock.local/") && (has(args.q) ? args.q == 1 : true)'
`)

func randomValue(r *rand.Rand, depth int) any {
	k := r.IntN(10)
	if depth > 4 {
		k = r.IntN(6)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return json.Number([]string{"0", "1", "-3", "2.5", "1e300", "101", "12345678901234567890"}[r.IntN(7)])
	case 3:
		return r.Float64() * 1000
	case 4:
		return []string{"", "a", "secrets/x", "https://h.example.com/p", "http://[::1", "\xff", "zz"}[r.IntN(7)]
	case 5:
		return int64(r.IntN(300) - 100)
	case 6, 7:
		n := r.IntN(4)
		l := make([]any, n)
		for i := range l {
			l[i] = randomValue(r, depth+1)
		}
		return l
	default:
		m := map[string]any{}
		keys := []string{"path", "n", "list", "url", "q", "z1", "x"}
		for range r.IntN(5) {
			m[keys[r.IntN(len(keys))]] = randomValue(r, depth+1)
		}
		return m
	}
}

// TestRandomArgsNeverPanic decides on random arguments, rule by rule and
// batched, and checks both agree and always return a valid effect.
func TestRandomArgsNeverPanic(t *testing.T) {
	tools := defaultTools()
	e, _ := load(t, tools, Options{Timeout: time.Second}, map[string]string{"fz.yaml": fuzzPolicy})
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[Effect]int{}
	for range 3000 {
		in := input(t, []string{localCaller, "spiffe://x.example/y"}[r.IntN(2)], "json.query", randomValue(r, 0), tools)
		d := decide(t, e, in)
		switch d.Effect {
		case Allow, Deny, RequireApproval:
		default:
			t.Fatalf("invalid effect %q for %#v", d.Effect, in.Args)
		}
		if d.Effect != Deny && len(d.Rules) == 0 {
			t.Fatalf("%s without rules for %#v", d.Effect, in.Args)
		}
		seen[d.Effect]++
	}
	if len(seen) != 3 {
		t.Fatalf("effects seen: %v; the generator should reach all three", seen)
	}
}

func FuzzDecide(f *testing.F) {
	for _, s := range []string{`{}`, `{"path":"secrets/a"}`, `{"n": 101}`, `{"list":["ab"]}`, `{"url":"https://a.example.com"}`, `[1,2]`, `null`} {
		f.Add(s)
	}
	tools := defaultTools()
	e, _ := load(f, tools, Options{}, map[string]string{"fz.yaml": fuzzPolicy})
	f.Fuzz(func(t *testing.T, s string) {
		dec := json.NewDecoder(stringsReader(s))
		dec.UseNumber()
		var args any
		if dec.Decode(&args) != nil {
			return
		}
		d := e.Decide(context.Background(), input(t, localCaller, "json.query", args, tools))
		if d.Effect != Allow && d.Effect != Deny && d.Effect != RequireApproval {
			t.Fatalf("invalid effect %q", d.Effect)
		}
	})
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
