package policy

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy/internal/celfn"
	"github.com/airlock-dev/airlock/runtime/policy/internal/glob"
)

// Defaults of Options.
const (
	DefaultCostLimit = 1_000_000
	DefaultTimeout   = 100 * time.Millisecond
)

// interruptCheckFrequency is how many comprehension iterations run between
// checks of the decision's deadline.
const interruptCheckFrequency = 64

// deepArgsFactor: Decide converts light arguments to CEL values all the
// way down before evaluating when the batch reads args at least
// deepArgsFactor times per value args holds; below that, converting every
// value costs more than converting the ones the rules read, each time they
// read them (a string costs one allocation per read).
const deepArgsFactor = 2

// maxListRange bounds lists.range(n).
const maxListRange = 100_000

// Options configure Compile. The zero value is valid; every field has a
// documented default. Options are copied by Compile.
type Options struct {
	// CostLimit bounds the CEL cost of one evaluation of one expression;
	// an expression that goes over it stops and its rule denies.
	// Default DefaultCostLimit (about 50-100 ms of CPU on a busy machine).
	// Rules built only from linear functions, with no comprehension, are
	// evaluated without cel-go's runtime cost tracker when the part of the
	// decision's input they can read weighs at most 32 KiB: their cost is
	// then bounded by construction (see linear.go). Everything else is
	// tracked.
	CostLimit uint64
	// Timeout bounds one whole decision; an expression still running at the
	// deadline stops (checked inside comprehensions) and its rule denies.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Env are the operator's deployment facts, visible to expressions as
	// `env` (a map from string to JSON-like values: nil, bool, string,
	// numbers, []any, map[string]any).
	Env map[string]any
	// Logger receives rule evaluation failures (rule and tool names and the
	// error; never arguments). The zero value logs nothing.
	Logger zerolog.Logger
}

// Engine decides intents. It is immutable after Compile and safe for
// concurrent use.
type Engine struct {
	costLimit uint64
	timeout   time.Duration
	env       map[string]any
	envVal    ref.Val // env converted to CEL once
	adapter   types.Adapter
	objTypes  objectTypeSet
	acts      sync.Pool // *activation
	log       zerolog.Logger
	tools     map[string]*toolRules
	envLight  bool // env weighs little enough for the fast path

	noBatch bool // tests: evaluate rule by rule only
}

// rule is one compiled rule, operator or tool.
type rule struct {
	qname   string // "policy/rule" or "tool:name/rule"
	effect  Effect
	when    cel.Program
	message cel.Program // nil when the rule has none
	id      int
	linear  bool     // see linear.go
	ast     *cel.Ast // the checked `when`, for per-tool folding (fold.go)
	// toolName says the `when` selects tool.name (folded per tool).
	toolName bool
}

// toolRules are the rules that apply to one tool, by effect, in order:
// operator policies in the order given to Compile, then the tool's own.
type toolRules struct {
	deny, approval, allow []*rule
	// batch evaluates every `when` above that is not constant for this
	// tool (fold.go) in one go, as a list in the order deny, approval,
	// allow. Decide uses its result when it evaluates without error, and
	// falls back to rule-by-rule evaluation otherwise, so the outcome is
	// always the same as rule by rule. Nil when every rule is constant or
	// it could not be built (see batchOK).
	batch cel.Program
	// fast is batch without the runtime cost tracker, built when every
	// rule is linear (see linear.go); nil otherwise.
	fast cel.Program
	// batchOK says the rules can be decided from consts and batch.
	batchOK bool
	// consts[i] is the value of the i-th `when` (in the order deny,
	// approval, allow) when it folded to a literal for this tool, else
	// nil; index[i] is then its position in the batch result list.
	consts []ref.Val
	index  []int
	// argRefs is the number of times the batch refers to args.
	argRefs int
	evals   int   // the number of rules in batch
	reach   reach // the maps of task and tool that batch can read
}

