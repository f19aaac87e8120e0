package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/tools/sdk"
)

// call runs the tool's handler through the SDK, as the module does.
func call(t *testing.T, args string) (string, error) {
	t.Helper()
	out, err := sdk.Handle(query).Call(context.Background(), []byte(args))
	return strings.TrimSuffix(string(out), "\n"), err
}

func TestQuery(t *testing.T) {
	tests := []struct {
		name, args, want, wantErr string
	}{
		{"identity", `{"filter": ".", "input": {"a": 1}}`, `{"results":[{"a":1}]}`, ""},
		{"select and project", `{"filter": ".items[] | select(.price > 10) | .name", "input": {"items": [{"name": "a", "price": 5}, {"name": "b", "price": 12}]}}`, `{"results":["b"]}`, ""},
		{"no results", `{"filter": "empty", "input": 1}`, `{"results":[]}`, ""},
		{"null input", `{"filter": ".", "input": null}`, `{"results":[null]}`, ""},
		{"missing input is null", `{"filter": ". == null"}`, `{"results":[true]}`, ""},
		{"several results", `{"filter": ".[] * 2", "input": [1, 2, 3]}`, `{"results":[2,4,6]}`, ""},
		{"big integers exact", `{"filter": ".n", "input": {"n": 123456789012345678901234567890}}`, `{"results":[123456789012345678901234567890]}`, ""},
		{"float", `{"filter": ". / 4", "input": 1}`, `{"results":[0.25]}`, ""},
		{"nan is null", `{"filter": "nan", "input": 1}`, `{"results":[null]}`, ""},
		{"object key order", `{"filter": "{b: 1, a: 2}", "input": null}`, `{"results":[{"a":2,"b":1}]}`, ""},
		{"no html escaping", `{"filter": "\"<&>\"", "input": null}`, `{"results":["<&>"]}`, ""},
		{"ENV is empty", `{"filter": "$ENV", "input": null}`, `{"results":[{}]}`, ""},
		{"env is empty", `{"filter": "env | length", "input": null}`, `{"results":[0]}`, ""},
		{"limit tames infinity", `{"filter": "limit(3; repeat(1))", "input": null}`, `{"results":[1,1,1]}`, ""},
		{"halt keeps results", `{"filter": "1, halt, 2", "input": null}`, `{"results":[1]}`, ""},
		{"parse error position", `{"filter": ".a | }", "input": {}}`, "", `bad_filter: filter does not parse at line 1, column 6: unexpected token "}"`},
		{"parse error second line", `{"filter": ".[\n  foo(", "input": {}}`, "", "bad_filter: filter does not parse at line 2, column 7: unexpected EOF"},
		{"parse error unterminated", `{"filter": "\"abc", "input": {}}`, "", "bad_filter: filter does not parse at line 1, column 5: unterminated string literal"},
		{"empty filter", `{"filter": "  ", "input": 1}`, "", "bad_filter: filter is empty"},
		{"unknown function", `{"filter": "frobnicate", "input": 1}`, "", "bad_filter: filter does not compile: function not defined: frobnicate/0"},
		{"input is refused", `{"filter": "input", "input": 1}`, "", "bad_filter: filter does not compile: input(s)/0 is not allowed"},
		{"inputs is refused", `{"filter": "[inputs]", "input": 1}`, "", "bad_filter: filter does not compile: input(s)/0 is not allowed"},
		{"no debug", `{"filter": "debug", "input": 1}`, "", "bad_filter: filter does not compile: function not defined: debug/0"},
		{"no stderr", `{"filter": "stderr", "input": 1}`, "", "bad_filter: filter does not compile: function not defined: stderr/0"},
		{"no modules", `{"filter": "import \"x\" as x; .", "input": 1}`, "", "bad_filter: filter does not compile: cannot load module"},
		{"runtime error", `{"filter": ".a", "input": [1]}`, "", "filter_error: expected an object but got: array ([1])"},
		{"error()", `{"filter": "error(\"nope\")", "input": 1}`, "", "filter_error: error: nope"},
		{"halt_error", `{"filter": "\"stop here\\n\" | halt_error(1)", "input": 1}`, "", "filter_error: filter halted: stop here"},
		{"halt_error object", `{"filter": "{a: 1} | halt_error", "input": 1}`, "", `filter_error: filter halted: {"a":1}`},
		{"too many results", `{"filter": "range(20000)", "input": null}`, "", "too_many_results: filter produced more than 10000 results"},
		{"infinite results", `{"filter": "repeat(1)", "input": null}`, "", "too_many_results"},
		{"output too large", `{"filter": "range(200) | \"x\" * 10000", "input": null}`, "", "output_too_large: results exceed 1048576 bytes"},
		{"one huge result", `{"filter": "\"x\" * 2000000", "input": null}`, "", "output_too_large"},
		{"unknown argument", `{"filter": ".", "input": 1, "env": {}}`, "", `invalid_input: arguments: unknown field "env"`},
		{"filter not a string", `{"filter": 1, "input": 1}`, "", "invalid_input: argument filter: want string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := call(t, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %.200q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %.200q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestExactlyMaxResults(t *testing.T) {
	got, err := call(t, fmt.Sprintf(`{"filter": "range(%d)", "input": null}`, MaxResults))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Results []int }
	if err := json.Unmarshal([]byte(got), &out); err != nil || len(out.Results) != MaxResults || out.Results[MaxResults-1] != MaxResults-1 {
		t.Fatalf("got %d results, err %v", len(out.Results), err)
	}
}

func TestFilterBound(t *testing.T) {
	args, _ := json.Marshal(Input{Filter: strings.Repeat(" ", MaxFilterBytes) + ".", Input: 1})
	if _, err := call(t, string(args)); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("err = %v, want the filter bound", err)
	}
}

func TestPosition(t *testing.T) {
	for _, tt := range []struct {
		src       string
		off       int
		line, col int
	}{
		{"abc", 0, 1, 1}, {"abc", 3, 1, 4}, {"a\nbc", 3, 2, 2}, {"é.x", 3, 1, 3}, {"x", 99, 1, 2}, {"x", -5, 1, 1},
	} {
		if l, c := position(tt.src, tt.off); l != tt.line || c != tt.col {
			t.Errorf("position(%q, %d) = %d:%d, want %d:%d", tt.src, tt.off, l, c, tt.line, tt.col)
		}
	}
}

func BenchmarkQuery(b *testing.B) {
	h := sdk.Handle(query)
	args := []byte(`{"filter": ".items[] | select(.price > 10) | .name", "input": {"items": [{"name": "a", "price": 5}, {"name": "b", "price": 12}]}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Call(context.Background(), args); err != nil {
			b.Fatal(err)
		}
	}
}
