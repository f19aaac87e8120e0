package manifest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Bounds of the arguments of one call, checked before anything parses them.
const (
	// MaxArgsBytes is the largest arguments text accepted (1 MiB).
	MaxArgsBytes = 1 << 20
	// MaxArgsDepth is the deepest nesting of arrays and objects accepted, in
	// arguments and in output.
	MaxArgsDepth = 64
	// maxNumberLen and maxExponent bound a JSON number literal, so that
	// schema keywords that compare numbers exactly (with math/big) cannot be
	// made to compute a 10^1000000000.
	maxNumberLen = 100
	maxExponent  = 400
)

// Codes of ArgsError.
const (
	CodeArgumentsTooLarge = "arguments_too_large"
	CodeInvalidJSON       = "invalid_json"
	CodeArgumentsTooDeep  = "arguments_too_deep"
	CodeInvalidArguments  = "invalid_arguments"
	CodeOutputTooLarge    = "output_too_large"
	CodeInvalidOutput     = "invalid_output"
)

// ArgsError says why arguments (or a tool's output) were refused.
type ArgsError struct {
	// Code is one of the Code* constants.
	Code string
	// Field is the JSON pointer of the first failing location ("/filter"),
	// or "" for the whole value.
	Field string
	// Message names the location and says what was expected.
	Message string
}

// Error returns the code and the message.
func (e *ArgsError) Error() string { return e.Code + ": " + e.Message }

// bounds describes one kind of JSON value that ValidateArgs or
// ValidateOutput accepts.
type bounds struct {
	noun      string // "arguments" or "output"
	maxBytes  int64
	object    bool // the top level must be an object
	tooLarge  string
	invalid   string // invalid JSON
	tooDeep   string
	badSchema string
}

var argsBounds = bounds{
	noun: "arguments", maxBytes: MaxArgsBytes, object: true,
	tooLarge: CodeArgumentsTooLarge, invalid: CodeInvalidJSON, tooDeep: CodeArgumentsTooDeep, badSchema: CodeInvalidArguments,
}

// ValidateArgs checks the arguments of a call, the executor's step 3. The
// size is checked before anything is parsed (at most MaxArgsBytes), the
// JSON is parsed without recursion and refused as soon as it nests deeper
// than MaxArgsDepth, the top level must be an object, numbers stay
// json.Number, and the value is validated against the input schema. A
// duplicate key in an object is refused: a tool's parser could read the
// other copy than the one policy saw.
//
// The error is always an *ArgsError.
func (m *Manifest) ValidateArgs(raw []byte) (any, error) {
	v, aerr := decodeBounded(raw, argsBounds)
	if aerr != nil {
		return nil, aerr
	}
	if m.inputSchema == nil {
		return nil, &ArgsError{Code: CodeInvalidArguments, Message: "the tool's input schema is not compiled: load the manifest with manifest.LoadFile or LoadDir"}
	}
	if err := m.inputSchema.Validate(v); err != nil {
		return nil, schemaError(err, argsBounds)
	}
	return v, nil
}

// ValidateOutput checks what a tool returned, the executor's step 8, with
// the same bounds as ValidateArgs: at most the manifest's limits.output
// bytes (checked first), nesting at most MaxArgsDepth, valid JSON without
// duplicate keys, and the output schema. The top level may be any JSON
// value the output schema accepts.
//
// The error is always an *ArgsError, with code "output_too_large" or
// "invalid_output".
func (m *Manifest) ValidateOutput(raw []byte) (any, error) {
	b := bounds{
		noun: "output", maxBytes: int64(m.Spec.Limits.Output),
		tooLarge: CodeOutputTooLarge, invalid: CodeInvalidOutput, tooDeep: CodeInvalidOutput, badSchema: CodeInvalidOutput,
	}
	if b.maxBytes <= 0 {
		b.maxBytes = int64(DefaultLimits().Output)
	}
	v, aerr := decodeBounded(raw, b)
	if aerr != nil {
		return nil, aerr
	}
	if m.outputSchema == nil {
		return nil, &ArgsError{Code: CodeInvalidOutput, Message: "the tool's output schema is not compiled: load the manifest with manifest.LoadFile or LoadDir"}
	}
	if err := m.outputSchema.Validate(v); err != nil {
		return nil, schemaError(err, b)
	}
	return v, nil
}