// NewEnv returns the CEL environment policy expressions are checked in.
// It is exported for tools (linters, editors) that want to check an
// expression the way Compile does.
func NewEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[Caller](), reflect.TypeFor[Task](), reflect.TypeFor[Tool](),
			reflect.TypeFor[Request](), reflect.TypeFor[Approval](),
			ext.ParseStructTags(true),
		),
		cel.Variable("caller", cel.ObjectType("policy.Caller")),
		cel.Variable("task", cel.ObjectType("policy.Task")),
		cel.Variable("tool", cel.ObjectType("policy.Tool")),
		cel.Variable("args", cel.DynType),
		cel.Variable("request", cel.ObjectType("policy.Request")),
		cel.Variable("approval", cel.ObjectType("policy.Approval")),
		cel.Variable("env", cel.MapType(cel.StringType, cel.DynType)),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		ext.Strings(),
		ext.Sets(),
		ext.Lists(ext.ListsMaxRangeSize(maxListRange)),
		ext.Math(),
		ext.Encoders(),
		ext.Network(),
		celfn.Library(),
		objectFields(), // last: it wraps the final type provider
	)
	if err != nil {
		return nil, fmt.Errorf("policy: build CEL environment: %w", err)
	}
	return env, nil
}

// compiler holds the state of one Compile call.
type compiler struct {
	env   *cel.Env
	popts []cel.ProgramOption
	ps    Problems
	n     int
	fold  *folder
}

