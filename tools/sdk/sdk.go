// Package sdk turns a typed Go function into an airlock tool.
//
// # Tool ABI v1, command form
//
// A tool is a WASI preview1 module (build it with
// GOOS=wasip1 GOARCH=wasm go build). For every call the executor starts a
// fresh instance and:
//
//   - writes the call's arguments, already validated against the tool's input
//     JSON Schema, as one JSON value on stdin;
//   - sets argv[0] to the tool's name (for example "workspace.read"), so one
//     module can serve several tools; there is no other per-call data in the
//     arguments or the environment;
//   - mounts the task's workspace at /workspace when the manifest grants it;
//     there is no clock, network or environment unless granted.
//
// The tool answers with ONE JSON value on stdout and exit status 0. On
// failure it writes a human message to stderr and exits non-zero; the
// executor turns the (capped, redacted) stderr into the error the planner
// sees.
//
// This package implements that contract. A tool author writes
//
//	func main() { sdk.Run(reverse) }
//
// for a module with one tool, or
//
//	func main() {
//		sdk.Main(map[string]sdk.Handler{
//			"kv.get": sdk.Handle(get),
//			"kv.put": sdk.Handle(put),
//		})
//	}
//
// for a module serving several tools. Input is read from stdin (at most
// MaxInputBytes), decoded into In with unknown fields rejected and numbers
// kept exact (an `any` field holds json.Number, not float64), the function
// is called, and its result is encoded to stdout. Exit statuses:
//
//	0   success: stdout holds the result
//	1   the function returned an error, or the input did not decode
//	2   the function panicked ("panic: ..." on stderr)
//	64  argv[0] names no tool of this module
//
// An error of type *Error is written to stderr as "code: message" so that
// planners can branch on the code; any other error is written as its message.
package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Workspace is where the executor mounts the task's workspace in the guest.
const Workspace = "/workspace"

// MaxInputBytes bounds the JSON read from stdin. The executor caps arguments
// at 1 MiB, so a larger input means something is wrong.
const MaxInputBytes = 4 << 20

// maxStderrBytes bounds the error message written to stderr.
const maxStderrBytes = 16 << 10

// Exit statuses of a tool.
const (
	ExitOK      = 0  // success; stdout holds the result
	ExitError   = 1  // tool error; stderr holds the message
	ExitPanic   = 2  // the handler panicked
	ExitUnknown = 64 // argv[0] names no tool of this module (EX_USAGE)
)

// Error codes used by the SDK itself. Tools may use any code of their own.
const (
	CodeInvalidInput = "invalid_input"
	CodeInternal     = "internal"
)

// Error is a tool error with a machine-readable code. It is written to
// stderr as "code: message".
type Error struct {
	// Code is a short snake_case identifier such as "not_found".
	Code string
	// Err carries the message and any wrapped cause.
	Err error
}

// Errorf returns an *Error with the given code; format and args work as in
// fmt.Errorf, so %w wraps a cause.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// Error returns "code: message".
func (e *Error) Error() string {
	msg := "<nil>"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Code == "" {
		return msg
	}
	return e.Code + ": " + msg
}

// Unwrap returns the wrapped cause.
func (e *Error) Unwrap() error { return e.Err }

// Handler is one tool of a module, made by Handle. The zero Handler is not
// usable: Main reports it as an internal error.
type Handler struct {
	serve func(ctx context.Context, input []byte) ([]byte, error)
}

// Handle adapts a typed function to a Handler. See the package doc for how
// input is decoded and output encoded.
func Handle[In, Out any](fn func(ctx context.Context, in In) (Out, error)) Handler {
	if fn == nil {
		return Handler{}
	}
	return Handler{serve: func(ctx context.Context, input []byte) ([]byte, error) {
		var in In
		if err := decode(input, &in); err != nil {
			return nil, err
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		return encode(out)
	}}
}

// Run runs fn as the only tool of the module, whatever argv[0] says, and
// exits the process. It never returns.
func Run[In, Out any](fn func(ctx context.Context, in In) (Out, error)) {
	os.Exit(runOne(context.Background(), Handle(fn), os.Stdin, os.Stdout, os.Stderr))
}

// Main dispatches on filepath.Base(os.Args[0]) to one of handlers and exits
// the process. An unknown name exits 64 with a message listing the known
// tools. It never returns.
func Main(handlers map[string]Handler) {
	os.Exit(run(context.Background(), os.Stdin, os.Stdout, os.Stderr, os.Args, handlers))
}

// run is Main without the process: it returns the exit status.
func run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, args []string, handlers map[string]Handler) int {
	name := ""
	if len(args) > 0 {
		name = filepath.Base(args[0])
	}
	h, ok := handlers[name]
	if !ok {
		known := make([]string, 0, len(handlers))
		for k := range handlers {
			known = append(known, k)
		}
		sort.Strings(known)
		writeErr(stderr, fmt.Errorf("unknown tool %q: this module serves %s; argv[0] must be the tool name",
			name, strings.Join(known, ", ")))
		return ExitUnknown
	}
	return runOne(ctx, h, stdin, stdout, stderr)
}

