package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/tools/sdk"
	"github.com/itchyny/gojq"
)

// Bounds of one query.
const (
	// MaxResults bounds the number of values a filter may produce.
	MaxResults = 10_000
	// MaxOutputBytes bounds the encoded results, the tool's output limit.
	MaxOutputBytes = 1 << 20
	// MaxFilterBytes bounds the filter text (the manifest says 4096 characters).
	MaxFilterBytes = 16 << 10
)

// Input is the json.query arguments.
type Input struct {
	Filter string `json:"filter"`
	Input  any    `json:"input"`
}

// Output is the json.query result.
type Output struct {
	// Results holds every value the filter produced, in order, each encoded
	// by gojq (NaN becomes null, infinities the largest finite float).
	Results []json.RawMessage `json:"results"`
}

// query compiles and runs in.Filter over in.Input.
func query(ctx context.Context, in Input) (Output, error) {
	if strings.TrimSpace(in.Filter) == "" {
		return Output{}, sdk.Errorf("bad_filter", "filter is empty: give a jq filter such as \".\" or \".items[].name\"")
	}
	if len(in.Filter) > MaxFilterBytes {
		return Output{}, sdk.Errorf("bad_filter", "filter is %d bytes, over the limit of %d", len(in.Filter), MaxFilterBytes)
	}
	q, err := gojq.Parse(in.Filter)
	if err != nil {
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			line, col := position(in.Filter, pe.Offset-len(pe.Token))
			return Output{}, sdk.Errorf("bad_filter", "filter does not parse at line %d, column %d: %v", line, col, pe)
		}
		return Output{}, sdk.Errorf("bad_filter", "filter does not parse: %w", err)
	}
	code, err := gojq.Compile(q,
		// No environment: $ENV and env are empty objects whatever the guest has.
		gojq.WithEnvironLoader(func() []string { return nil }),
	)
	if err != nil {
		return Output{}, sdk.Errorf("bad_filter", "filter does not compile: %w", err)
	}

	out := Output{Results: []json.RawMessage{}}
	size := 0
	iter := code.RunWithContext(ctx, in.Input)
	for {
		v, ok := iter.Next()
		if !ok {
			break
		}
		if err, isErr := v.(error); isErr {
			var halt *gojq.HaltError
			if errors.As(err, &halt) {
				if halt.Value() == nil { // halt: stop, keep the results so far
					break
				}
				return Output{}, sdk.Errorf("filter_error", "filter halted: %s", haltMessage(halt))
			}
			return Output{}, sdk.Errorf("filter_error", "%v", err)
		}
		if len(out.Results) == MaxResults {
			return Output{}, sdk.Errorf("too_many_results",
				"filter produced more than %d results: narrow it, e.g. with limit(100; ...) or first(...)", MaxResults)
		}
		b, err := gojq.Marshal(v)
		if err != nil {
			return Output{}, sdk.Errorf("filter_error", "result %d cannot be encoded as JSON: %w", len(out.Results)+1, err)
		}
		size += len(b) + 1
		if size > MaxOutputBytes {
			return Output{}, sdk.Errorf("output_too_large",
				"results exceed %d bytes: select fewer or smaller values", MaxOutputBytes)
		}
		out.Results = append(out.Results, b)
	}
	return out, nil
}

// haltMessage renders the value of halt_error as jq does: a string as is,
// anything else as JSON.
func haltMessage(h *gojq.HaltError) string {
	if s, ok := h.Value().(string); ok {
		return strings.TrimSuffix(s, "\n")
	}
	b, err := gojq.Marshal(h.Value())
	if err != nil {
		return fmt.Sprint(h.Value())
	}
	return string(b)
}

// position turns a byte offset of src into a 1-based line and column
// (counted in characters).
func position(src string, offset int) (line, col int) {
	offset = min(max(offset, 0), len(src))
	before := src[:offset]
	line = strings.Count(before, "\n") + 1
	col = utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
	return line, col
}