// Compile checks and compiles every rule of the policies and of the tools'
// manifests, and precomputes which rules apply to each tool.
//
// Expressions see these variables: caller {spiffe_id, trust_domain, path},
// task {id, purpose, sensitivity, labels, started_at, expires_at,
// call_count}, tool {name, version, digest, risk, labels, capabilities},
// args (dyn), request {id, time, justification}, approval {state,
// approver} and env (map of dyn). The first five are typed objects, so a
// misspelt field is an error here. Functions: the CEL standard library,
// cel-go's Strings, Sets, Lists, Math, Encoders and Network extensions,
// optional values, and url(), isURL(), <ip>.isPrivate() and glob() (see
// internal/celfn). Every problem
// (syntax errors, unknown variables or fields, a `when` that is not bool, a
// `message` that is not string, bad names, duplicate policy or rule names)
// is returned as Problems with the file and line of the rule.
func Compile(policies []*File, tools []*manifest.Manifest, opts Options) (*Engine, error) {
	e := &Engine{
		costLimit: opts.CostLimit,
		timeout:   opts.Timeout,
		log:       opts.Logger,
		tools:     make(map[string]*toolRules, len(tools)),
	}
	if e.costLimit == 0 {
		e.costLimit = DefaultCostLimit
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	envVals, err := normalizeCopy(opts.Env, 0)
	if err != nil {
		return nil, fmt.Errorf("policy: Options.Env: %w: use JSON-like values", err)
	}
	e.env, _ = envVals.(map[string]any)
	if e.env == nil {
		e.env = map[string]any{}
	}
	w := weigher{left: fastPathWeight}
	e.envLight = w.value(e.env)

	env, err := NewEnv()
	if err != nil {
		return nil, err
	}
	fold, err := newFolder(env)
	if err != nil {
		return nil, err
	}
	e.adapter = env.CELTypeAdapter()
	e.objTypes = newObjectTypeSet(e.adapter)
	e.envVal = celValue(e.adapter, e.env)
	c := &compiler{
		env:  env,
		fold: fold,
		popts: []cel.ProgramOption{
			cel.CostLimit(e.costLimit),
			cel.InterruptCheckFrequency(interruptCheckFrequency),
			cel.EvalOptions(cel.OptOptimize),
		},
	}

	// Operator policies.
	type compiledPolicy struct {
		f     *File
		rules []*rule
	}
	var cps []compiledPolicy
	byName := map[string]*File{}
	for _, pf := range policies {
		if pf == nil {
			continue
		}
		if prev, dup := byName[pf.Metadata.Name]; dup {
			c.ps.add(pf.Path, pf.Line, "metadata.name: policy %q is also defined at %s:%d: policy names must be unique",
				pf.Metadata.Name, prev.Path, prev.Line)
			continue
		}
		byName[pf.Metadata.Name] = pf
		cps = append(cps, compiledPolicy{f: pf, rules: c.compilePolicy(pf)})
	}

	// Tools and their own rules.
	seenTool := map[string]*manifest.Manifest{}
	toolOwn := map[string][]*rule{}
	for _, m := range tools {
		if m == nil {
			continue
		}
		name := m.Metadata.Name
		if name == "" {
			c.ps.add(m.File, 0, "metadata.name: required")
			continue
		}
		if prev, dup := seenTool[name]; dup {
			c.ps.add(m.File, 0, "metadata.name: tool %q is also defined by %s: tool names must be unique", name, prev.File)
			continue
		}
		seenTool[name] = m
		toolOwn[name] = c.compileToolRules(m)
	}
	if err := c.ps.err(); err != nil {
		return nil, err
	}

	// Rules per tool, and one batch program per distinct rule list.
	batches := map[string]batchPrograms{}
	for name, m := range seenTool {
		tr := &toolRules{}
		var all []*rule
		for _, cp := range cps {
			if selects(cp.f, m) {
				all = append(all, cp.rules...)
			}
		}
		all = append(all, toolOwn[name]...)
		for _, r := range all {
			switch r.effect {
			case Deny:
				tr.deny = append(tr.deny, r)
			case RequireApproval:
				tr.approval = append(tr.approval, r)
			case Allow:
				tr.allow = append(tr.allow, r)
			}
		}
		c.batch(tr, name, batches, e.log)
		e.tools[name] = tr
	}
	return e, nil
}

func (c *compiler) compilePolicy(pf *File) []*rule {
	if !namePattern.MatchString(pf.Metadata.Name) {
		c.ps.add(pf.Path, pf.Line, "metadata.name: %s", nameRule(pf.Metadata.Name))
	}
	if len(pf.Spec.Match.Tools) == 0 {
		c.ps.add(pf.Path, pf.Line, `spec.match.tools: required; use ["*"] to select every tool`)
	}
	for i, g := range pf.Spec.Match.Tools {
		if err := glob.Validate(g); err != nil || g == "" {
			c.ps.add(pf.Path, pf.Line, "spec.match.tools[%d]: invalid pattern %q", i, g)
		}
	}
	for i, r := range pf.Spec.Match.Risk {
		if !validRisks[r] {
			c.ps.add(pf.Path, pf.Line, "spec.match.risk[%d]: %q is not a risk level: use low, medium, high or critical", i, r)
		}
	}
	seen := map[string]bool{}
	var out []*rule
	for i, r := range pf.Spec.Rules {
		where := fmt.Sprintf("spec.rules[%d]", i)
		if seen[r.Name] {
			c.ps.add(pf.Path, r.Line, "%s.name: rule %q is defined twice in policy %s", where, r.Name, pf.Metadata.Name)
			continue
		}
		seen[r.Name] = true
		if cr := c.compileRule(pf.Path, where, pf.Metadata.Name+"/"+r.Name, r); cr != nil {
			out = append(out, cr)
		}
	}
	return out
}

func (c *compiler) compileToolRules(m *manifest.Manifest) []*rule {
	seen := map[string]bool{}
	var out []*rule
	for i, mr := range m.Spec.Rules {
		where := fmt.Sprintf("spec.rules[%d]", i)
		r := Rule{Name: mr.Name, Effect: mr.Effect, When: mr.When, Message: mr.Message, Line: mr.Line, MessageLine: mr.Line}
		if seen[r.Name] {
			c.ps.add(m.File, r.Line, "%s.name: rule %q is defined twice in tool %s", where, r.Name, m.Metadata.Name)
			continue
		}
		seen[r.Name] = true
		if cr := c.compileRule(m.File, where, "tool:"+m.Metadata.Name+"/"+r.Name, r); cr != nil {
			out = append(out, cr)
		}
	}
	return out
}

// compileRule checks and compiles one rule; nil when it has problems.
func (c *compiler) compileRule(file, where, qname string, r Rule) *rule {
	before := len(c.ps)
	validateRule(file, where, r, r.Line, r.Line, &c.ps)
	if len(c.ps) > before {
		return nil
	}
	cr := &rule{qname: qname, effect: Effect(r.Effect), id: c.n}
	c.n++
	cr.when, cr.ast = c.compileExpr(file, r.Line, where+".when", qname, r.When, types.BoolType)
	if cr.ast != nil {
		cr.linear = isLinear(cr.ast)
		cr.toolName = mentionsToolName(cr.ast)
	}
	if r.Message != "" {
		line := r.MessageLine
		if line == 0 {
			line = r.Line
		}
		cr.message, _ = c.compileExpr(file, line, where+".message", qname, r.Message, types.StringType)
	}
	if len(c.ps) > before {
		return nil
	}
	return cr
}

// compileExpr parses, type-checks and plans one expression whose type must
// be want or dyn, and returns its program and checked AST.
func (c *compiler) compileExpr(file string, line int, where, qname, src string, want *types.Type) (cel.Program, *cel.Ast) {
	a, iss := c.env.Compile(src)
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			pos := fmt.Sprintf("column %d", e.Location.Column()+1)
			if l := e.Location.Line(); l > 1 {
				pos = fmt.Sprintf("expression line %d, column %d", l, e.Location.Column()+1)
			}
			c.ps.add(file, line, "rule %s: %s: %s (%s)", qname, where, e.Message, pos)
		}
		return nil, nil
	}
	if t := a.OutputType(); t.Kind() != types.DynKind && !t.IsExactType(want) {
		c.ps.add(file, line, "rule %s: %s: the expression returns %s, it must return %s",
			qname, where, t.String(), want.String())
		return nil, nil
	}
	prg, err := c.env.Program(a, c.popts...)
	if err != nil {
		c.ps.add(file, line, "rule %s: %s: %v", qname, where, err)
		return nil, nil
	}
	return prg, a
}

