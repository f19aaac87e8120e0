package policy

import (
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
)

// The fast path.
//
// cel-go's runtime cost tracker roughly triples the time of a decision. It
// is only needed for expressions whose cost can grow faster than their
// input: comprehensions (all, exists, map, filter, ...) and functions such
// as sets.intersects, lists.range or replace. An expression built only from
// the functions in linearFuncs, with no comprehension, does work
// proportional to (number of nodes) x (total input size); when the input of
// a decision weighs at most fastPathWeight, that is bounded by construction,
// far below the cost limit. Decide then evaluates the batch of such rules
// without the tracker; in every other case (any rule not linear, or a
// heavier input) it evaluates with cel.CostLimit. Rule-by-rule evaluation,
// used when the batch fails, and messages always track cost.
//
// The safety argument, in full (tested by TestIsLinear,
// TestHeavyInputTakesTheTrackedPath, TestReachedMaps and
// TestUnreadMapsDoNotWeigh):
//   - isLinear is checked on the batch exactly as it is evaluated: after
//     per-tool folding (fold.go), which only replaces subexpressions by
//     literals no larger than the source they came from.
//   - Each linear function does work at most proportional to the size of
//     its arguments and returns a value no larger than them, so every
//     intermediate value is bounded by (nodes x input) and so is the work.
//   - The input is what the batch can read: strings of the typed
//     variables, args and env in full, and the maps of task and tool
//     (labels, capabilities) when the batch mentions them or uses the
//     variable whole (reachedMaps). Env is weighed once at Compile.
//   - No deadline is needed either: nothing in the batch can loop.

// fastPathWeight bounds the input of an untracked evaluation: the sum of
// the lengths of every string and the number of elements of every list and
// map in args, caller, task, tool, request and approval (the maps of task
// and tool only when the batch can read them: see reachedMaps).
const fastPathWeight = 32 << 10

// linearFuncs are the functions whose cost is linear in the size of their
// arguments and whose result is no larger than their arguments (or is
// constant-size).
var linearFuncs = map[string]bool{
	// Operators.
	"_&&_": true, "_||_": true, "!_": true, "_?_:_": true, "@not_strictly_false": true,
	"_==_": true, "_!=_": true, "_<_": true, "_<=_": true, "_>_": true, "_>=_": true,
	"_+_": true, "_-_": true, "_*_": true, "_/_": true, "_%_": true, "-_": true,
	"_[_]": true, "_[?_]": true, "_?._": true, "@in": true,
	// Standard functions.
	"size": true, "startsWith": true, "endsWith": true, "contains": true,
	"int": true, "uint": true, "double": true, "string": true, "bool": true, "bytes": true,
	"dyn": true, "type": true, "timestamp": true, "duration": true,
	"getFullYear": true, "getMonth": true, "getDayOfYear": true, "getDayOfMonth": true, "getDate": true,
	"getDayOfWeek": true, "getHours": true, "getMinutes": true, "getSeconds": true, "getMilliseconds": true,
	// Optional values.
	"optional.of": true, "optional.ofNonZeroValue": true, "optional.none": true,
	"hasValue": true, "value": true, "orValue": true, "or": true,
	// ext.Strings (the linear ones).
	"lowerAscii": true, "upperAscii": true, "trim": true, "charAt": true, "substring": true,
	// ext.Network and the airlock functions.
	"ip": true, "cidr": true, "isIP": true, "isCIDR": true, "containsIP": true, "containsCIDR": true,
	"family": true, "isLoopback": true, "isPrivate": true, "isGlobalUnicast": true, "isUnspecified": true,
	"isLinkLocalMulticast": true, "isLinkLocalUnicast": true, "isMask": true, "masked": true, "prefixLength": true,
	"url": true, "isURL": true, "scheme": true, "host": true, "port": true, "path": true, "query": true,
}

// literalPatternFuncs are linear only when their pattern is a literal:
// regular expression matching and glob are O(len(pattern) * len(s)).
// The value is the index of the pattern among the call's arguments
// (the target, for a member call, is not counted).
var literalPatternFuncs = map[string]int{"matches": 0, "glob": 0}

// isLinear reports whether a checked expression is built only from linear
// functions, with no comprehension.
func isLinear(a *cel.Ast) bool {
	linear := true
	celast.PostOrderVisit(a.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.ComprehensionKind:
			linear = false
		case celast.CallKind:
			call := e.AsCall()
			name := call.FunctionName()
			if linearFuncs[name] || strings.HasPrefix(name, "math.") {
				return
			}
			if i, ok := literalPatternFuncs[name]; ok {
				args := call.Args()
				if name == "matches" && !call.IsMemberFunction() {
					i = 1 // matches(s, re)
				}
				if i < len(args) && args[i].Kind() == celast.LiteralKind {
					return
				}
			}
			linear = false
		}
	}))
	return linear
}

