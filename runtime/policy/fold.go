package policy

import (
	"fmt"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// Per-tool folding.
//
// The rules that apply to a tool are known at Compile, and so is the tool's
// name: Decide looks the rules up by Input.Tool.Name, so `tool.name` is the
// same constant in every decision that reaches them. For each tool, every
// linear rule (see linear.go) is rewritten with `tool.name` replaced by
// that constant and then constant-folded with cel-go's folding optimizer.
// A rule that folds to a literal (typically false: `tool.name == "other"
// && ...`) is not evaluated at all; its value is the literal. The others
// are evaluated, folded, in the tool's batch program.
//
// Folding is semantics-preserving: cel-go's folder evaluates only
// subexpressions that are constant, with the same functions, and leaves
// anything that fails to evaluate as it is, so an error still happens at
// decision time and still denies. Logical operators fold the way CEL
// evaluates them (`false && error` is false, `true || error` is true).
// Only linear rules are folded: their constant subexpressions cost at most
// their own size to evaluate, so a rule cannot make Compile slow (a
// constant comprehension or a quadratic function on constant lists would be
// evaluated by the folder without any cost limit).
//
// Rule-by-rule evaluation (the fallback when the batch fails) uses the
// unfolded programs, so the tests that compare both also check folding.

// bindToolName is an AST optimizer that replaces `tool.name` by a string
// literal.
type bindToolName struct{ name string }

// Optimize implements cel.ASTOptimizer.
func (b bindToolName) Optimize(ctx *cel.OptimizerContext, a *celast.AST) *celast.AST {
	for _, e := range toolNameSelects(a) {
		ctx.UpdateExpr(e, ctx.NewLiteral(types.String(b.name)))
	}
	return a
}

// toolNameSelects returns the `tool.name` selections of a checked AST in
// which `tool` is the decision variable; none when any comprehension
// declares a variable named tool (it could shadow the global one).
func toolNameSelects(a *celast.AST) []celast.NavigableExpr {
	root := celast.NavigateAST(a)
	shadowed := len(celast.MatchDescendants(root, func(e celast.NavigableExpr) bool {
		if e.Kind() != celast.ComprehensionKind {
			return false
		}
		c := e.AsComprehension()
		return c.IterVar() == "tool" || c.IterVar2() == "tool" || c.AccuVar() == "tool"
	})) > 0
	if shadowed {
		return nil
	}
	refs := a.ReferenceMap()
	return celast.MatchDescendants(root, func(e celast.NavigableExpr) bool {
		if e.Kind() != celast.SelectKind {
			return false
		}
		s := e.AsSelect()
		if s.IsTestOnly() || s.FieldName() != "name" || s.Operand().Kind() != celast.IdentKind ||
			s.Operand().AsIdent() != "tool" {
			return false
		}
		r, ok := refs[s.Operand().ID()]
		return ok && r.Name == "tool" && r.Value == nil
	})
}

// composeList is an AST optimizer that replaces the expression by the list
// of the given expressions.
type composeList struct{ elems []*cel.Ast }

// Optimize implements cel.ASTOptimizer.
func (c composeList) Optimize(ctx *cel.OptimizerContext, _ *celast.AST) *celast.AST {
	elems := make([]celast.Expr, len(c.elems))
	for i, e := range c.elems {
		elems[i] = ctx.CopyASTAndMetadata(e.NativeRep())
	}
	return ctx.NewAST(ctx.NewList(elems, nil))
}

// folder folds rules per tool and caches the results.
type folder struct {
	env      *cel.Env
	generic  *cel.StaticOptimizer
	byRule   map[int]folded    // rules that do not mention tool.name
	byTool   map[string]folded // "id@tool" for those that do
	emptyAST *cel.Ast
}

// folded is a rule's `when` after folding: a literal, or an AST to evaluate.
type folded struct {
	lit ref.Val  // non-nil when the rule folded to a literal
	ast *cel.Ast // else the AST to evaluate
	key string   // identifies the folded form, for batch caching
}

func newFolder(env *cel.Env) (*folder, error) {
	cf, err := cel.NewConstantFoldingOptimizer()
	if err != nil {
		return nil, fmt.Errorf("policy: constant folding: %w", err)
	}
	generic, err := cel.NewStaticOptimizer(cf)
	if err != nil {
		return nil, fmt.Errorf("policy: constant folding: %w", err)
	}
	empty, iss := env.Compile("[]")
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("policy: constant folding: %w", iss.Err())
	}
	return &folder{env: env, generic: generic, byRule: map[int]folded{}, byTool: map[string]folded{}, emptyAST: empty}, nil
}

// fold returns r's `when` folded for the tool named tool. Rules that are
// not linear, and rules whose folding fails, are returned as they are.
func (f *folder) fold(r *rule, tool string) folded {
	plain := folded{ast: r.ast, key: fmt.Sprint(r.id)}
	if !r.linear || r.ast == nil {
		return plain
	}
	if !r.toolName {
		if out, ok := f.byRule[r.id]; ok {
			return out
		}
		out := f.optimize(f.generic, r, plain)
		f.byRule[r.id] = out
		return out
	}
	key := fmt.Sprintf("%d@%s", r.id, tool)
	if out, ok := f.byTool[key]; ok {
		return out
	}
	cf, err := cel.NewConstantFoldingOptimizer()
	if err != nil {
		return plain
	}
	opt, err := cel.NewStaticOptimizer(bindToolName{name: tool}, cf)
	if err != nil {
		return plain
	}
	out := f.optimize(opt, r, plain)
	out.key = key
	f.byTool[key] = out
	return out
}

func (f *folder) optimize(opt *cel.StaticOptimizer, r *rule, plain folded) folded {
	a, iss := opt.Optimize(f.env, r.ast)
	if iss != nil && iss.Err() != nil {
		return plain // evaluate it unfolded; it behaves the same
	}
	if e := a.NativeRep().Expr(); e.Kind() == celast.LiteralKind {
		return folded{lit: e.AsLiteral(), key: plain.key}
	}
	return folded{ast: a, key: plain.key}
}

// list composes the ASTs into one list expression, type-checked.
func (f *folder) list(elems []*cel.Ast) (*cel.Ast, error) {
	opt, err := cel.NewStaticOptimizer(composeList{elems: elems})
	if err != nil {
		return nil, err
	}
	a, iss := opt.Optimize(f.env, f.emptyAST)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	return a, nil
}

// mentionsToolName reports whether a checked AST selects tool.name.
func mentionsToolName(a *cel.Ast) bool {
	return len(toolNameSelects(a.NativeRep())) > 0
}

// countIdent returns how many times a checked AST refers to the global
// variable name.
func countIdent(a *cel.Ast, name string) int {
	n := 0
	refs := a.NativeRep().ReferenceMap()
	celast.PostOrderVisit(a.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.IdentKind && e.AsIdent() == name {
			if r, ok := refs[e.ID()]; ok && r.Name == name && r.Value == nil {
				n++
			}
		}
	}))
	return n
}