// batchPrograms are the batch programs of one folded rule list.
type batchPrograms struct {
	tracked, fast cel.Program
	ok            bool
	reach         reach
}

// batch folds the rules of tr for the tool named tool (fold.go) and builds
// (or reuses) the list programs of every `when` that is not constant: one
// with the cost limit, and one without when every rule is linear. When the
// programs cannot be built, tr.batchOK stays false and Decide evaluates
// rule by rule.
func (c *compiler) batch(tr *toolRules, tool string, cache map[string]batchPrograms, log zerolog.Logger) {
	rules := tr.ordered()
	if len(rules) == 0 {
		return
	}
	tr.consts = make([]ref.Val, len(rules))
	tr.index = make([]int, len(rules))
	var key strings.Builder
	var elems []*cel.Ast
	linear := true
	for i, r := range rules {
		f := c.fold.fold(r, tool)
		if f.lit != nil {
			tr.consts[i] = f.lit
			tr.index[i] = -1
			continue
		}
		tr.index[i] = len(elems)
		elems = append(elems, f.ast)
		key.WriteString(f.key)
		key.WriteByte(',')
		linear = linear && r.linear
	}
	tr.evals = len(elems)
	for _, a := range elems {
		tr.argRefs += countIdent(a, "args")
	}
	if len(elems) == 0 {
		tr.batchOK = true
		return
	}
	if bp, ok := cache[key.String()]; ok {
		tr.batch, tr.fast, tr.batchOK, tr.reach = bp.tracked, bp.fast, bp.ok, bp.reach
		return
	}
	bp := batchPrograms{reach: reachAll}
	a, err := c.fold.list(elems)
	if err != nil {
		log.Warn().Err(err).Msg("policy: cannot compile batch program; evaluating rule by rule")
	} else {
		if bp.tracked, err = c.env.Program(a, c.popts...); err != nil {
			log.Warn().Err(err).Msg("policy: cannot plan batch program; evaluating rule by rule")
		}
		if linear && bp.tracked != nil && isLinear(a) {
			if bp.fast, err = c.env.Program(a, cel.EvalOptions(cel.OptOptimize)); err != nil {
				log.Warn().Err(err).Msg("policy: cannot plan fast batch program; using the cost-tracked one")
			}
		}
		bp.ok = bp.tracked != nil
		bp.reach = reachedMaps(a)
	}
	cache[key.String()] = bp
	tr.batch, tr.fast, tr.batchOK, tr.reach = bp.tracked, bp.fast, bp.ok, bp.reach
}

func (tr *toolRules) ordered() []*rule {
	out := make([]*rule, 0, len(tr.deny)+len(tr.approval)+len(tr.allow))
	out = append(out, tr.deny...)
	out = append(out, tr.approval...)
	return append(out, tr.allow...)
}

