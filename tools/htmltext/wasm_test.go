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
	m := wasmtest.Load(t, wasmtest.BuildGo(t, "./tools/htmltext"))
	r := m.Run(t, "html.to_text", `{"html": "<h1>Hi</h1><script>x()</script><p>see <a href=\"/a\">A</a></p>"}`, "")
	want := `{"text":"Hi\nsee A","links":[{"text":"A","href":"/a"}]}` + "\n"
	if r.Exit != 0 || r.Stdout != want || r.Stderr != "" {
		t.Fatalf("got %+v, want stdout %q", r, want)
	}
	r = m.Run(t, "html.to_text", `{"html": 1}`, "")
	if r.Exit != 1 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "invalid_input: argument html: want string") {
		t.Fatalf("bad input: %+v", r)
	}
}
