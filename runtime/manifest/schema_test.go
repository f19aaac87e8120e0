package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileFormatSchema compiles one of manifests/schema/*.schema.json.
func compileFormatSchema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	path := filepath.Join("..", "..", "manifests", "schema", name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource("https://airlock.dev/schema/v1/"+name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("https://airlock.dev/schema/v1/" + name)
	if err != nil {
		t.Fatalf("%s does not compile: %v", path, err)
	}
	return s
}

// yamlAsJSON converts a YAML document to the JSON value an editor validates.
func yamlAsJSON(t *testing.T, data []byte) any {
	t.Helper()
	d := newYAMLDecoder("test.yaml")
	body := d.parseDocument(data)
	var buf bytes.Buffer
	if body == nil || !d.toJSON("", body, &buf, 0) {
		t.Fatalf("cannot convert to JSON: %v", d.problems)
	}
	v, err := jsonschema.UnmarshalJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestToolSchemaAgrees keeps manifests/schema/tool.schema.json and the
// loader in agreement: good manifests pass both, a manifest with an unknown
// key anywhere fails both.
func TestToolSchemaAgrees(t *testing.T) {
	s := compileFormatSchema(t, "tool.schema.json")
	good, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil || len(good) == 0 {
		t.Fatal("no good manifests")
	}
	for _, file := range good {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlAsJSON(t, data)); err != nil {
			t.Errorf("%s fails tool.schema.json: %v", file, err)
		}
		if _, err := LoadFile(file); err != nil {
			t.Errorf("%s fails LoadFile: %v", file, err)
		}
	}

	// Add an unknown key at each level of the format: both must refuse it.
	src, err := os.ReadFile("testdata/good/json_query.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new string }{
		{"kind: Tool\n", "kind: Tool\nbogus: 1\n"},
		{"  name: json.query\n", "  name: json.query\n  bogus: 1\n"},
		{"spec:\n", "spec:\n  bogus: 1\n"},
		{"  runtime:\n", "  runtime:\n    bogus: 1\n"},
		{"      module: ../tool.wasm\n", "      module: ../tool.wasm\n      bogus: 1\n"},
		{"  capabilities:\n", "  capabilities:\n    bogus: 1\n"},
		{"      - host: api.github.com\n", "      - host: api.github.com\n        bogus: 1\n"},
		{"[{path: workspace, access: read-write}]", "[{path: workspace, access: read-write, bogus: 1}]"},
		{"      - name: github\n", "      - name: github\n        bogus: 1\n"},
		{"{http: {host: api.github.com,", "{bogus: 1, http: {host: api.github.com,"},
		{"header: Authorization,", "header: Authorization, bogus: 1,"},
		{"concurrency: 4}", "concurrency: 4, bogus: 1}"},
		{"    - name: approve-big\n", "    - name: approve-big\n      bogus: 1\n"},
	} {
		if !strings.Contains(string(src), tc.old) {
			t.Fatalf("no %q in the good manifest", tc.old)
		}
		mutated := strings.Replace(string(src), tc.old, tc.new, 1)
		line := strings.Count(mutated[:strings.Index(mutated, "bogus")], "\n") + 1
		dir := filepath.Join(t.TempDir(), "good")
		path := filepath.Join(dir, "m.yaml")
		writeFile(t, path, []byte(mutated))
		writeFile(t, filepath.Join(dir, "..", "tool.wasm"), []byte("\x00asm\x01\x00\x00\x00"))

		if err := s.Validate(yamlAsJSON(t, []byte(mutated))); err == nil {
			t.Errorf("%q: tool.schema.json accepts an unknown key", tc.new)
		}
		_, err := LoadFile(path)
		ps := problemsOf(t, err)
		if len(ps) != 1 || ps[0].Line != line || !strings.HasPrefix(ps[0].Msg, `unknown key "bogus" in `) {
			t.Errorf("%q: LoadFile problems %v, want one unknown key at line %d", tc.new, ps, line)
		}
	}
}

func TestPolicySchema(t *testing.T) {
	s := compileFormatSchema(t, "policy.schema.json")
	good := `apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: local-dev}
spec:
  match: {tools: ["*"], risk: [low, medium]}
  rules:
    - {name: allow-local, effect: allow, when: 'caller.spiffe_id.startsWith("spiffe://airlock.local/")', message: '"local callers"'}
    - name: no-secrets-dir
      effect: deny
      when: 'tool.name.startsWith("workspace.") && has(args.path) && args.path.startsWith("secrets/")'
      message: '"the secrets directory is off limits"'
`
	if err := s.Validate(yamlAsJSON(t, []byte(good))); err != nil {
		t.Fatalf("the documented policy fails policy.schema.json: %v", err)
	}
	for name, bad := range map[string]string{
		"unknown key":     strings.Replace(good, "kind: Policy", "kind: Policy\nextra: 1", 1),
		"unknown in rule": strings.Replace(good, "effect: deny", "effect: deny\n      priority: 1", 1),
		"bad effect":      strings.Replace(good, "effect: deny", "effect: block", 1),
		"bad risk":        strings.Replace(good, "risk: [low, medium]", "risk: [mild]", 1),
		"no tools":        strings.Replace(good, `tools: ["*"], `, "", 1),
		"tool kind":       strings.Replace(good, "kind: Policy", "kind: Tool", 1),
		"no rules":        good[:strings.Index(good, "  rules:")],
	} {
		if err := s.Validate(yamlAsJSON(t, []byte(bad))); err == nil {
			t.Errorf("%s: policy.schema.json accepts it", name)
		}
	}
}