// selects reports whether policy pf applies to the tool of m.
func selects(pf *File, m *manifest.Manifest) bool {
	if len(pf.Spec.Match.Risk) > 0 && !slices.Contains(pf.Spec.Match.Risk, string(m.Spec.Risk)) {
		return false
	}
	for k, v := range pf.Spec.Match.Labels {
		if got, ok := m.Metadata.Labels[k]; !ok || got != v {
			return false
		}
	}
	for _, g := range pf.Spec.Match.Tools {
		if ok, err := glob.Match(g, m.Metadata.Name); err == nil && ok {
			return true
		}
	}
	return false
}

// activation resolves the decision variables without a map.
type activation struct {
	caller, task, tool, request, approval object
	args                                  any
	env                                   any
}

var _ cel.Activation = (*activation)(nil)

// objectTypeSet are the CEL types of the typed variables.
type objectTypeSet struct{ caller, task, tool, request, approval ref.Type }

func newObjectTypeSet(a types.Adapter) objectTypeSet {
	return objectTypeSet{
		caller: objectType[Caller](a), task: objectType[Task](a), tool: objectType[Tool](a),
		request: objectType[Request](a), approval: objectType[Approval](a),
	}
}

// newActivation returns the variables of a decision on in; approval
// replaces in.Approval.
func newActivation(a types.Adapter, ts *objectTypeSet, in *Input, approval *Approval, args, env any) *activation {
	act := &activation{
		caller:   object{adapter: a, typ: ts.caller},
		task:     object{adapter: a, typ: ts.task},
		tool:     object{adapter: a, typ: ts.tool},
		request:  object{adapter: a, typ: ts.request},
		approval: object{adapter: a, typ: ts.approval},
		env:      env,
	}
	act.set(in, approval, args)
	return act
}

func (a *activation) set(in *Input, approval *Approval, args any) {
	a.caller.ptr, a.task.ptr, a.tool.ptr = &in.Caller, &in.Task, &in.Tool
	a.request.ptr, a.approval.ptr = &in.Request, approval
	a.args = args
}

// activation returns a pooled activation for a decision on in; args is
// left nil.
func (e *Engine) activation(in *Input, approval *Approval) *activation {
	if a, ok := e.acts.Get().(*activation); ok {
		a.set(in, approval, nil)
		return a
	}
	return newActivation(e.adapter, &e.objTypes, in, approval, nil, e.envVal)
}

// release clears a (so that the pool keeps no input alive) and pools it.
func (e *Engine) release(a *activation) {
	a.caller.reset()
	a.task.reset()
	a.tool.reset()
	a.request.reset()
	a.approval.reset()
	a.args = nil
	e.acts.Put(a)
}

// ResolveName implements cel.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "caller":
		return &a.caller, true
	case "task":
		return &a.task, true
	case "tool":
		return &a.tool, true
	case "args":
		return a.args, true
	case "request":
		return &a.request, true
	case "approval":
		return &a.approval, true
	case "env":
		return a.env, true
	}
	return nil, false
}

// Parent implements cel.Activation.
func (a *activation) Parent() cel.Activation { return nil }

// noApproval is the approval variable when Input.Approval is nil. Never
// modified.
var noApproval = &Approval{State: ApprovalNone}

func deny(format string, args ...any) Decision {
	return Decision{Effect: Deny, Message: fmt.Sprintf(format, args...)}
}

