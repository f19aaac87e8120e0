// Package tools_test checks the bundled tools' manifests (manifests/tools)
// against the modules they name: every manifest loads under the real loader,
// and the examples a planner sees pass the input schema, run in the module
// under wazero, and produce output that passes the output schema.
package tools_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/tools/internal/wasmtest"
)

// tree copies the manifests into a temporary tree with freshly built modules
// at the paths the manifests name, pins them with tools/pin.sh, and returns
// the manifests directory.
func tree(t *testing.T) string {
	t.Helper()
	root := wasmtest.RepoRoot(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "manifests", "tools")
	for _, d := range []string{dir, filepath.Join(tmp, "build", "wasm"), filepath.Join(tmp, "build", "plugins"), filepath.Join(tmp, "tools", "textwc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	yamls, _ := filepath.Glob(filepath.Join(root, "manifests", "tools", "*.yaml"))
	if len(yamls) != 8 {
		t.Fatalf("found %d manifests in manifests/tools, want 8", len(yamls))
	}
	for _, y := range yamls {
		copyFile(y, filepath.Join(dir, filepath.Base(y)))
	}
	for _, name := range []string{"jsonquery", "htmltext", "workspace", "httpfetch"} {
		copyFile(wasmtest.BuildGo(t, "./tools/"+name), filepath.Join(tmp, "build", "wasm", name+".wasm"))
	}
	copyFile(filepath.Join(root, "tools", "textwc", "textwc.wasm"), filepath.Join(tmp, "tools", "textwc", "textwc.wasm"))
	// The native plugin tool (sqlite.query), built for the host.
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", filepath.Join(tmp, "build", "plugins", "sqlitequery"), "./tools/sqlitequery")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tools/sqlitequery: %v\n%s", err, out)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	pin := func(args ...string) (string, error) {
		out, err := exec.Command("bash", append([]string{filepath.Join(root, "tools", "pin.sh")}, args...)...).CombinedOutput()
		return string(out), err
	}
	// Unpinned copies fail the check, naming each manifest...
	zero := strings.Repeat("0", 64)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		s := string(b)
		i := strings.Index(s, `sha256: "`) + len(`sha256: "`)
		if err := os.WriteFile(f, []byte(s[:i]+zero+s[i+64:]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := pin(append([]string{"--check"}, files...)...); err == nil || strings.Count(out, "pinned "+zero) != 8 {
		t.Fatalf("pin.sh --check on unpinned manifests: %v\n%s", err, out)
	}
	// ...pin.sh fixes them, and the check passes.
	if out, err := pin(files...); err != nil {
		t.Fatalf("pin.sh: %v\n%s", err, out)
	}
	if out, err := pin(append([]string{"--check"}, files...)...); err != nil {
		t.Fatalf("pin.sh --check after pinning: %v\n%s", err, out)
	}
	return dir
}

func TestManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the wasip1 modules")
	}
	dir := tree(t)
	ms, err := manifest.LoadDir(dir)
	if err != nil {
		t.Fatalf("the bundled manifests do not load:\n%v", err)
	}
	byName := map[string]*manifest.Manifest{}
	modules := map[string]*wasmtest.Module{}
	for _, m := range ms {
		byName[m.Metadata.Name] = m
		if m.ModulePath() != "" && modules[m.ModulePath()] == nil {
			modules[m.ModulePath()] = wasmtest.Load(t, m.ModulePath())
		}
	}
	workspace := t.TempDir()

	// Each example runs as the executor would: schema, module, schema.
	examples := []struct {
		tool, args, want string
	}{
		{"json.query", `{"filter": ".items[] | select(.price > 10) | .name", "input": {"items": [{"name": "a", "price": 5}, {"name": "b", "price": 12}]}}`, `{"results":["b"]}`},
		{"html.to_text", `{"html": "<h1>News</h1><p>Read <a href=\"/a\">this</a>.</p>"}`, `{"text":"News\nRead this.","links":[{"text":"this","href":"/a"}]}`},
		{"workspace.write", `{"path": "notes/plan.md", "content": "# Plan\n"}`, `{"bytes":7}`},
		{"workspace.read", `{"path": "notes/plan.md"}`, `{"content":"# Plan\n"}`},
		{"workspace.list", `{"path": "notes"}`, `{"entries":[{"name":"plan.md","size":7,"dir":false}]}`},
		{"workspace.list", `{}`, `{"entries":[{"name":"notes","size":0,"dir":true}]}`},
		{"text.wc", `{"text": "one two\nthree\n"}`, `{"bytes":14,"words":3,"lines":2}`},
	}
	for _, ex := range examples {
		m := byName[ex.tool]
		if m == nil {
			t.Fatalf("no manifest for %s", ex.tool)
		}
		if _, err := m.ValidateArgs([]byte(ex.args)); err != nil {
			t.Errorf("%s: the example %s fails the input schema: %v", ex.tool, ex.args, err)
			continue
		}
		ws := ""
		if granted, _ := m.GrantsWorkspace(); granted {
			ws = workspace
		}
		r := modules[m.ModulePath()].Run(t, ex.tool, ex.args, ws)
		if r.Exit != 0 || r.Stdout != ex.want+"\n" {
			t.Errorf("%s %s: got %+v, want %s", ex.tool, ex.args, r, ex.want)
			continue
		}
		if _, err := m.ValidateOutput([]byte(r.Stdout)); err != nil {
			t.Errorf("%s: output %s fails the output schema: %v", ex.tool, r.Stdout, err)
		}
		if int64(len(r.Stdout)) > int64(m.Spec.Limits.Output) {
			t.Errorf("%s: output of %d bytes is over the manifest's limit", ex.tool, len(r.Stdout))
		}
	}

	// The input schemas refuse what the tools would refuse anyway.
	refused := []struct{ tool, args string }{
		{"json.query", `{"filter": ".", "input": 1, "env": true}`},
		{"json.query", `{"filter": "", "input": 1}`},
		{"json.query", `{"input": 1}`},
		{"html.to_text", `{"html": 1}`},
		{"text.wc", `{"text": "x", "more": 1}`},
		{"workspace.write", `{"path": "a", "content": "x", "mode": 511}`},
		{"workspace.list", `{"path": "."}`},
		{"http.fetch", `{"url": "ftp://example.org/"}`},
		{"http.fetch", `{"url": "https://example.org/", "method": "TRACE"}`},
		{"http.fetch", `{"url": "https://example.org/", "headers": {"a b": "c"}}`},
		{"http.fetch", `{"url": "https://example.org/", "headers": {"A": ["x"]}}`},
		{"http.fetch", `{}`},
	}
	for _, p := range []string{"/etc/passwd", "../x", "a/../../x", "..", ".", "a/./b", "a//b", "", "a\u0000b", "a/"} {
		arg, _ := json.Marshal(p)
		refused = append(refused, struct{ tool, args string }{"workspace.read", `{"path": ` + string(arg) + `}`})
	}
	for _, r := range refused {
		if _, err := byName[r.tool].ValidateArgs([]byte(r.args)); err == nil {
			t.Errorf("%s: the input schema accepts %s", r.tool, r.args)
		}
	}
	// http.fetch runs only with egress (runtime/egress tests it end to end);
	// here its schemas take its documented example.
	if _, err := byName["http.fetch"].ValidateArgs([]byte(`{"url": "https://example.org/", "method": "POST", "headers": {"Accept": "text/plain"}, "body": "x"}`)); err != nil {
		t.Errorf("http.fetch: the input schema refuses a valid request: %v", err)
	}
	if _, err := byName["http.fetch"].ValidateOutput([]byte(`{"status": 200, "headers": {"Content-Type": "text/html"}, "body": "<!doctype html>", "truncated": false}`)); err != nil {
		t.Errorf("http.fetch: the output schema refuses its example: %v", err)
	}
	for _, p := range []string{"a", "notes/plan.md", "..foo", ".hidden/x", "a..b/c.d", "日本/ファイル.txt"} {
		arg, _ := json.Marshal(p)
		if _, err := byName["workspace.read"].ValidateArgs([]byte(`{"path": ` + string(arg) + `}`)); err != nil {
			t.Errorf("workspace.read: the input schema refuses the path %q: %v", p, err)
		}
	}

	// Grants: only the workspace tools get a workspace, read-only but for
	// write and sqlite.query (isolated plugins mount it read-write only; the
	// tool opens its database read-only).
	for name, m := range byName {
		granted, readOnly := m.GrantsWorkspace()
		wantGrant := strings.HasPrefix(name, "workspace.") || name == "sqlite.query"
		if granted != wantGrant || (granted && readOnly != (name != "workspace.write" && name != "sqlite.query")) {
			t.Errorf("%s: workspace granted=%v readOnly=%v", name, granted, readOnly)
		}
		c := m.Spec.Capabilities
		if name == "http.fetch" {
			// The shipped allowlist: GET and HEAD on https://example.org only.
			if len(c.Network) != 1 || c.Network[0].Host != "example.org" || strings.Join(c.Network[0].Schemes, ",") != "https" ||
				strings.Join(c.Network[0].Methods, ",") != "GET,HEAD" || len(c.Network[0].Ports) != 0 {
				t.Errorf("http.fetch: network %+v, want GET and HEAD on https://example.org", c.Network)
			}
			c.Network = nil
		}
		if len(c.Network) > 0 || len(c.Env) > 0 || len(c.Credentials) > 0 || c.Clock {
			t.Errorf("%s: grants more than it needs: %+v", name, c)
		}
	}
}