// Call runs h on one call's input exactly as the module does, without the
// process: it returns what the tool would write on stdout, or the error whose
// message it would write on stderr. A panic in the handler is recovered and
// returned as an error "panic: ...". Use it to test a tool natively.
func (h Handler) Call(ctx context.Context, input []byte) (out []byte, err error) {
	if h.serve == nil {
		return nil, Errorf(CodeInternal, "tool has no handler: build it with sdk.Handle")
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &panicError{value: r}
		}
	}()
	return h.serve(ctx, input)
}

// panicError is a recovered panic of a handler.
type panicError struct{ value any }

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// runOne runs one handler on one call and returns the exit status.
func runOne(ctx context.Context, h Handler, stdin io.Reader, stdout, stderr io.Writer) int {
	input, err := readInput(stdin)
	if err != nil {
		writeErr(stderr, err)
		return ExitError
	}
	out, err := h.Call(ctx, input)
	if err != nil {
		writeErr(stderr, err)
		var pe *panicError
		if errors.As(err, &pe) {
			return ExitPanic
		}
		return ExitError
	}
	if _, err := stdout.Write(out); err != nil {
		writeErr(stderr, Errorf(CodeInternal, "write result to stdout: %w", err))
		return ExitError
	}
	return ExitOK
}

// readInput reads all of stdin, at most MaxInputBytes.
func readInput(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInputBytes+1))
	if err != nil {
		return nil, Errorf(CodeInvalidInput, "read arguments from stdin: %w", err)
	}
	if len(data) > MaxInputBytes {
		return nil, Errorf(CodeInvalidInput, "arguments exceed %d bytes: send smaller arguments", MaxInputBytes)
	}
	return data, nil
}

// decode parses exactly one JSON value into v, rejecting unknown fields and
// trailing data, and keeping numbers in `any` exact as json.Number.
func decode(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return Errorf(CodeInvalidInput, "no arguments on stdin: the executor sends the arguments as one JSON value")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return Errorf(CodeInvalidInput, "arguments are not valid JSON at byte %d: %w", syn.Offset, err)
		case errors.As(err, &typ):
			field := typ.Field
			if field == "" {
				field = "(top level)"
			}
			return Errorf(CodeInvalidInput, "argument %s: want %s, got JSON %s", field, typ.Type, typ.Value)
		default:
			// Unknown fields arrive as a plain error: `json: unknown field "x"`.
			return Errorf(CodeInvalidInput, "arguments: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return Errorf(CodeInvalidInput, "arguments: trailing data after the JSON value: %w", err)
		}
		return Errorf(CodeInvalidInput, "arguments: trailing data %v after the JSON value: send exactly one JSON value", tok)
	}
	return nil
}

// encode marshals v without HTML escaping, as one line.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, Errorf(CodeInternal, "encode result as JSON: %w", err)
	}
	return buf.Bytes(), nil
}

// writeErr writes err's message to w, capped, with a trailing newline.
func writeErr(w io.Writer, err error) {
	msg := err.Error()
	if len(msg) > maxStderrBytes {
		msg = msg[:maxStderrBytes] + "... (truncated)"
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	_, _ = io.WriteString(w, msg)
}

// WorkspacePath returns the guest path of rel inside the task workspace:
// Workspace joined with rel, cleaned. It rejects an empty path, an absolute
// path, a NUL byte, a backslash and any ".." element, with an *Error of code
// "invalid_path". rel "." names the workspace itself.
func WorkspacePath(rel string) (string, error) {
	switch {
	case rel == "":
		return "", Errorf("invalid_path", "path is empty: give a path relative to the workspace, e.g. \"notes/todo.txt\"")
	case strings.ContainsRune(rel, 0):
		return "", Errorf("invalid_path", "path %q contains a NUL byte", rel)
	case strings.ContainsRune(rel, '\\'):
		return "", Errorf("invalid_path", "path %q contains a backslash: separate directories with \"/\"", rel)
	case strings.HasPrefix(rel, "/"):
		return "", Errorf("invalid_path", "path %q is absolute: give a path relative to the workspace, without a leading \"/\"", rel)
	}
	for _, elem := range strings.Split(rel, "/") {
		if elem == ".." {
			return "", Errorf("invalid_path", "path %q contains \"..\": paths must stay inside the workspace", rel)
		}
	}
	return path.Join(Workspace, rel), nil
}
