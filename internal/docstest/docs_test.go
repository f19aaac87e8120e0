package docstest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
)

// guides are the user guides whose examples are tested.
var guides = []string{"docs/planner-guide.md", "docs/tool-guide.md", "docs/operator-guide.md"}

// block is one fenced code block of a guide.
type block struct {
	guide string
	line  int // line of the opening fence
	lang  string
	attrs map[string]string
	text  string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.guide, b.line) }

var (
	blocksOnce sync.Once
	allBlocks  []block
	blocksErr  error
)

// blocks returns every fenced block of the guides.
func blocks(t *testing.T) []block {
	t.Helper()
	root := testenv.Root(t)
	blocksOnce.Do(func() {
		for _, g := range guides {
			data, err := os.ReadFile(filepath.Join(root, g))
			if err != nil {
				blocksErr = err
				return
			}
			bs, err := parseBlocks(g, string(data))
			if err != nil {
				blocksErr = err
				return
			}
			allBlocks = append(allBlocks, bs...)
		}
	})
	if blocksErr != nil {
		t.Fatal(blocksErr)
	}
	return allBlocks
}

// parseBlocks splits markdown into its fenced blocks (``` fences at the
// start of a line).
func parseBlocks(guide, s string) ([]block, error) {
	var out []block
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "```") {
			continue
		}
		info := strings.Fields(strings.TrimPrefix(l, "```"))
		b := block{guide: guide, line: i + 1, attrs: map[string]string{}}
		if len(info) > 0 {
			b.lang = info[0]
			for _, kv := range info[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("%s:%d: info string word %q is not key=value", guide, i+1, kv)
				}
				b.attrs[k] = v
			}
		}
		var body []string
		j := i + 1
		for ; j < len(lines) && lines[j] != "```"; j++ {
			body = append(body, lines[j])
		}
		if j == len(lines) {
			return nil, fmt.Errorf("%s:%d: the code block is not closed", guide, i+1)
		}
		b.text = strings.Join(body, "\n") + "\n"
		out = append(out, b)
		i = j
	}
	return out, nil
}

func ofKind(bs []block, kind string) []block {
	var out []block
	for _, b := range bs {
		if b.attrs["title"] == kind {
			out = append(out, b)
		}
	}
	return out
}

// TestGuidesHaveTestedExamples guards the convention itself: a typo in a
// title would silently drop a block from the tests.
func TestGuidesHaveTestedExamples(t *testing.T) {
	known := map[string]bool{"manifest": true, "problems": true, "policy": true, "policytest": true,
		"tool": true, "tooltest": true, "planner": true, "excerpt": true, "credentials": true}
	count := map[string]int{}
	for _, b := range blocks(t) {
		title, ok := b.attrs["title"]
		if !ok {
			continue
		}
		if !known[title] {
			t.Errorf("%s: unknown title=%q: see the package doc for the kinds", b, title)
		}
		count[title]++
	}
	for _, k := range []string{"manifest", "policy", "policytest", "tool", "tooltest", "planner", "excerpt", "credentials"} {
		if count[k] == 0 {
			t.Errorf("no block with title=%s in the guides", k)
		}
	}
}

// TestExcerpts checks that quoted source is still in its file.
func TestExcerpts(t *testing.T) {
	root := testenv.Root(t)
	for _, b := range ofKind(blocks(t), "excerpt") {
		file := b.attrs["file"]
		if file == "" {
			t.Errorf("%s: an excerpt needs file=PATH", b)
			continue
		}
		src, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Errorf("%s: %v", b, err)
			continue
		}
		if !bytes.Contains(src, []byte(b.text)) {
			t.Errorf("%s: the excerpt is not in %s any more: copy it again\n%s", b, file, b.text)
		}
	}
}

// scratch is a tree like the repository's, for manifests and their modules.
type scratch struct {
	t    *testing.T
	root string
}

