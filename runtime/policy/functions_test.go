package policy

import (
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
)

// evalExpr compiles and evaluates one expression in the policy environment
// with args bound.
func evalExpr(t *testing.T, expr string, args any) (any, error) {
	t.Helper()
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	a, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	prg, err := env.Program(a, cel.CostLimit(DefaultCostLimit))
	if err != nil {
		t.Fatal(err)
	}
	ts := newObjectTypeSet(env.CELTypeAdapter())
	out, _, err := prg.Eval(newActivation(env.CELTypeAdapter(), &ts, &Input{}, noApproval, args, map[string]any{}))
	if err != nil {
		return nil, err
	}
	return out.Value(), nil
}

func TestFunctions(t *testing.T) {
	args := map[string]any{
		"url":  "https://API.Example.com:8443/v1/items?q=a&q=b&x=1",
		"url2": "http://example.com",
		"ip":   "10.1.2.3",
	}
	trueExprs := []string{
		// url
		`url(args.url).host() == "api.example.com"`,
		`url(args.url).scheme() == "https"`,
		`url(args.url).port() == 8443`,
		`url(args.url2).port() == 80`,
		`url("https://x.example").port() == 443`,
		`url(args.url).path() == "/v1/items"`,
		`url(args.url2).path() == ""`,
		`url(args.url).query().q == ["a", "b"]`,
		`url(args.url).query().x[0] == "1"`,
		`url("http://[::1]:80/").host() == "::1"`,
		`isURL(args.url) && !isURL("/relative/path") && !isURL("not a url")`,
		`string(url(args.url2)) == "http://example.com"`,
		// ip / cidr (ext.Network) and isPrivate
		`cidr("10.0.0.0/8").containsIP(ip(args.ip))`,
		`cidr("10.0.0.0/8").containsIP(args.ip)`,
		`!cidr("192.168.0.0/16").containsIP(ip(args.ip))`,
		`ip("127.0.0.1").isLoopback() && ip("::1").isLoopback() && !ip(args.ip).isLoopback()`,
		`ip(args.ip).isPrivate() && ip("192.168.1.1").isPrivate() && ip("fd00::1").isPrivate()`,
		`!ip("8.8.8.8").isPrivate() && !ip("127.0.0.1").isPrivate()`,
		// glob
		`glob("*.example.com", "api.v2.example.com")`,
		`glob("workspace.*", "workspace.read") && !glob("workspace.*", "workspace")`,
		`glob("a?c", "abc") && !glob("a?c", "abbc")`,
		`glob("/data/*", "/data/x/y/z")`,
		// extension libraries are installed
		`"a,b".split(",") == ["a", "b"]`,
		`sets.contains([1, 2, 3], [1, 3])`,
		`[3, 1, 2].sort() == [1, 2, 3]`,
		`math.greatest(1, 5, 3) == 5`,
		`base64.encode(b"hi") == "aGk="`,
		`args.?nope.orValue(1) == 1`,
	}
	for _, expr := range trueExprs {
		got, err := evalExpr(t, expr, args)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		if got != true {
			t.Errorf("%s = %v, want true", expr, got)
		}
	}
	errExprs := map[string]string{
		`url("/relative").host() == ""`:      "not an absolute URL",
		`url("http://x:99999/").port() == 1`: "invalid port",
		`ip("not-an-ip").isLoopback()`:       "IP Address",
		`glob("abc\\", "abc")`:               "unescaped",
	}
	for expr, want := range errExprs {
		_, err := evalExpr(t, expr, args)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", expr, err, want)
		}
	}
	// glob bounds its work.
	big := map[string]any{"p": strings.Repeat("*a", 500), "s": strings.Repeat("a", 10_000)}
	if _, err := evalExpr(t, `glob(args.p, args.s)`, big); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("glob over the work bound: %v", err)
	}
	// A URL value prints and compares.
	got, err := evalExpr(t, `url(args.url) == url(args.url)`, args)
	if err != nil || got != true {
		t.Errorf("url equality: %v %v", got, err)
	}
}