// pointer is the JSON pointer of the value being read at the top of stack.
func pointer(stack []frame) string {
	var sb strings.Builder
	for _, f := range stack {
		if f.isObj {
			if !f.hasKey {
				continue
			}
			sb.WriteByte('/')
			sb.WriteString(escapePointer(f.key))
		} else {
			// The element being read is the next one to be appended.
			sb.WriteByte('/')
			sb.WriteString(strconv.Itoa(len(f.arr)))
		}
	}
	return sb.String()
}

func pointerOrRoot(p string) string {
	if p == "" {
		return "the top level"
	}
	return p
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func escapePointer(s string) string { return pointerEscaper.Replace(s) }

// numberInRange bounds a number literal's length and exponent.
func numberInRange(s string) bool {
	if len(s) > maxNumberLen {
		return false
	}
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return true
	}
	exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
	return err == nil && exp >= -maxExponent && exp <= maxExponent
}

var printer = message.NewPrinter(language.English)

// schemaError turns a schema validation failure into an ArgsError naming
// the first failing location.
func schemaError(err error, b bounds) *ArgsError {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &ArgsError{Code: b.badSchema, Message: fmt.Sprintf("%s could not be validated: %v", b.noun, err)}
	}
	ve, branches := firstFailure(ve)
	var sb strings.Builder
	for _, tok := range ve.InstanceLocation {
		sb.WriteByte('/')
		sb.WriteString(escapePointer(tok))
	}
	at := sb.String()
	what := strings.TrimSuffix(b.noun, "s") // "argument" or "output"
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		if len(k.Missing) > 0 {
			field := at + "/" + escapePointer(k.Missing[0])
			return &ArgsError{Code: b.badSchema, Field: field, Message: fmt.Sprintf("%s %s is required (missing property %q)", what, field, k.Missing[0])}
		}
	case *kind.AdditionalProperties:
		if len(k.Properties) > 0 {
			field := at + "/" + escapePointer(k.Properties[0])
			return &ArgsError{Code: b.badSchema, Field: field, Message: fmt.Sprintf("%s %s is not allowed: the schema has no property %q here", what, field, k.Properties[0])}
		}
	}
	msg := ve.ErrorKind.LocalizedString(printer) + branches
	if at == "" {
		return &ArgsError{Code: b.badSchema, Message: fmt.Sprintf("%s: %s", b.noun, msg)}
	}
	return &ArgsError{Code: b.badSchema, Field: at, Message: fmt.Sprintf("%s %s: %s", what, at, msg)}
}

// firstFailure follows the first cause of a validation error down to the
// failure to report. At an anyOf or oneOf it stops, since no branch is more
// to blame than another, and describes why each branch failed.
func firstFailure(ve *jsonschema.ValidationError) (*jsonschema.ValidationError, string) {
	for len(ve.Causes) > 0 {
		switch ve.ErrorKind.(type) {
		case *kind.AnyOf, *kind.OneOf:
			msgs := make([]string, 0, len(ve.Causes))
			for _, c := range ve.Causes {
				for len(c.Causes) > 0 {
					c = c.Causes[0]
				}
				msgs = append(msgs, c.ErrorKind.LocalizedString(printer))
			}
			return ve, " (" + strings.Join(slices.Compact(msgs), "; or ") + ")"
		}
		ve = ve.Causes[0]
	}
	return ve, ""
}

// schemaProblem describes why a schema does not compile, without the
// library's internal resource names.
func schemaProblem(err error) string {
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var ve *jsonschema.ValidationError
		if errors.As(sve.Err, &ve) {
			leaf, branches := firstFailure(ve)
			at := "/" + strings.Join(leaf.InstanceLocation, "/")
			return fmt.Sprintf("at %s: %s%s", at, leaf.ErrorKind.LocalizedString(printer), branches)
		}
	}
	return strings.ReplaceAll(oneLine(err.Error()), schemaURLBase, "")
}