// writeManifest writes b where it says and its module where the manifest
// points, and pins it when its sha256 is empty. It returns the path.
func (s *scratch) writeManifest(b block, toolModule string) string {
	t := s.t
	t.Helper()
	rel := b.attrs["file"]
	if rel == "" {
		m := regexp.MustCompile(`(?m)^\s+name:\s*(\S+)`).FindStringSubmatch(b.text)
		if m == nil {
			t.Fatalf("%s: no file= and no metadata.name", b)
		}
		rel = "manifests/tools/" + m[1] + ".yaml"
	}
	path := filepath.Join(s.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.text), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := regexp.MustCompile(`module:\s*"?([^"\s,}]+)`).FindStringSubmatch(b.text)
	if mod == nil {
		t.Fatalf("%s: no module: line", b)
	}
	modPath := filepath.Join(filepath.Dir(path), filepath.FromSlash(mod[1]))
	if !strings.HasPrefix(modPath, s.root+string(filepath.Separator)) {
		t.Fatalf("%s: module %s is outside the scratch tree", b, mod[1])
	}
	src := filepath.Join(testenv.Root(t), "tools", "textwc", "textwc.wasm")
	if b.attrs["module"] == "tool" {
		src = toolModule
	}
	copyFile(t, src, modPath)
	if strings.Contains(b.text, `sha256: ""`) && b.attrs["expect"] != "problems" {
		cmd := exec.Command("bash", filepath.Join(testenv.Root(t), "tools", "pin.sh"), path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: tools/pin.sh %s: %v\n%s", b, rel, err, out)
		}
	}
	return path
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// guideManifests loads every manifest block that should load, and checks
// that those marked expect=problems report exactly what the guide says.
func guideManifests(t *testing.T, toolModule string) []*manifest.Manifest {
	t.Helper()
	all := blocks(t)
	var out []*manifest.Manifest
	for i, b := range all {
		if b.attrs["title"] != "manifest" {
			continue
		}
		s := &scratch{t: t, root: t.TempDir()}
		if b.attrs["module"] == "tool" && toolModule == "" {
			toolModule = buildTool(t).wasm
		}
		path := s.writeManifest(b, toolModule)
		if b.attrs["expect"] == "problems" {
			if i+1 >= len(all) || all[i+1].attrs["title"] != "problems" {
				t.Fatalf("%s: expect=problems needs a `text title=problems` block right after it", b)
			}
			var got []string
			for _, p := range manifest.Lint(path) {
				got = append(got, strings.TrimPrefix(p.String(), s.root+string(filepath.Separator)))
			}
			if want := all[i+1].text; strings.Join(got, "\n")+"\n" != want {
				t.Errorf("%s: manifest lint says\n%s\nbut the guide (%s) says\n%s", b, strings.Join(got, "\n"), all[i+1], want)
			}
			continue
		}
		m, err := manifest.LoadFile(path)
		if err != nil {
			t.Errorf("%s: the manifest does not load:\n%v", b, err)
			continue
		}
		out = append(out, m)
	}
	return out
}

// TestManifests loads every manifest example.
func TestManifests(t *testing.T) {
	if n := len(guideManifests(t, "")); n == 0 {
		t.Fatal("no manifest example loaded")
	}
}

// TestCredentialsConfigs parses every credentials configuration example
// strictly, builds its sources with credentials.Build (secrets come from a
// fake environment and files the test writes, never from the machine), and
// checks that every credential a guide manifest declares names a source of
// one of them, so that the operator guide's examples fit together.
func TestCredentialsConfigs(t *testing.T) {
	sources := map[string]bool{}
	n := 0
	for _, b := range ofKind(blocks(t), "credentials") {
		n++
		dir := t.TempDir()
		file := filepath.Join(dir, "credentials.yaml")
		cfg, err := credentials.Parse([]byte(b.text), file)
		if err != nil {
			t.Errorf("%s: %v", b, err)
			continue
		}
		for _, s := range cfg.Sources {
			if sources[s.Name] {
				t.Errorf("%s: source %q is defined by two examples: give each its own name", b, s.Name)
			}
			sources[s.Name] = true
			if s.KeyFile != "" && !filepath.IsAbs(s.KeyFile) {
				writeP256Key(t, filepath.Join(dir, filepath.FromSlash(s.KeyFile)))
			}
			for _, f := range []string{s.File, s.ClientSecretFile} {
				if f != "" && !filepath.IsAbs(f) {
					p := filepath.Join(dir, filepath.FromSlash(f))
					if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, []byte("docstest-secret-value\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		// Only offline sources are built: oauth2 and spiffe-jwt would reach
		// out to an authorization server or a Workload API when issuing,
		// but building them dials nothing; a jwt source without keyFile
		// generates its key.
		env := func(string) (string, bool) { return "docstest-secret-value", true }
		reg, err := credentials.Build(cfg, dir, credentials.LoadOptions{LookupEnv: env, Fetcher: noFetcher{}})
		if err != nil {
			t.Errorf("%s: credentials.Build: %v", b, err)
			continue
		}
		for _, s := range cfg.Sources {
			if _, err := reg.Source(s.Name); err != nil {
				t.Errorf("%s: source %s was not built: %v", b, s.Name, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no credentials example in the guides")
	}
	for _, m := range guideManifests(t, "") {
		for _, c := range m.Spec.Capabilities.Credentials {
			if !sources[c.Source] {
				t.Errorf("manifest %s: credential %s names source %q, which no credentials example of the guides defines", m.Metadata.Name, c.Name, c.Source)
			}
		}
	}
}

// noFetcher stands in for the SPIFFE Workload API: the examples are only
// built, never asked for a JWT-SVID.
type noFetcher struct{}

func (noFetcher) FetchJWTSVID(context.Context, jwtsvid.Params) (*jwtsvid.SVID, error) {
	return nil, errors.New("docstest: no Workload API")
}

// writeP256Key writes a fresh P-256 private key (PKCS#8 PEM, 0600) at path,
// as an operator would for a jwt source's keyFile.
func writeP256Key(t *testing.T, path string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPolicies compiles every policy example against the bundled and the
// guides' tools and runs its PolicyTest cases.
func TestPolicies(t *testing.T) {
	bundled, err := manifest.LoadDir(testenv.BundledManifests(t))
	if err != nil {
		t.Fatalf("load the bundled manifests: %v", err)
	}
	tools := append(bundled, guideManifests(t, "")...)
	byName := map[string]*manifest.Manifest{}
	for _, m := range tools {
		byName[m.Metadata.Name] = m
	}
	sets := map[string][]block{}
	for _, b := range blocks(t) {
		if k := b.attrs["title"]; k == "policy" || k == "policytest" {
			if b.attrs["set"] == "" {
				t.Errorf("%s: a %s block needs set=NAME", b, k)
				continue
			}
			sets[b.attrs["set"]] = append(sets[b.attrs["set"]], b)
		}
	}
	if len(sets) == 0 {
		t.Fatal("no policy examples")
	}
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for i, b := range sets[name] {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-%s.yaml", i, b.attrs["title"])), []byte(b.text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			set, err := policy.LoadDir(dir)
			if err != nil {
				t.Fatalf("set %s (%s): policy.LoadDir:\n%v", name, sets[name][0], err)
			}
			if len(set.Policies) == 0 {
				t.Fatalf("set %s has no Policy", name)
			}
			eng, err := policy.Compile(set.Policies, tools, policy.Options{})
			if err != nil {
				t.Fatalf("set %s (%s): policy.Compile:\n%v", name, sets[name][0], err)
			}
			for _, r := range eng.RunTests(set.Tests, byName) {
				if !r.Pass {
					t.Errorf("set %s: FAIL %s\n%s\ngot %+v", name, r.Name, r.Diff, r.Got)
				}
			}
		})
	}
}

// builtTool is the Go tool of the tool guide, written into a package of
// this module and built.
type builtTool struct {
	dir  string // the package directory
	pkg  string // its import path, relative: ./internal/docstest/testdata/textgrep
	wasm string // the wasip1 module
}

var (
	toolOnce sync.Once
	tool     builtTool
	toolErr  error
)

// buildTool writes the guide's tool and its test into
// internal/docstest/testdata/textgrep (a fixed path, so that the module's
// digest and its compiled form stay cached between runs), builds it for
// wasip1 and removes the sources when the tests end (see TestMain).
func buildTool(t *testing.T) builtTool {
	t.Helper()
	root := testenv.Root(t)
	bs := blocks(t)
	toolOnce.Do(func() {
		src, test := ofKind(bs, "tool"), ofKind(bs, "tooltest")
		if len(src) != 1 || len(test) != 1 {
			toolErr = fmt.Errorf("want one go title=tool and one go title=tooltest block, got %d and %d", len(src), len(test))
			return
		}
		tool.dir = filepath.Join(root, "internal", "docstest", "testdata", "textgrep")
		tool.pkg = "./internal/docstest/testdata/textgrep"
		if toolErr = os.MkdirAll(tool.dir, 0o755); toolErr != nil {
			return
		}
		if toolErr = os.WriteFile(filepath.Join(tool.dir, "main.go"), []byte(src[0].text), 0o644); toolErr != nil {
			return
		}
		if toolErr = os.WriteFile(filepath.Join(tool.dir, "main_test.go"), []byte(test[0].text), 0o644); toolErr != nil {
			return
		}
		out, err := os.MkdirTemp("", "docstest-wasm")
		if err != nil {
			toolErr = err
			return
		}
		tool.wasm = filepath.Join(out, "textgrep.wasm")
		// The flags of tools/build.sh.
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", tool.wasm, tool.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=")
		if msg, err := cmd.CombinedOutput(); err != nil {
			toolErr = fmt.Errorf("%s: GOOS=wasip1 GOARCH=wasm go build: %v\n%s", src[0], err, msg)
		}
	})
	if toolErr != nil {
		t.Fatal(toolErr)
	}
	return tool
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tool.dir != "" {
		os.RemoveAll(tool.dir)
		os.Remove(filepath.Dir(tool.dir)) // testdata, when empty
	}
	if tool.wasm != "" {
		os.RemoveAll(filepath.Dir(tool.wasm))
	}
	os.Exit(code)
}

// TestToolNatively vets the guide's tool and runs its tests, as the guide
// tells readers to.
func TestToolNatively(t *testing.T) {
	tl := buildTool(t)
	root := testenv.Root(t)
	for _, args := range [][]string{{"vet", tl.pkg}, {"test", "-count=1", tl.pkg}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestToolEndToEnd serves the guide's tool with its manifest under the
// bundled development policy and makes the calls the guide shows.
func TestToolEndToEnd(t *testing.T) {
	tl := buildTool(t)
	var mb []block
	for _, b := range ofKind(blocks(t), "manifest") {
		if b.attrs["module"] == "tool" {
			mb = append(mb, b)
		}
	}
	if len(mb) != 1 {
		t.Fatalf("want one manifest block with module=tool, got %d", len(mb))
	}
	s := &scratch{t: t, root: t.TempDir()}
	path := s.writeManifest(mb[0], tl.wasm)
	x := testenv.Start(t, testenv.Options{
		Manifests: filepath.Dir(path),
		Policies:  filepath.Join(testenv.Root(t), "manifests", "policies"),
		Quiet:     true,
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "try text.grep"})
	if err != nil {
		t.Fatal(err)
	}
	// What workspace.write does in the guide, done directly.
	notes := filepath.Join(x.Data, "workspaces", task.GetId(), "notes")
	if err := os.MkdirAll(notes, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notes, "todo.md"), []byte("- [ ] milk\n- [x] eggs\n- [ ] tea\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	call := func(args string) map[string]any {
		t.Helper()
		out, err := x.Client.Submit(ctx, "text.grep", args, client.WithTask(task.GetId()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := client.OutcomeJSON(out)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	get := func(doc map[string]any, path string) string {
		var v any = doc
		for _, k := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		b, _ := json.Marshal(v)
		return string(b)
	}

	// The calls of the guide's "Running it" section, with the outcomes it states.
	doc := call(`{"path": "notes/todo.md", "pattern": "^- \\[ \\]"}`)
	if get(doc, "status") != `"ok"` || get(doc, "output") != `{"matches":[{"line":1,"text":"- [ ] milk"},{"line":3,"text":"- [ ] tea"}],"truncated":false}` {
		t.Errorf("grep call: %v", doc)
	}
	doc = call(`{"path": "notes/todo.md", "pattern": "("}`)
	if get(doc, "status") != `"failed"` || get(doc, "error.code") != `"tool_error"` ||
		!strings.HasPrefix(get(doc, "error.message"), `"bad_pattern: pattern \"(\" does not compile: `) {
		t.Errorf("bad pattern call: %v", doc)
	}
	doc = call(`{"path": "secrets/key", "pattern": "."}`)
	if get(doc, "status") != `"denied"` || get(doc, "decision.rules") != `["tool:text.grep/no-secrets"]` ||
		get(doc, "decision.message") != `"text.grep does not read secrets/"` {
		t.Errorf("secrets call: %v", doc)
	}
	// Not in the guide's transcript, but in its prose: a missing file.
	doc = call(`{"path": "notes/none.md", "pattern": "."}`)
	if get(doc, "status") != `"failed"` || !strings.HasPrefix(get(doc, "error.message"), `"not_found: notes/none.md does not exist`) {
		t.Errorf("missing file call: %v", doc)
	}
}

// TestPlannerPrograms builds and vets every complete Go program of the
// guides.
func TestPlannerPrograms(t *testing.T) {
	root := testenv.Root(t)
	for i, b := range ofKind(blocks(t), "planner") {
		dir := filepath.Join(root, "internal", "docstest", "testdata", fmt.Sprintf("planner%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			os.RemoveAll(dir)
			os.Remove(filepath.Dir(dir))
		})
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(b.text), 0o644); err != nil {
			t.Fatal(err)
		}
		pkg := "./internal/docstest/testdata/" + filepath.Base(dir)
		for _, args := range [][]string{{"build", "-o", os.DevNull, pkg}, {"vet", pkg}} {
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: go %s: %v\n%s", b, strings.Join(args, " "), err, out)
			}
		}
	}
}

// TestCommandLines runs every airlock command line of the guides' sh
// blocks with --help appended: an unknown subcommand or flag fails.
func TestCommandLines(t *testing.T) {
	n := 0
	for _, b := range blocks(t) {
		if b.lang != "sh" {
			continue
		}
		for i, l := range strings.Split(b.text, "\n") {
			cmdline, ok := airlockCommand(l)
			if !ok {
				continue
			}
			n++
			args, err := shellWords(cmdline)
			if err != nil {
				t.Errorf("%s+%d: %v", b, i+1, err)
				continue
			}
			var out bytes.Buffer
			m := &cli.Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
			if code := m.Run(context.Background(), append(args, "--help")); code != 0 {
				t.Errorf("%s+%d: `airlock %s --help` exits %d:\n%s", b, i+1, strings.Join(args, " "), code, out.String())
			}
		}
	}
	if n == 0 {
		t.Fatal("no airlock command lines found")
	}
}

// airlockCommand returns the airlock command of a shell line, without the
// program name, cut at the first comment, pipe, separator or redirection.
func airlockCommand(line string) (string, bool) {
	i := strings.Index(line, "bin/airlock ")
	n := len("bin/airlock ")
	if i < 0 {
		if !strings.HasPrefix(strings.TrimSpace(line), "airlock ") {
			return "", false
		}
		i, n = strings.Index(line, "airlock "), len("airlock ")
	}
	rest := line[i+n:]
	inSub := strings.Contains(line[:i], "$(")
	var sb strings.Builder
	var quote rune
	for _, r := range rest {
		if quote == 0 {
			if r == '#' || r == '|' || r == ';' || r == '>' || r == '&' || (inSub && r == ')') {
				break
			}
			if r == '\'' || r == '"' {
				quote = r
			}
		} else if r == quote {
			quote = 0
		}
		sb.WriteRune(r)
	}
	return strings.TrimSpace(sb.String()), true
}

// shellWords splits a command line as sh would for the simple lines of the
// guides: single and double quotes, backslash escapes in double quotes;
// "$VAR" stays as written.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in := false
	r := strings.NewReader(s)
	for {
		c, _, err := r.ReadRune()
		if err == io.EOF {
			break
		}
		switch {
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			in = true
			for {
				d, _, err := r.ReadRune()
				if err != nil {
					return nil, fmt.Errorf("unterminated ' in %q", s)
				}
				if d == '\'' {
					break
				}
				cur.WriteRune(d)
			}
		case c == '"':
			in = true
			for {
				d, _, err := r.ReadRune()
				if err != nil {
					return nil, fmt.Errorf("unterminated \" in %q", s)
				}
				if d == '"' {
					break
				}
				if d == '\\' {
					if e, _, err := r.ReadRune(); err == nil {
						d = e
					}
				}
				cur.WriteRune(d)
			}
		default:
			in = true
			cur.WriteRune(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// TestServeFlagsTable checks the operator guide's table of `airlock serve`
// flags against the real command: every flag is in the table, every flag
// of the table exists, and where the command prints a default the table's
// default (its first `code` span) is the same value.
func TestServeFlagsTable(t *testing.T) {
	var help bytes.Buffer
	m := &cli.Main{Stdin: strings.NewReader(""), Stdout: &help, Stderr: &help, Getenv: func(string) string { return "" }}
	if code := m.Run(context.Background(), []string{"serve", "--help"}); code != 0 {
		t.Fatalf("airlock serve --help exits %d:\n%s", code, help.String())
	}
	type flag struct{ typ, def string }
	flags := map[string]flag{}
	line := regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: (\w+))?\s{2,}.*?(?: \(default (.+)\))?$`)
	for _, l := range strings.Split(help.String(), "\n") {
		if mm := line.FindStringSubmatch(l); mm != nil && mm[1] != "help" {
			flags[mm[1]] = flag{typ: mm[2], def: strings.Trim(mm[3], `"`)}
		}
	}
	if len(flags) == 0 {
		t.Fatalf("no flags in airlock serve --help:\n%s", help.String())
	}

	data, err := os.ReadFile(filepath.Join(testenv.Root(t), "docs/operator-guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	guide := string(data)
	start := strings.Index(guide, "\n## `airlock serve`\n")
	if start < 0 {
		t.Fatal("docs/operator-guide.md has no ## `airlock serve` section")
	}
	section := guide[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	flagName := regexp.MustCompile("`--([a-z0-9-]+)")
	code := regexp.MustCompile("`([^`]*)`")
	documented := map[string]bool{}
	for _, row := range strings.Split(section, "\n") {
		cells := strings.Split(row, "|")
		if !strings.HasPrefix(row, "| `--") || len(cells) < 4 {
			continue
		}
		names := flagName.FindAllStringSubmatch(cells[1], -1)
		for _, n := range names {
			name := n[1]
			documented[name] = true
			f, ok := flags[name]
			if !ok {
				t.Errorf("the serve table documents --%s, which airlock serve does not have", name)
				continue
			}
			if f.def == "" || len(names) > 1 {
				continue
			}
			cd := code.FindStringSubmatch(cells[2])
			if cd == nil {
				t.Errorf("--%s: the serve table's default %q has no `value`; the command's is %s", name, strings.TrimSpace(cells[2]), f.def)
				continue
			}
			plain := strings.TrimSpace(strings.ReplaceAll(cells[2], "`", ""))
			same := cd[1] == f.def || strings.HasPrefix(plain, f.def)
			if f.typ == "duration" {
				a, err1 := time.ParseDuration(cd[1])
				b, err2 := time.ParseDuration(f.def)
				same = err1 == nil && err2 == nil && a == b
			}
			if !same {
				t.Errorf("--%s: the serve table says the default is %s, the command says %s", name, cd[1], f.def)
			}
		}
	}
	for name := range flags {
		if !documented[name] {
			t.Errorf("airlock serve --%s is missing from the serve table of docs/operator-guide.md", name)
		}
	}
}
