package sdk_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/airlock-dev/airlock/tools/sdk"
)

// SlugIn is the input of the text.slug example tool, decoded from stdin.
type SlugIn struct {
	Text string `json:"text"`
	Max  int    `json:"max,omitempty"`
}

// SlugOut is its result, encoded to stdout.
type SlugOut struct {
	Slug string `json:"slug"`
}

// slug is the whole tool: a typed function. Errors made with sdk.Errorf
// reach the planner as "code: message".
func slug(_ context.Context, in SlugIn) (SlugOut, error) {
	if in.Max < 0 {
		return SlugOut{}, sdk.Errorf("invalid_max", "max is %d: give a positive length or omit it", in.Max)
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(in.Text) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimSuffix(b.String(), "-")
	if in.Max > 0 && len(s) > in.Max {
		s = strings.TrimSuffix(s[:in.Max], "-")
	}
	return SlugOut{Slug: s}, nil
}

// A tool author writes a typed function; the module's main is one line,
//
//	func main() { sdk.Run(slug) }
//
// or, to serve several tools from one module,
//
//	func main() { sdk.Main(map[string]sdk.Handler{"text.slug": sdk.Handle(slug)}) }
//
// and is built with GOOS=wasip1 GOARCH=wasm go build. Handler.Call runs the
// same decoding, call and encoding natively, which is how the tool is tested.
func Example() {
	h := sdk.Handle(slug)
	ctx := context.Background()

	out, err := h.Call(ctx, []byte(`{"text": "Hello, Wasm World!", "max": 16}`))
	fmt.Printf("stdout: %s", out)

	_, err = h.Call(ctx, []byte(`{"text": "x", "max": -1}`))
	fmt.Println("stderr:", err)

	_, err = h.Call(ctx, []byte(`{"text": "x", "lang": "en"}`))
	fmt.Println("stderr:", err)
	// Output:
	// stdout: {"slug":"hello-wasm-world"}
	// stderr: invalid_max: max is -1: give a positive length or omit it
	// stderr: invalid_input: arguments: unknown field "lang"
}
