// Command wcplugin is text.wc (tools/textwc, written in C for WASM) as a
// native plugin tool (tools/sdk/plugin), for the plugin benchmarks: the
// same input, output and counting rules, so a WASM call and a plugin call
// do the same work.
package main

import (
	"context"
	"strings"
	"unicode"

	"github.com/airlock-dev/airlock/tools/sdk/plugin"
)

// In is text.wc's input.
type In struct {
	Text string `json:"text"`
}

// Out is text.wc's output: bytes in UTF-8, words as runs of
// non-white-space (unicode.IsSpace), lines as "\n" characters.
type Out struct {
	Bytes int `json:"bytes"`
	Words int `json:"words"`
	Lines int `json:"lines"`
}

func count(_ context.Context, in In) (Out, error) {
	return Out{Bytes: len(in.Text), Words: len(strings.FieldsFunc(in.Text, unicode.IsSpace)), Lines: strings.Count(in.Text, "\n")}, nil
}

func main() { plugin.Main(count) }
