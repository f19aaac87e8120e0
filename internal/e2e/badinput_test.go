package e2e

import (
	"strings"
	"testing"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
)

func TestBadInputIsRefusedAndTheDaemonStaysUp(t *testing.T) {
	x := devExecutor(t)
	deep := `{"filter":".","input":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	big := `{"filter":".","input":"` + strings.Repeat("a", 1<<20) + `"}`
	cases := []struct {
		name, tool, args string
		status           airlockv1.Status
		code, field      string
		msg              string
	}{
		{"case differs", "JSON.query", `{}`, airlockv1.Status_STATUS_INVALID, "unknown_tool", "", "unknown tool"},
		{"trailing space", "json.query ", `{}`, airlockv1.Status_STATUS_INVALID, "unknown_tool", "", "exact"},
		{"homoglyph", "jsоn.query", `{}`, airlockv1.Status_STATUS_INVALID, "unknown_tool", "", "unknown tool"},
		{"empty name", "", `{}`, airlockv1.Status_STATUS_INVALID, "unknown_tool", "", "unknown tool"},
		{"schema: wrong type", "json.query", `{"filter": 42, "input": {}}`, airlockv1.Status_STATUS_INVALID, "invalid_arguments", "/filter", "filter"},
		{"schema: missing required", "json.query", `{"input": {}}`, airlockv1.Status_STATUS_INVALID, "invalid_arguments", "", "filter"},
		{"schema: unknown property", "json.query", `{"filter": ".", "input": {}, "shell": "rm -rf /"}`, airlockv1.Status_STATUS_INVALID, "invalid_arguments", "", "shell"},
		{"not JSON", "json.query", `{"filter": ".", `, airlockv1.Status_STATUS_INVALID, "invalid_json", "", ""},
		{"not an object", "json.query", `[1,2]`, airlockv1.Status_STATUS_INVALID, "", "", ""},
		{"over 1 MiB", "json.query", big, airlockv1.Status_STATUS_INVALID, "arguments_too_large", "", "MiB"},
		{"10,000 deep", "json.query", deep, airlockv1.Status_STATUS_INVALID, "arguments_too_deep", "", "deep"},
		{"jq filter that does not parse", "json.query", `{"filter": ".a | | .b", "input": {}}`, airlockv1.Status_STATUS_FAILED, "tool_error", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := submit(t, x, c.tool, c.args)
			wantStatus(t, out, c.status, c.code)
			if c.field != "" && out.GetError().GetField() != c.field {
				t.Fatalf("field: got %q, want %q (%s)", out.GetError().GetField(), c.field, out.GetError().GetMessage())
			}
			if c.msg != "" {
				mustContain(t, out.GetError().GetMessage(), c.msg)
			}
			stillServes(t, x)
		})
	}
}
