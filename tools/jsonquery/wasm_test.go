//go:build !wasip1

package main

import (
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/tools/internal/wasmtest"
)

// TestWasm builds the module for wasip1 and runs it under plain wazero to
// prove it honours the Tool ABI.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 module")
	}
	m := wasmtest.Load(t, wasmtest.BuildGo(t, "./tools/jsonquery"))

	r := m.Run(t, "json.query", `{"filter": ".items[] | select(.price > 10) | .name", "input": {"items": [{"name": "a", "price": 5}, {"name": "b", "price": 12}]}}`, "")
	if r.Exit != 0 || r.Stdout != `{"results":["b"]}`+"\n" || r.Stderr != "" {
		t.Fatalf("ok call: %+v", r)
	}
	// The guest environment stays invisible even to $ENV.
	r = m.Run(t, "json.query", `{"filter": "[$ENV, env]", "input": null}`, "")
	if r.Exit != 0 || r.Stdout != `{"results":[[{},{}]]}`+"\n" {
		t.Fatalf("env call: %+v", r)
	}
	r = m.Run(t, "json.query", `{"filter": ".a | }", "input": {}}`, "")
	if r.Exit != 1 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "bad_filter: filter does not parse at line 1, column 6") {
		t.Fatalf("parse error: %+v", r)
	}
	r = m.Run(t, "json.query", `not json`, "")
	if r.Exit != 1 || !strings.HasPrefix(r.Stderr, "invalid_input: arguments are not valid JSON") {
		t.Fatalf("bad input: %+v", r)
	}
}
