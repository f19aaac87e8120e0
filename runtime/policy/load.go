package policy

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/airlock-dev/airlock/runtime/policy/internal/glob"
)

// APIVersion and the kinds of documents in a policy directory.
const (
	APIVersion     = "airlock.dev/v1"
	KindPolicy     = "Policy"
	KindPolicyTest = "PolicyTest"
)

// Approval states (Approval.State, and approval.state in CEL).
const (
	ApprovalNone     = "none"
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalDenied   = "denied"
	ApprovalExpired  = "expired"
)

// Load bounds.
const (
	// MaxFileSize is the largest policy or test file LoadDir reads.
	MaxFileSize = 1 << 20
	// MaxExprLen is the longest `when` or `message` expression accepted.
	MaxExprLen = 16 << 10
)

// namePattern is what policy, rule and test names look like: they are
// joined with "/" into qualified rule names, so no slashes or spaces.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

var validRisks = map[string]bool{"low": true, "medium": true, "high": true, "critical": true}

// Set is everything LoadDir found in a policy directory.
type Set struct {
	Policies []*File
	Tests    []*TestFile
	// Warnings are things that are legal but probably not what the operator
	// meant, e.g. a directory without any Policy document.
	Warnings []string
}

// File is one Policy document. A YAML file may hold several documents
// separated by "---"; each becomes its own File with the same Path.
type File struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`

	// Path is the file the document was read from and Line the line where
	// it starts, for error messages.
	Path string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Metadata names a policy or a test file.
type Metadata struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description,omitempty"`
}

// Spec is what a policy selects and its ordered rules.
type Spec struct {
	Match Match  `yaml:"match"`
	Rules []Rule `yaml:"rules"`
}

// Match selects the tools a policy applies to. All given conditions must
// hold: the tool's name matches one of Tools (globs: '*' matches any run of
// characters, dots included; '?' one character), its risk is one of Risk
// (when given), and it carries every label in Labels (when given).
type Match struct {
	Tools  []string          `yaml:"tools"`
	Risk   []string          `yaml:"risk,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty"`
}

// Rule is one operator rule.
type Rule struct {
	Name   string `yaml:"name"`
	Effect string `yaml:"effect"` // allow | deny | require_approval
	// When is a CEL expression that must evaluate to a bool.
	When string `yaml:"when"`
	// Message is an optional CEL expression that evaluates to a string.
	Message string `yaml:"message,omitempty"`

	// Line is the line of the rule's `when` key (or of the rule when it has
	// none) and MessageLine that of its `message` key.
	Line        int `yaml:"-"`
	MessageLine int `yaml:"-"`
}

// TestFile is one PolicyTest document.
type TestFile struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       TestSpec `yaml:"spec"`

	Path string `yaml:"-"`
	Line int    `yaml:"-"`
}

// TestSpec holds the cases of a test file.
type TestSpec struct {
	Cases []TestCase `yaml:"cases"`
}

// TestCase is one input and the decision it must produce.
type TestCase struct {
	Name string `yaml:"name"`
	// Caller is a SPIFFE ID; trust_domain and path are derived from it.
	Caller string `yaml:"caller"`
	// Tool is the exact tool name; its manifest provides the rest of `tool`.
	Tool string `yaml:"tool"`
	// Args are the tool arguments (any YAML value; numbers become int when
	// integral, else double, as for JSON arguments).
	Args          any           `yaml:"args"`
	Task          *TestTask     `yaml:"task,omitempty"`
	Justification string        `yaml:"justification,omitempty"`
	Approval      *TestApproval `yaml:"approval,omitempty"`
	// Time is the request time (RFC 3339); the time of the run when empty.
	Time   string `yaml:"time,omitempty"`
	Expect Expect `yaml:"expect"`

	Line int `yaml:"-"`
}