// weigher sums the size of decision inputs and stops as soon as the total
// passes the limit.
type weigher struct {
	left  int
	nodes int // values seen by value
}

func (w *weigher) str(s string) bool {
	w.left -= len(s)
	return w.left >= 0
}

func (w *weigher) strMap(m map[string]string) bool {
	w.left -= len(m)
	for k, v := range m {
		if !w.str(k) || !w.str(v) {
			return false
		}
	}
	return w.left >= 0
}

func (w *weigher) value(v any) bool {
	w.nodes++
	switch x := v.(type) {
	case string:
		return w.str(x)
	case []any:
		w.left -= len(x)
		if w.left < 0 {
			return false
		}
		for _, e := range x {
			if !w.value(e) {
				return false
			}
		}
	case map[string]any:
		w.left -= len(x)
		if w.left < 0 {
			return false
		}
		for k, e := range x {
			if !w.str(k) || !w.value(e) {
				return false
			}
		}
	case nil, bool, int64, float64, int:
		w.left--
	default:
		return false // anything else: take the tracked path
	}
	return w.left >= 0
}

// light reports whether the decision input weighs at most fastPathWeight.
func light(in *Input, args any) bool {
	ok, _ := weigh(in, args, reachAll)
	return ok
}

// reach says which maps of the typed variables an expression can read:
// only those count towards the weight of its input. The strings of the
// typed variables always count (weighing them costs nothing).
type reach uint8

const (
	reachTaskLabels reach = 1 << iota
	reachToolLabels
	reachToolCaps
	reachAll = reachTaskLabels | reachToolLabels | reachToolCaps
)

// reachedMaps returns the maps of task and tool that a checked expression
// can read: task.labels, tool.labels, tool.capabilities when it selects
// them, all of a variable's maps when it uses the variable in any other
// way than selecting one of its fields (tool == x, dyn(tool), tool.?f).
func reachedMaps(a *cel.Ast) reach {
	var r reach
	refs := a.NativeRep().ReferenceMap()
	celast.MatchDescendants(celast.NavigateAST(a.NativeRep()), func(e celast.NavigableExpr) bool {
		if e.Kind() != celast.IdentKind {
			return false
		}
		name := e.AsIdent()
		if name != "task" && name != "tool" {
			return false
		}
		// Comprehension variables named task or tool have a reference
		// too: counting them is conservative.
		if ref, ok := refs[e.ID()]; !ok || ref.Name != name {
			return false
		}
		all, field := reachAll, ""
		if name == "task" {
			all = reachTaskLabels
		} else {
			all = reachToolLabels | reachToolCaps
		}
		if p, ok := e.Parent(); ok && p.Kind() == celast.SelectKind && p.AsSelect().Operand().ID() == e.ID() {
			field = p.AsSelect().FieldName()
		}
		switch {
		case field == "":
			r |= all
		case name == "task" && field == "labels":
			r |= reachTaskLabels
		case name == "tool" && field == "labels":
			r |= reachToolLabels
		case name == "tool" && field == "capabilities":
			r |= reachToolCaps
		}
		return false
	})
	return r
}

// weigh reports whether the decision input that expressions reaching r can
// read weighs at most fastPathWeight and, when it does, how many values
// (maps, lists and scalars) args holds.
func weigh(in *Input, args any, r reach) (bool, int) {
	w := weigher{left: fastPathWeight}
	ok := w.str(in.Caller.SpiffeID) && w.str(in.Caller.TrustDomain) && w.str(in.Caller.Path) &&
		w.str(in.Task.ID) && w.str(in.Task.Purpose) && w.str(in.Task.Sensitivity) &&
		(r&reachTaskLabels == 0 || w.strMap(in.Task.Labels)) &&
		w.str(in.Tool.Name) && w.str(in.Tool.Version) && w.str(in.Tool.Digest) && w.str(in.Tool.Risk) &&
		(r&reachToolLabels == 0 || w.strMap(in.Tool.Labels)) &&
		(r&reachToolCaps == 0 || w.value(map[string]any(in.Tool.Capabilities))) &&
		w.str(in.Request.ID) && w.str(in.Request.Justification) &&
		(in.Approval == nil || w.str(in.Approval.State) && w.str(in.Approval.Approver))
	if !ok {
		return false, 0
	}
	w.nodes = 0
	if !w.value(args) {
		return false, 0
	}
	return true, w.nodes
}
