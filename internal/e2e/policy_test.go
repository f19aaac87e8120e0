package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
)

const decisionsPolicy = `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: p}
spec:
  match: {tools: ["json.*", "html.*"]}
  rules:
    - name: allow-query
      effect: allow
      when: 'tool.name == "json.query"'
    - name: deny-secret
      effect: deny
      when: 'tool.name == "json.query" && args.filter == ".secret"'
      message: '"filter " + args.filter + " is not allowed"'
    - name: boom
      effect: deny
      when: 'tool.name == "html.to_text" && size(args.html) / 0 == 1'
    - name: allow-html
      effect: allow
      when: 'tool.name == "html.to_text"'
`

func TestPolicyDecidesThroughThePipeline(t *testing.T) {
	x := testenv.Start(t, testenv.Options{Manifests: testenv.BundledManifests(t), Policies: testenv.Policy(t, "p", decisionsPolicy)})

	t.Run("no policy allows: default deny", func(t *testing.T) {
		out := submit(t, x, "text.wc", `{"text":"a"}`)
		wantStatus(t, out, airlockv1.Status_STATUS_DENIED, "denied")
		if d := out.GetDecision(); d.GetEffect() != airlockv1.Effect_EFFECT_DENY || len(d.GetRules()) != 0 || d.GetMessage() == "" {
			t.Fatalf("decision %v", d)
		}
	})
	t.Run("allow", func(t *testing.T) {
		wantOK(t, submit(t, x, "json.query", `{"filter":".a","input":{"a":1}}`))
	})
	t.Run("deny beats allow", func(t *testing.T) {
		out := submit(t, x, "json.query", `{"filter":".secret","input":{}}`)
		wantStatus(t, out, airlockv1.Status_STATUS_DENIED, "denied")
		if d := out.GetDecision(); strings.Join(d.GetRules(), ",") != "p/deny-secret" || d.GetMessage() != "filter .secret is not allowed" {
			t.Fatalf("decision %v", d)
		}
	})
	t.Run("a rule whose evaluation errors denies and is named", func(t *testing.T) {
		out := submit(t, x, "html.to_text", `{"html":"<p>x</p>"}`)
		wantStatus(t, out, airlockv1.Status_STATUS_DENIED, "denied")
		d := out.GetDecision()
		if d.GetEffect() != airlockv1.Effect_EFFECT_DENY || !strings.Contains(strings.Join(d.GetRules(), ","), "p/boom") {
			t.Fatalf("decision %v", d)
		}
		mustContain(t, d.GetMessage(), "boom")
	})
}

func TestBadPolicyIsRejectedAtLoadWithFileAndLine(t *testing.T) {
	cases := []struct {
		name, when string
		want       string
	}{
		{"unknown variable", `nosuch.thing == 1`, "nosuch"},
		{"not bool", `"a string"`, "bool"},
		{"unknown field of a typed variable", `caller.spife_id == "x"`, "spife_id"},
		{"syntax", `caller.spiffe_id ==`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := "apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: {name: bad}\nspec:\n  match: {tools: [\"*\"]}\n  rules:\n    - name: r\n      effect: allow\n      when: '" + c.when + "'\n"
			_, err := testenv.TryStart(t, testenv.Options{Manifests: testenv.BundledManifests(t), Policies: testenv.Policy(t, "bad", body)})
			if err == nil {
				t.Fatal("the executor started with a bad policy")
			}
			if !regexp.MustCompile(`bad\.yaml:9(:\d+)?: `).MatchString(err.Error()) {
				t.Fatalf("error does not name bad.yaml:9: %v", err)
			}
			mustContain(t, err.Error(), c.want)
		})
	}
}