// TestTask is the task of a test case.
type TestTask struct {
	ID          string            `yaml:"id"`
	Purpose     string            `yaml:"purpose,omitempty"`
	Sensitivity string            `yaml:"sensitivity,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	StartedAt   string            `yaml:"started_at,omitempty"` // RFC 3339
	ExpiresAt   string            `yaml:"expires_at,omitempty"` // RFC 3339
	CallCount   int64             `yaml:"call_count,omitempty"`
}

// TestApproval is the approval of a test case.
type TestApproval struct {
	State    string `yaml:"state"`
	Approver string `yaml:"approver,omitempty"`
}

// Expect is the expected decision. Rules and Message are checked only when
// given, and then must match exactly (Rules in order).
type Expect struct {
	Effect  string    `yaml:"effect"`
	Rules   *[]string `yaml:"rules,omitempty"`
	Message *string   `yaml:"message,omitempty"`
}

// LoadDir reads every *.yaml and *.yml file directly inside dir (sorted by
// name; subdirectories are not read). Policy documents go to Set.Policies,
// PolicyTest documents to Set.Tests. It checks the structure of every
// document strictly (unknown keys, wrong types, missing fields, bad names,
// effects, risks and globs) and returns every problem found as Problems.
// CEL expressions are checked later, by Compile.
func LoadDir(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read policy directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		if ext := filepath.Ext(n); ext == ".yaml" || ext == ".yml" {
			names = append(names, n)
		}
	}
	sort.Strings(names)

	set := &Set{}
	var ps Problems
	for _, n := range names {
		loadFile(filepath.Join(dir, n), set, &ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	if len(set.Policies) == 0 {
		set.Warnings = append(set.Warnings, fmt.Sprintf(
			"%s: no Policy documents: every call will be denied by default; add a file with kind: Policy", dir))
	}
	return set, nil
}

func loadFile(path string, set *Set, ps *Problems) {
	fi, err := os.Stat(path)
	if err != nil {
		ps.add(path, 0, "cannot read: %v", err)
		return
	}
	if !fi.Mode().IsRegular() {
		ps.add(path, 0, "not a regular file")
		return
	}
	if fi.Size() > MaxFileSize {
		ps.add(path, 0, "file is %d bytes, larger than the %d-byte limit: split it", fi.Size(), MaxFileSize)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		ps.add(path, 0, "cannot read: %v", err)
		return
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		ps.add(path, yamlErrLine(err), "invalid YAML: %s", yamlErrMsg(err))
		return
	}
	found := false
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		found = true
		loadDoc(path, doc.Body, set, ps)
	}
	if !found {
		ps.add(path, 0, "file holds no YAML document: delete it or add a Policy or PolicyTest")
	}
}

func loadDoc(path string, body ast.Node, set *Set, ps *Problems) {
	line := nodeLine(body)
	if n := firstAliasOrAnchor(body); n != nil {
		ps.add(path, nodeLine(n), "YAML anchors and aliases are not supported in policy files: write the value out")
		return
	}
	var hdr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	if err := yaml.NodeToValue(body, &hdr); err != nil {
		ps.add(path, yamlErrLine(err, line), "%s", yamlErrMsg(err))
		return
	}
	if hdr.APIVersion != APIVersion {
		ps.add(path, keyLine(body, line, "apiVersion"), "apiVersion: must be %q, got %q", APIVersion, hdr.APIVersion)
		return
	}
	switch hdr.Kind {
	case KindPolicy:
		var pf File
		if err := yaml.NodeToValue(body, &pf, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
			ps.add(path, yamlErrLine(err, line), "%s", yamlErrMsg(err))
			return
		}
		pf.Path, pf.Line = path, line
		positionRules(&pf, body)
		if validatePolicy(&pf, body, ps) {
			set.Policies = append(set.Policies, &pf)
		}
	case KindPolicyTest:
		var tf TestFile
		if err := yaml.NodeToValue(body, &tf, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
			ps.add(path, yamlErrLine(err, line), "%s", yamlErrMsg(err))
			return
		}
		tf.Path, tf.Line = path, line
		if validateTests(&tf, body, ps) {
			set.Tests = append(set.Tests, &tf)
		}
	default:
		ps.add(path, keyLine(body, line, "kind"), "kind: must be %q or %q, got %q", KindPolicy, KindPolicyTest, hdr.Kind)
	}
}

// positionRules records the line of each rule's `when` and `message` keys.
func positionRules(pf *File, body ast.Node) {
	items := seqItems(lookup(lookup(body, "spec"), "rules"))
	for i := range pf.Spec.Rules {
		r := &pf.Spec.Rules[i]
		r.Line = pf.Line
		if i >= len(items) {
			continue
		}
		r.Line = keyLine(items[i], nodeLine(items[i]), "when")
		r.MessageLine = keyLine(items[i], r.Line, "message")
	}
}

func validatePolicy(pf *File, body ast.Node, ps *Problems) bool {
	n := len(*ps)
	p := pf.Path
	meta := lookup(body, "metadata")
	if !namePattern.MatchString(pf.Metadata.Name) {
		ps.add(p, keyLine(meta, pf.Line, "name"), "metadata.name: %s", nameRule(pf.Metadata.Name))
	}
	spec := lookup(body, "spec")
	match := lookup(spec, "match")
	specLine := keyLine(body, pf.Line, "spec")
	if len(pf.Spec.Match.Tools) == 0 {
		ps.add(p, keyLine(spec, specLine, "match"), `spec.match.tools: required; use ["*"] to select every tool`)
	}
	toolItems := seqItems(lookup(match, "tools"))
	for i, g := range pf.Spec.Match.Tools {
		l := itemLine(toolItems, i, keyLine(match, specLine, "tools"))
		if g == "" {
			ps.add(p, l, "spec.match.tools[%d]: empty pattern", i)
		} else if err := glob.Validate(g); err != nil {
			ps.add(p, l, "spec.match.tools[%d]: %v", i, err)
		}
	}
	riskItems := seqItems(lookup(match, "risk"))
	for i, r := range pf.Spec.Match.Risk {
		if !validRisks[r] {
			ps.add(p, itemLine(riskItems, i, keyLine(match, specLine, "risk")),
				"spec.match.risk[%d]: %q is not a risk level: use low, medium, high or critical", i, r)
		}
	}
	if len(pf.Spec.Rules) == 0 {
		ps.add(p, specLine, "spec.rules: a policy needs at least one rule")
	}
	ruleItems := seqItems(lookup(spec, "rules"))
	seen := map[string]int{}
	for i, r := range pf.Spec.Rules {
		rl := itemLine(ruleItems, i, specLine)
		var item ast.Node
		if i < len(ruleItems) {
			item = ruleItems[i]
		}
		validateRule(p, fmt.Sprintf("spec.rules[%d]", i), r, keyLine(item, rl, "name"), keyLine(item, rl, "effect"), ps)
		if prev, dup := seen[r.Name]; dup && r.Name != "" {
			ps.add(p, keyLine(item, rl, "name"), "spec.rules[%d].name: %q is already used by the rule at line %d", i, r.Name, prev)
		} else {
			seen[r.Name] = keyLine(item, rl, "name")
		}
	}
	return len(*ps) == n
}

// validateRule checks the parts of a rule that need no CEL.
func validateRule(file, where string, r Rule, nameLine, effectLine int, ps *Problems) {
	if !namePattern.MatchString(r.Name) {
		ps.add(file, nameLine, "%s.name: %s", where, nameRule(r.Name))
	}
	switch Effect(r.Effect) {
	case Allow, Deny, RequireApproval:
	default:
		ps.add(file, effectLine, "%s.effect: must be allow, deny or require_approval, got %q", where, r.Effect)
	}
	if strings.TrimSpace(r.When) == "" {
		ps.add(file, r.Line, "%s.when: required: a CEL expression that returns bool", where)
	}
	if len(r.When) > MaxExprLen {
		ps.add(file, r.Line, "%s.when: expression is %d bytes, longer than the %d-byte limit", where, len(r.When), MaxExprLen)
	}
	if len(r.Message) > MaxExprLen {
		ps.add(file, r.MessageLine, "%s.message: expression is %d bytes, longer than the %d-byte limit", where, len(r.Message), MaxExprLen)
	}
}

func nameRule(name string) string {
	if name == "" {
		return "required"
	}
	return fmt.Sprintf("%q is not a valid name: use letters, digits, '.', '_' and '-' (at most 128, no '/')", name)
}

func validateTests(tf *TestFile, body ast.Node, ps *Problems) bool {
	n := len(*ps)
	p := tf.Path
	if !namePattern.MatchString(tf.Metadata.Name) {
		ps.add(p, keyLine(lookup(body, "metadata"), tf.Line, "name"), "metadata.name: %s", nameRule(tf.Metadata.Name))
	}
	spec := lookup(body, "spec")
	specLine := keyLine(body, tf.Line, "spec")
	if len(tf.Spec.Cases) == 0 {
		ps.add(p, specLine, "spec.cases: a test file needs at least one case")
	}
	items := seqItems(lookup(spec, "cases"))
	seen := map[string]bool{}
	for i := range tf.Spec.Cases {
		c := &tf.Spec.Cases[i]
		var item ast.Node
		if i < len(items) {
			item = items[i]
		}
		c.Line = keyLine(item, itemLine(items, i, specLine), "name")
		at := func(key string) int { return keyLine(item, c.Line, key) }
		where := fmt.Sprintf("spec.cases[%d]", i)
		switch {
		case strings.TrimSpace(c.Name) == "":
			ps.add(p, c.Line, "%s.name: required", where)
		case seen[c.Name]:
			ps.add(p, c.Line, "%s.name: %q is used by another case in this file", where, c.Name)
		}
		seen[c.Name] = true
		if _, err := CallerFromSPIFFE(c.Caller); err != nil {
			ps.add(p, at("caller"), "%s.caller: %v", where, err)
		}
		if c.Tool == "" {
			ps.add(p, at("tool"), "%s.tool: required", where)
		}
		args, err := normalizeYAML(c.Args, 0)
		if err != nil {
			ps.add(p, at("args"), "%s.args: %v", where, err)
		}
		c.Args = args
		if c.Task != nil {
			taskNode := lookup(item, "task")
			for _, f := range []struct{ key, v string }{{"started_at", c.Task.StartedAt}, {"expires_at", c.Task.ExpiresAt}} {
				if f.v == "" {
					continue
				}
				if _, err := time.Parse(time.RFC3339, f.v); err != nil {
					ps.add(p, keyLine(taskNode, at("task"), f.key), "%s.task.%s: not an RFC 3339 time: %v", where, f.key, err)
				}
			}
		}
		if c.Time != "" {
			if _, err := time.Parse(time.RFC3339, c.Time); err != nil {
				ps.add(p, at("time"), "%s.time: not an RFC 3339 time: %v", where, err)
			}
		}
		if c.Approval != nil {
			switch c.Approval.State {
			case ApprovalNone, ApprovalPending, ApprovalApproved, ApprovalDenied, ApprovalExpired:
			default:
				ps.add(p, keyLine(lookup(item, "approval"), at("approval"), "state"),
					"%s.approval.state: must be none, pending, approved, denied or expired, got %q", where, c.Approval.State)
			}
		}
		switch Effect(c.Expect.Effect) {
		case Allow, Deny, RequireApproval:
		default:
			ps.add(p, keyLine(lookup(item, "expect"), at("expect"), "effect"),
				"%s.expect.effect: must be allow, deny or require_approval, got %q", where, c.Expect.Effect)
		}
	}
	return len(*ps) == n
}

// normalizeYAML turns a decoded YAML value into the JSON-like values that
// Decide sees for JSON arguments: map[string]any, []any, string, bool, nil,
// int64 and float64 (integral numbers become int64).
func normalizeYAML(v any, depth int) (any, error) {
	if depth > maxArgsDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxArgsDepth)
	}
	switch x := v.(type) {
	case nil, string, bool, int64:
		return x, nil
	case int:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return float64(x), nil
		}
		return int64(x), nil
	case float64:
		return numberValue(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeYAML(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalizeYAML(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf(".%s: %w", k, err)
			}
			out[k] = n
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("map key %v is a %T: JSON object keys must be strings (quote it)", k, k)
			}
			n, err := normalizeYAML(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf(".%s: %w", ks, err)
			}
			out[ks] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("value of YAML type %T has no JSON equivalent", v)
}

// --- YAML AST helpers -------------------------------------------------------

func nodeLine(n ast.Node) int {
	if n == nil || n.GetToken() == nil {
		return 0
	}
	return n.GetToken().Position.Line
}

// mapValues returns the key/value pairs of a mapping node.
func mapValues(n ast.Node) []*ast.MappingValueNode {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}
	}
	return nil
}

func lookupPair(n ast.Node, key string) *ast.MappingValueNode {
	for _, mv := range mapValues(n) {
		if mv.Key != nil && mv.Key.GetToken() != nil && mv.Key.GetToken().Value == key {
			return mv
		}
	}
	return nil
}

// lookup returns the value of key in mapping n, or nil.
func lookup(n ast.Node, key string) ast.Node {
	if mv := lookupPair(n, key); mv != nil {
		return mv.Value
	}
	return nil
}

// keyLine returns the line of key in mapping n, or def.
func keyLine(n ast.Node, def int, key string) int {
	if mv := lookupPair(n, key); mv != nil && mv.Key.GetToken() != nil {
		return mv.Key.GetToken().Position.Line
	}
	return def
}

func seqItems(n ast.Node) []ast.Node {
	if s, ok := n.(*ast.SequenceNode); ok {
		return s.Values
	}
	return nil
}

func itemLine(items []ast.Node, i, def int) int {
	if i < len(items) {
		if l := nodeLine(items[i]); l > 0 {
			return l
		}
	}
	return def
}

type aliasFinder struct{ found ast.Node }

func (f *aliasFinder) Visit(n ast.Node) ast.Visitor {
	if f.found != nil {
		return nil
	}
	switch n.(type) {
	case *ast.AliasNode, *ast.AnchorNode:
		f.found = n
		return nil
	}
	return f
}

func firstAliasOrAnchor(n ast.Node) ast.Node {
	f := &aliasFinder{}
	ast.Walk(f, n)
	return f.found
}

// yamlErrLine returns the line a go-yaml error points at, or def.
func yamlErrLine(err error, def ...int) int {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		return ye.GetToken().Position.Line
	}
	if len(def) > 0 {
		return def[0]
	}
	return 0
}

func yamlErrMsg(err error) string {
	var uf *yaml.UnknownFieldError
	if errors.As(err, &uf) {
		return uf.GetMessage() + ": remove it or fix its spelling"
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		return ye.GetMessage()
	}
	return err.Error()
}
