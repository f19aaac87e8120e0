package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

type echoIn struct {
	Name  string `json:"name"`
	Count int    `json:"count,omitempty"`
	Any   any    `json:"any,omitempty"`
}

type echoOut struct {
	Greeting string `json:"greeting"`
	Any      any    `json:"any,omitempty"`
}

func echo(_ context.Context, in echoIn) (echoOut, error) {
	switch in.Name {
	case "":
		return echoOut{}, Errorf("missing_name", "name is empty: give a name")
	case "plain":
		return echoOut{}, errors.New("a plain error")
	case "panic":
		panic("boom")
	case "html":
		return echoOut{Greeting: "<b>&</b>"}, nil
	}
	return echoOut{Greeting: strings.Repeat("hello "+in.Name+" ", max(in.Count, 1)), Any: in.Any}, nil
}

func call(t *testing.T, args []string, stdin string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	handlers := map[string]Handler{"demo.echo": Handle(echo), "demo.other": Handle(echo)}
	code = run(context.Background(), strings.NewReader(stdin), &out, &errb, args, handlers)
	return code, out.String(), errb.String()
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout string
		wantStderr string // substring
	}{
		{"ok", []string{"demo.echo"}, `{"name":"ann"}`, ExitOK, `{"greeting":"hello ann "}` + "\n", ""},
		{"argv0 with a directory", []string{"/bin/demo.other"}, `{"name":"bo","count":2}`, ExitOK, `{"greeting":"hello bo hello bo "}` + "\n", ""},
		{"whitespace around the value", []string{"demo.echo"}, " \n{\"name\":\"c\"}\n ", ExitOK, `{"greeting":"hello c "}` + "\n", ""},
		{"no html escaping", []string{"demo.echo"}, `{"name":"html"}`, ExitOK, `{"greeting":"<b>&</b>"}` + "\n", ""},
		{"big integer stays exact", []string{"demo.echo"}, `{"name":"n","any":{"x":123456789012345678901234567890}}`, ExitOK,
			`{"greeting":"hello n ","any":{"x":123456789012345678901234567890}}` + "\n", ""},
		{"coded error", []string{"demo.echo"}, `{"name":""}`, ExitError, "", "missing_name: name is empty: give a name\n"},
		{"plain error", []string{"demo.echo"}, `{"name":"plain"}`, ExitError, "", "a plain error\n"},
		{"panic", []string{"demo.echo"}, `{"name":"panic"}`, ExitPanic, "", "panic: boom\n"},
		{"unknown tool", []string{"demo.nope"}, `{}`, ExitUnknown, "", `unknown tool "demo.nope": this module serves demo.echo, demo.other`},
		{"no argv", nil, `{}`, ExitUnknown, "", `unknown tool ""`},
		{"case matters", []string{"Demo.Echo"}, `{}`, ExitUnknown, "", `unknown tool "Demo.Echo"`},
		{"unknown field", []string{"demo.echo"}, `{"name":"a","extra":1}`, ExitError, "", `invalid_input: arguments: unknown field "extra"`},
		{"wrong type", []string{"demo.echo"}, `{"name":5}`, ExitError, "", "invalid_input: argument name: want string, got JSON number"},
		{"not json", []string{"demo.echo"}, `{"name":`, ExitError, "", "invalid_input: arguments"},
		{"syntax error", []string{"demo.echo"}, `{"name" "a"}`, ExitError, "", "invalid_input: arguments are not valid JSON at byte"},
		{"empty stdin", []string{"demo.echo"}, "", ExitError, "", "invalid_input: no arguments on stdin"},
		{"two values", []string{"demo.echo"}, `{"name":"a"} {"name":"b"}`, ExitError, "", "invalid_input: arguments: trailing data"},
		{"trailing garbage", []string{"demo.echo"}, `{"name":"a"}]`, ExitError, "", "invalid_input: arguments: trailing data"},
		{"not an object", []string{"demo.echo"}, `[1]`, ExitError, "", "invalid_input: argument (top level): want sdk.echoIn, got JSON array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := call(t, tt.args, tt.stdin)
			if code != tt.wantCode {
				t.Errorf("exit = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if stdout != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
			}
			if tt.wantStderr == "" && stderr != "" {
				t.Errorf("stderr = %q, want none", stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
			if code != ExitOK && !strings.HasSuffix(stderr, "\n") {
				t.Errorf("stderr %q does not end with a newline", stderr)
			}
		})
	}
}

func TestInputBound(t *testing.T) {
	big := `{"name":"` + strings.Repeat("x", MaxInputBytes) + `"}`
	code, stdout, stderr := call(t, []string{"demo.echo"}, big)
	if code != ExitError || stdout != "" || !strings.Contains(stderr, "arguments exceed") {
		t.Fatalf("exit %d, stdout %q, stderr %q: want the input bound to refuse", code, stdout, stderr)
	}
	// Just under the bound is accepted.
	ok := `{"name":"` + strings.Repeat("x", MaxInputBytes-len(`{"name":""}`)) + `"}`
	if code, _, stderr := call(t, []string{"demo.echo"}, ok); code != ExitOK {
		t.Fatalf("input of exactly MaxInputBytes: exit %d, stderr %.200q", code, stderr)
	}
}

func TestStderrCapped(t *testing.T) {
	h := Handle(func(context.Context, struct{}) (struct{}, error) {
		return struct{}{}, errors.New(strings.Repeat("e", 1<<20))
	})
	var out, errb bytes.Buffer
	if code := runOne(context.Background(), h, strings.NewReader("{}"), &out, &errb); code != ExitError {
		t.Fatalf("exit %d", code)
	}
	if errb.Len() > maxStderrBytes+100 || !strings.HasSuffix(errb.String(), "(truncated)\n") {
		t.Fatalf("stderr of %d bytes not capped", errb.Len())
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestIOErrors(t *testing.T) {
	h := Handle(echo)
	var out, errb bytes.Buffer
	if code := runOne(context.Background(), h, failingReader{}, &out, &errb); code != ExitError ||
		!strings.Contains(errb.String(), "read arguments from stdin: disk on fire") {
		t.Fatalf("read error: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := runOne(context.Background(), h, strings.NewReader(`{"name":"a"}`), failingWriter{}, &errb); code != ExitError ||
		!strings.Contains(errb.String(), "internal: write result to stdout") {
		t.Fatalf("write error: exit %d, stderr %q", code, errb.String())
	}
}

func TestUnencodableResult(t *testing.T) {
	h := Handle(func(context.Context, struct{}) (float64, error) { return inf(), nil })
	var out, errb bytes.Buffer
	if code := runOne(context.Background(), h, strings.NewReader("{}"), &out, &errb); code != ExitError || out.Len() != 0 ||
		!strings.Contains(errb.String(), "internal: encode result as JSON") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

func inf() float64 { var z float64; return 1 / z }

func TestZeroHandler(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runOne(context.Background(), Handler{}, strings.NewReader("{}"), &out, &errb); code != ExitError ||
		!strings.Contains(errb.String(), "internal: tool has no handler") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	var nilFn func(context.Context, struct{}) (struct{}, error)
	if h := Handle(nilFn); h.serve != nil {
		t.Fatal("Handle(nil) should give the zero Handler")
	}
}

func TestError(t *testing.T) {
	cause := errors.New("cause")
	err := Errorf("not_found", "file %q: %w", "a.txt", cause)
	if got, want := err.Error(), `not_found: file "a.txt": cause`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, cause) {
		t.Error("errors.Is does not reach the wrapped cause")
	}
	var e *Error
	if !errors.As(fmt.Errorf("wrapped: %w", err), &e) || e.Code != "not_found" {
		t.Error("errors.As does not find the *Error")
	}
	if got := (&Error{Err: errors.New("m")}).Error(); got != "m" {
		t.Errorf("no code: %q", got)
	}
	if got := (&Error{Code: "c"}).Error(); got != "c: <nil>" {
		t.Errorf("nil Err: %q", got)
	}
}

func TestWorkspacePath(t *testing.T) {
	tests := []struct {
		rel, want, wantErr string
	}{
		{"a.txt", "/workspace/a.txt", ""},
		{"dir/sub/a.txt", "/workspace/dir/sub/a.txt", ""},
		{"./dir//a.txt", "/workspace/dir/a.txt", ""},
		{".", "/workspace", ""},
		{"dir/", "/workspace/dir", ""},
		{"..foo/a", "/workspace/..foo/a", ""},
		{"a..b", "/workspace/a..b", ""},
		{"", "", "path is empty"},
		{"/etc/passwd", "", "is absolute"},
		{"..", "", `contains ".."`},
		{"../x", "", `contains ".."`},
		{"a/../../x", "", `contains ".."`},
		{"a/..", "", `contains ".."`},
		{"a\x00b", "", "NUL byte"},
		{`a\..\b`, "", "backslash"},
	}
	for _, tt := range tests {
		got, err := WorkspacePath(tt.rel)
		if tt.wantErr != "" {
			var e *Error
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &e) || e.Code != "invalid_path" {
				t.Errorf("WorkspacePath(%q) = %q, %v; want invalid_path error containing %q", tt.rel, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("WorkspacePath(%q) = %q, %v; want %q", tt.rel, got, err, tt.want)
		}
	}
}

func TestDecodeKeepsNumbersExact(t *testing.T) {
	var v any
	if err := decode([]byte(`{"n": 9007199254740993}`), &v); err != nil {
		t.Fatal(err)
	}
	n, ok := v.(map[string]any)["n"].(json.Number)
	if !ok || n.String() != "9007199254740993" {
		t.Fatalf("got %#v, want json.Number 9007199254740993", v)
	}
}

func BenchmarkRunOne(b *testing.B) {
	h := Handle(echo)
	in := []byte(`{"name":"bench","count":3}`)
	b.ReportAllocs()
	for b.Loop() {
		if code := runOne(context.Background(), h, bytes.NewReader(in), io.Discard, io.Discard); code != ExitOK {
			b.Fatal(code)
		}
	}
}
