package policy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// TestResult is the outcome of one test case.
type TestResult struct {
	// Name is "TESTFILE/CASE" (the test file's metadata.name, then the case).
	Name string
	File string
	Line int
	Pass bool
	// Diff says what differed, one "field: want X, got Y" per line (only
	// the fields the case expects are compared); empty when the case passed.
	// For a case that could not run it says why.
	Diff string
	// Got is the whole decision the engine made, for printing next to a
	// failed case's Diff (zero when the case could not run).
	Got Decision
}

// RunTests decides every case of files with e and compares the decisions
// with the expectations. tools maps exact tool names to their manifests,
// which provide the `tool` variable; a case naming a tool that is not in
// tools fails. Results are in file and case order.
func (e *Engine) RunTests(files []*TestFile, tools map[string]*manifest.Manifest) []TestResult {
	var out []TestResult
	for _, tf := range files {
		if tf == nil {
			continue
		}
		for _, c := range tf.Spec.Cases {
			res := TestResult{Name: tf.Metadata.Name + "/" + c.Name, File: tf.Path, Line: c.Line}
			in, err := caseInput(tf, &c, tools)
			if err != nil {
				res.Diff = err.Error()
				out = append(out, res)
				continue
			}
			res.Got = e.Decide(context.Background(), in)
			res.Diff = diff(c.Expect, res.Got)
			res.Pass = res.Diff == ""
			out = append(out, res)
		}
	}
	return out
}

func caseInput(tf *TestFile, c *TestCase, tools map[string]*manifest.Manifest) (*Input, error) {
	caller, err := CallerFromSPIFFE(c.Caller)
	if err != nil {
		return nil, fmt.Errorf("caller: %w", err)
	}
	m := tools[c.Tool]
	if m == nil {
		known := make([]string, 0, len(tools))
		for n := range tools {
			known = append(known, n)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("tool: no manifest named %q (names are exact); known tools: %s", c.Tool, strings.Join(known, ", "))
	}
	tool, err := ToolFromManifest(m)
	if err != nil {
		return nil, fmt.Errorf("tool: %w", err)
	}
	args, err := normalizeYAML(c.Args, 0)
	if err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	in := &Input{
		Caller: caller,
		Tool:   tool,
		Args:   args,
		Request: Request{
			ID:            "test/" + tf.Metadata.Name + "/" + c.Name,
			Time:          time.Now().UTC(),
			Justification: c.Justification,
		},
	}
	if c.Time != "" {
		if in.Request.Time, err = time.Parse(time.RFC3339, c.Time); err != nil {
			return nil, fmt.Errorf("time: %w", err)
		}
	}
	if t := c.Task; t != nil {
		in.Task = Task{ID: t.ID, Purpose: t.Purpose, Sensitivity: t.Sensitivity, Labels: t.Labels, CallCount: t.CallCount}
		if t.StartedAt != "" {
			if in.Task.StartedAt, err = time.Parse(time.RFC3339, t.StartedAt); err != nil {
				return nil, fmt.Errorf("task.started_at: %w", err)
			}
		}
		if t.ExpiresAt != "" {
			if in.Task.ExpiresAt, err = time.Parse(time.RFC3339, t.ExpiresAt); err != nil {
				return nil, fmt.Errorf("task.expires_at: %w", err)
			}
		}
	}
	if a := c.Approval; a != nil {
		in.Approval = &Approval{State: a.State, Approver: a.Approver}
	}
	return in, nil
}

// diff compares a decision with an expectation; "" when they agree. Only
// the fields the expectation gives are compared (the effect always).
func diff(want Expect, got Decision) string {
	var lines []string
	if Effect(want.Effect) != got.Effect {
		lines = append(lines, fmt.Sprintf("effect: want %s, got %s", want.Effect, got.Effect))
	}
	if want.Rules != nil && !slices.Equal(*want.Rules, got.Rules) {
		w, g := *want.Rules, got.Rules
		if w == nil {
			w = []string{}
		}
		if g == nil {
			g = []string{}
		}
		lines = append(lines, fmt.Sprintf("rules: want %v, got %v", w, g))
	}
	if want.Message != nil && *want.Message != got.Message {
		lines = append(lines, fmt.Sprintf("message: want %q, got %q", *want.Message, got.Message))
	}
	return strings.Join(lines, "\n")
}