// Decide evaluates the rules that apply to in.Tool.Name: the operator
// policies whose match selects the tool, then the tool's own rules.
//
// Combination: every matching deny rule denies (Rules lists them all,
// Message is the first one's message); else matching require_approval rules
// ask for approval (Rules lists them) unless in.Approval is approved (the
// rules are then satisfied and an allow rule is still needed; they are
// listed before it in Rules) or denied (then the call is denied); else the
// first matching allow rule allows (Rules = [it]); else the call is denied
// by default with no Rules. A rule whose evaluation fails (an error, a
// non-bool result, the cost limit, the deadline) denies and is named in
// Rules and Message. Decide never panics on any args and never blocks past
// Options.Timeout by more than one comprehension check interval.
func (e *Engine) Decide(ctx context.Context, in *Input) Decision {
	if in == nil {
		return deny("policy: no input to decide on: the caller passed nil")
	}
	tr := e.tools[in.Tool.Name]
	if tr == nil {
		return deny("tool %q is not known to the policy engine: recompile the policies together with its manifest", in.Tool.Name)
	}
	if len(tr.deny)+len(tr.approval)+len(tr.allow) == 0 {
		return e.defaultDeny(in, nil)
	}
	args, err := normalizeValue(in.Args)
	if err != nil {
		return deny("arguments cannot be evaluated by policy: %v", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return deny("policy decision not started: %v", err)
	}
	lightIn, argNodes := weigh(in, args, tr.reach)
	lightIn = lightIn && e.envLight
	approval := in.Approval
	if approval == nil {
		approval = noApproval
	}
	act := e.activation(in, approval)
	if lightIn && tr.argRefs >= deepArgsFactor*argNodes {
		// Converted all the way down once, rather than element by element
		// on every access to args; bounded by fastPathWeight. Worth it
		// when the rules read args several times per value it holds.
		act.args = celValue(e.adapter, args)
	} else {
		// Adapted once, as cel-go would on every access to args; its
		// elements are converted when accessed.
		act.args = e.adapter.NativeToValue(args)
	}
	d := decider{e: e, parent: ctx, act: act, tr: tr, in: in, approval: approval}
	// The activation goes back to the pool when the decision is made:
	// nothing evaluation returns refers to it.
	defer d.close()
	if !e.noBatch && tr.batchOK {
		var out ref.Val
		var err error
		switch {
		case tr.batch == nil:
			// Every rule is constant for this tool.
			d.batched = true
		case tr.fast != nil && lightIn:
			// Bounded by construction (linear.go): no tracker, no deadline.
			out, _, err = tr.fast.Eval(act)
		default:
			out, _, err = tr.batch.ContextEval(d.context(), act)
		}
		if l, ok := out.(traits.Lister); ok && err == nil && l.Size() == types.Int(tr.evals) {
			d.results, d.batched = l, true
			d.vals, _ = l.Value().([]ref.Val)
		}
	}
	return d.decide()
}

// decider is the state of one decision.
type decider struct {
	e      *Engine
	parent context.Context
	ctx    context.Context // parent with the decision timeout; made on first use
	cancel context.CancelFunc
	act    *activation
	tr     *toolRules
	in     *Input
	// approval is in.Approval, or noApproval.
	approval *Approval
	results  traits.Lister // batch results
	vals     []ref.Val     // results as a slice, when they are one
	batched  bool          // decide from tr.consts and results, not rule by rule
}

// context returns the decision's context, with its deadline.
func (d *decider) context() context.Context {
	if d.ctx == nil {
		d.ctx, d.cancel = context.WithTimeout(d.parent, d.e.timeout)
	}
	return d.ctx
}

func (d *decider) close() {
	if d.cancel != nil {
		d.cancel()
	}
	d.e.release(d.act)
}

func (d *decider) decide() Decision {
	tr := d.tr
	// 1. Deny rules: all of them.
	var rules []string
	var first *rule
	var firstErr error
	for i, r := range tr.deny {
		ok, err := d.when(r, i)
		if err != nil || ok {
			rules = append(rules, r.qname)
			if first == nil {
				first, firstErr = r, err
			}
		}
	}
	if first != nil {
		if firstErr != nil {
			return Decision{Effect: Deny, Rules: rules, Message: failMessage(first, firstErr)}
		}
		msg, err := d.message(first)
		switch {
		case err != nil:
			msg = fmt.Sprintf("denied by rule %s (its message failed to evaluate: %v)", first.qname, err)
		case msg == "":
			msg = "denied by rule " + first.qname
		}
		return Decision{Effect: Deny, Rules: rules, Message: msg}
	}

	// 2. Require-approval rules: all of them.
	off := len(tr.deny)
	var approvalRules, failed []string
	var firstRA, firstFailed *rule
	for i, r := range tr.approval {
		ok, err := d.when(r, off+i)
		switch {
		case err != nil:
			failed = append(failed, r.qname)
			if firstFailed == nil {
				firstFailed, firstErr = r, err
			}
		case ok:
			approvalRules = append(approvalRules, r.qname)
			if firstRA == nil {
				firstRA = r
			}
		}
	}
	if firstFailed != nil {
		return Decision{Effect: Deny, Rules: failed, Message: failMessage(firstFailed, firstErr)}
	}
	if firstRA != nil {
		switch d.approval.State {
		case ApprovalApproved:
			// Satisfied: an allow rule must still allow the call.
		case ApprovalDenied:
			return Decision{Effect: Deny, Rules: approvalRules,
				Message: fmt.Sprintf("the approval that rule %s requires was denied by %q", firstRA.qname, d.approval.Approver)}
		default:
			msg, err := d.message(firstRA)
			switch {
			case err != nil:
				return Decision{Effect: Deny, Rules: []string{firstRA.qname},
					Message: fmt.Sprintf("rule %s requires approval but its message failed to evaluate, so the call is denied: %v", firstRA.qname, err)}
			case msg == "":
				msg = "approval required by rule " + firstRA.qname
			}
			return Decision{Effect: RequireApproval, Rules: approvalRules, Message: msg}
		}
	}

	// 3. Allow rules: the first match decides.
	off += len(tr.approval)
	for i, r := range tr.allow {
		ok, err := d.when(r, off+i)
		if err != nil {
			return Decision{Effect: Deny, Rules: []string{r.qname}, Message: failMessage(r, err)}
		}
		if !ok {
			continue
		}
		msg, err := d.message(r)
		if err != nil {
			return Decision{Effect: Deny, Rules: []string{r.qname},
				Message: fmt.Sprintf("rule %s allows the call but its message failed to evaluate, so the call is denied: %v", r.qname, err)}
		}
		return Decision{Effect: Allow, Rules: append(approvalRules, r.qname), Message: msg}
	}
	return d.e.defaultDeny(d.in, approvalRules)
}

func (e *Engine) defaultDeny(in *Input, approved []string) Decision {
	msg := fmt.Sprintf("no policy allows tool %q for caller %q: add an allow rule for it to a policy whose match selects this tool",
		in.Tool.Name, in.Caller.SpiffeID)
	if len(approved) > 0 {
		msg += fmt.Sprintf(" (the approval satisfies %s, but an allow rule is still required)", strings.Join(approved, ", "))
	}
	return Decision{Effect: Deny, Message: msg}
}

func failMessage(r *rule, err error) string {
	return fmt.Sprintf("rule %s failed to evaluate, so the call is denied: %v", r.qname, err)
}

// when evaluates r's condition: from the batch results when there are any,
// else on its own.
func (d *decider) when(r *rule, pos int) (bool, error) {
	var v ref.Val
	if d.batched {
		if v = d.tr.consts[pos]; v == nil {
			if i := d.tr.index[pos]; i < len(d.vals) {
				v = d.vals[i]
			} else {
				v = d.results.Get(types.Int(i))
			}
		}
	} else {
		out, _, err := r.when.ContextEval(d.context(), d.act)
		if err != nil {
			return false, d.evalErr(r, err)
		}
		v = out
	}
	switch b := v.(type) {
	case types.Bool:
		return bool(b), nil
	case *types.Err:
		return false, d.evalErr(r, b)
	}
	err := fmt.Errorf("the when expression returned %s, not bool", v.Type().TypeName())
	d.e.log.Warn().Str("rule", r.qname).Str("tool", d.in.Tool.Name).Err(err).Msg("policy rule failed; denying")
	return false, err
}

func (d *decider) evalErr(r *rule, err error) error {
	if d.ctx != nil && d.ctx.Err() != nil {
		err = fmt.Errorf("%w (the decision deadline is %v)", err, d.e.timeout)
	}
	d.e.log.Warn().Str("rule", r.qname).Str("tool", d.in.Tool.Name).Err(err).Msg("policy rule failed; denying")
	return err
}

// message evaluates r's message expression; "" when it has none.
func (d *decider) message(r *rule) (string, error) {
	if r.message == nil {
		return "", nil
	}
	out, _, err := r.message.ContextEval(d.context(), d.act)
	if err != nil {
		return "", d.evalErr(r, err)
	}
	s, ok := out.(types.String)
	if !ok {
		return "", fmt.Errorf("the message expression returned %s, not string", out.Type().TypeName())
	}
	return string(s), nil
}
