package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func loadGood(t testing.TB) *Manifest {
	t.Helper()
	m, err := LoadFile("testdata/good/json_query.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// nested returns {"filter":"x","input":{"y":[[...]]}} with n arrays, so
// that the total depth is n+2.
func nested(n int) []byte {
	return []byte(`{"filter":"x","input":{"y":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`)
}

func TestValidateArgs(t *testing.T) {
	m := loadGood(t)
	big := []byte(`{"filter":"` + strings.Repeat("a", MaxArgsBytes-len(`{"filter":""}`)) + `"}`)
	if len(big) != MaxArgsBytes {
		t.Fatalf("big is %d bytes", len(big))
	}
	tooBig := append([]byte(`{"filter":"a`), big[len(`{"filter":"`):]...)
	for _, tc := range []struct {
		name, code, field, msg string
		raw                    []byte
	}{
		{name: "not json", raw: []byte(`filter=.a`), code: CodeInvalidJSON, msg: `arguments are not valid JSON: unexpected 'i' at byte 1: want "false"`},
		{name: "empty", raw: []byte(" \n"), code: CodeInvalidJSON, msg: "arguments are empty: send a JSON object, like {}"},
		{name: "truncated", raw: []byte(`{"filter":"x"`), code: CodeInvalidJSON, msg: "arguments are not valid JSON: the text ends before the value does"},
		{name: "trailing comma", raw: []byte(`{"filter":"x",}`), code: CodeInvalidJSON},
		{name: "two values", raw: []byte(`{"filter":"x"} {}`), code: CodeInvalidJSON, msg: "arguments are not valid JSON: unexpected data after the value at byte 15: send one JSON value"},
		{name: "invalid utf-8", raw: []byte("{\"filter\":\"\xff\"}"), code: CodeInvalidJSON, msg: "arguments are not valid UTF-8"},
		{name: "duplicate key", raw: []byte(`{"filter":"a","input":{"x":1,"x":2}}`), code: CodeInvalidJSON, field: "/input/x", msg: `arguments are not valid JSON: the key "x" appears twice in one object (at /input/x): send each key once`},
		{name: "leading zero", raw: []byte(`{"filter":"x","input":{"x":01}}`), code: CodeInvalidJSON, field: "/input"},
		{name: "bare point", raw: []byte(`{"filter":"x","input":{"x":1.}}`), code: CodeInvalidJSON, msg: `arguments are not valid JSON: unexpected '}' at byte 29: want a digit after the decimal point`, field: "/input/x"},
		{name: "truncated literal", raw: []byte(`{"filter":tru`), code: CodeInvalidJSON, field: "/filter", msg: "arguments are not valid JSON: the text ends before the value does"},
		{name: "control character", raw: []byte("{\"filter\":\"a\tb\"}"), code: CodeInvalidJSON, field: "/filter", msg: `arguments are not valid JSON: control character '\t' in a string at byte 12: escape it`},
		{name: "bad escape", raw: []byte(`{"filter":"\x"}`), code: CodeInvalidJSON, field: "/filter"},
		{name: "unclosed string", raw: []byte(`{"filter":"abc`), code: CodeInvalidJSON, field: "/filter", msg: "arguments are not valid JSON: a string is not closed"},
		{name: "single quotes", raw: []byte(`{'filter':'x'}`), code: CodeInvalidJSON, msg: `arguments are not valid JSON: unexpected '\'' at byte 1: want a string key`},
		{name: "missing colon", raw: []byte(`{"filter" "x"}`), code: CodeInvalidJSON, field: "/filter"},
		{name: "missing comma", raw: []byte(`{"filter":"x" "input":{}}`), code: CodeInvalidJSON, msg: `arguments are not valid JSON: unexpected '"' at byte 14: want ',' or '}'`},
		{name: "top-level array", raw: []byte(`[{"filter":"x"}]`), code: CodeInvalidArguments, msg: "arguments must be a JSON object, not an array"},
		{name: "top-level string", raw: []byte(`"x"`), code: CodeInvalidArguments, msg: "arguments must be a JSON object, not a string"},
		{name: "top-level null", raw: []byte(`null`), code: CodeInvalidArguments, msg: "arguments must be a JSON object, not null"},
		{name: "missing required", raw: []byte(`{}`), code: CodeInvalidArguments, field: "/filter", msg: `argument /filter is required (missing property "filter")`},
		{name: "wrong type", raw: []byte(`{"filter":"x","input":{"x":"s"}}`), code: CodeInvalidArguments, field: "/input/x", msg: "argument /input/x: got string, want number"},
		{name: "wrong type top", raw: []byte(`{"filter":1}`), code: CodeInvalidArguments, field: "/filter", msg: "argument /filter: got number, want string"},
		{name: "unknown property", raw: []byte(`{"filter":"x","extra":1}`), code: CodeInvalidArguments, field: "/extra", msg: `argument /extra is not allowed: the schema has no property "extra" here`},
		{name: "format asserted", raw: []byte(`{"filter":"x","input":{"when":"yesterday"}}`), code: CodeInvalidArguments, field: "/input/when"},
		{name: "huge exponent", raw: []byte(`{"filter":"x","input":{"x":1e-999999999}}`), code: CodeInvalidArguments, field: "/input/x"},
		{name: "long number", raw: []byte(`{"filter":"x","input":{"x":` + strings.Repeat("1", 101) + `}}`), code: CodeInvalidArguments, field: "/input/x"},
		{name: "exactly the limit", raw: big, code: CodeInvalidArguments, field: "/filter"},
		{name: "1 MiB + 1 byte", raw: tooBig, code: CodeArgumentsTooLarge, msg: "arguments are 1048577 bytes, over the limit of 1048576 bytes (1MiB)"},
		{name: "depth 65", raw: nested(63), code: CodeArgumentsTooDeep, field: "/input/y" + strings.Repeat("/0", 62), msg: fmt.Sprintf("arguments nest deeper than 64 levels (at byte %d): flatten the data", len(`{"filter":"x","input":{"y":`)+62)},
		{name: "10,000 deep", raw: []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)), code: CodeInvalidArguments, msg: "arguments must be a JSON object, not an array"},
		{name: "10,000 deep objects", raw: []byte(strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)), code: CodeArgumentsTooDeep, field: strings.Repeat("/a", 64)},
		{name: "10,000 deep unterminated", raw: []byte(`{"filter":` + strings.Repeat("[", 10000)), code: CodeArgumentsTooDeep, field: "/filter" + strings.Repeat("/0", 63)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := m.ValidateArgs(tc.raw)
			if err == nil {
				t.Fatalf("accepted: %v", v)
			}
			if v != nil {
				t.Errorf("value %v returned with an error", v)
			}
			var ae *ArgsError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is %T, want *ArgsError", err, err)
			}
			if ae.Code != tc.code || ae.Field != tc.field {
				t.Errorf("code %q field %q (%s), want code %q field %q", ae.Code, ae.Field, ae.Message, tc.code, tc.field)
			}
			if tc.msg != "" && ae.Message != tc.msg {
				t.Errorf("message %q\nwant    %q", ae.Message, tc.msg)
			}
			if ae.Error() != ae.Code+": "+ae.Message {
				t.Errorf("Error() = %q", ae.Error())
			}
		})
	}
}

func TestValidateArgsAccepts(t *testing.T) {
	m := loadGood(t)
	v, err := m.ValidateArgs([]byte(` {"input": {"x": 1.50, "y": [1, {"z": null}], "when": "2024-05-01T10:00:00Z"}, "filter": ".a"} `))
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(map[string]any)
	if obj["filter"] != ".a" {
		t.Errorf("filter %v", obj["filter"])
	}
	in := obj["input"].(map[string]any)
	if in["x"] != json.Number("1.50") {
		t.Errorf("number %#v, want json.Number(\"1.50\")", in["x"])
	}
	if in["when"] != "2024-05-01T10:00:00Z" {
		t.Errorf("when %#v", in["when"])
	}
	if y := in["y"].([]any); len(y) != 2 || y[0] != json.Number("1") || y[1].(map[string]any)["z"] != nil {
		t.Errorf("y %#v", in["y"])
	}
	// Escapes decode as encoding/json decodes them.
	v, err = m.ValidateArgs([]byte(`{"filter":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x\udc00","input":{"e":[],"o":{},"t":true,"f":false,"n":-0.5E+3}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v.(map[string]any)["filter"], "\"\\/\b\f\n\r\té😀\ufffdx\ufffd"; got != want {
		t.Errorf("escapes decode to %q, want %q", got, want)
	}
	if got, want := string(Canonical(v)), "{\"filter\":\"\\\"\\\\/\\b\\f\\n\\r\\té😀\ufffdx\ufffd\",\"input\":{\"e\":[],\"f\":false,\"n\":-0.5E+3,\"o\":{},\"t\":true}}"; got != want {
		t.Errorf("canonical %s, want %s", got, want)
	}
	// Depth 64 is accepted, 65 is not (TestValidateArgs).
	if _, err := m.ValidateArgs(nested(62)); err != nil {
		t.Errorf("depth 64: %v", err)
	}
}

// TestDeepArgsCostNothing checks that refusing a 10,000-deep text does not
// build anything: the parser stops at level 65.
func TestDeepArgsCostNothing(t *testing.T) {
	m := loadGood(t)
	cost := func(depth int) float64 {
		raw := []byte(strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth))
		return testing.AllocsPerRun(10, func() {
			if _, err := m.ValidateArgs(raw); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// Refusing 10,000 levels costs what refusing 100 does: the parser
	// stops at level 65 either way. (Building 10,000 levels would cost tens
	// of thousands of allocations.)
	if c100, c10k := cost(100), cost(10000); c10k > c100+20 {
		t.Errorf("refusing 10,000 levels costs %v allocations, 100 levels %v", c10k, c100)
	}
}

func TestValidateArgsUnloaded(t *testing.T) {
	var m Manifest
	_, err := m.ValidateArgs([]byte(`{}`))
	var ae *ArgsError
	if !errors.As(err, &ae) || ae.Code != CodeInvalidArguments {
		t.Errorf("manifest without schemas: %v", err)
	}
	if _, err := m.ValidateOutput([]byte(`{}`)); !errors.As(err, &ae) || ae.Code != CodeInvalidOutput {
		t.Errorf("manifest without schemas: %v", err)
	}
}

func TestValidateOutput(t *testing.T) {
	m := loadGood(t) // limits.output is 512KiB
	v, err := m.ValidateOutput([]byte(`{"results":[1,"a",{"b":2.0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Canonical(v), []byte(`{"results":[1,"a",{"b":2.0}]}`)) {
		t.Errorf("output %s", Canonical(v))
	}
	for _, tc := range []struct {
		name, code, field string
		raw               []byte
	}{
		{"too large", CodeOutputTooLarge, "", []byte(`{"results":["` + strings.Repeat("x", 512*1024) + `"]}`)},
		{"not json", CodeInvalidOutput, "", []byte("hello world\n")},
		{"too deep", CodeInvalidOutput, "/results" + strings.Repeat("/0", 63), []byte(`{"results":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`)},
		{"schema", CodeInvalidOutput, "/results", []byte(`{"result":[]}`)},
		{"wrong type", CodeInvalidOutput, "/results", []byte(`{"results":{}}`)},
		{"not an object", CodeInvalidOutput, "", []byte(`[1]`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.ValidateOutput(tc.raw)
			var ae *ArgsError
			if !errors.As(err, &ae) || ae.Code != tc.code || ae.Field != tc.field {
				t.Errorf("got %#v, want code %q field %q", err, tc.code, tc.field)
			}
			if ae != nil && !strings.Contains(ae.Message, "output") {
				t.Errorf("message %q does not say it is about the output", ae.Message)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	m, err := LoadFile(writeTool(t, t.TempDir(), "c.yaml", "c.tool", ""))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{
		`{"b":1.50,"a":{"d":[1e2,true,{"z":null,"y":"<&>\u00e9\n\u0001\/"}],"c":"x"},"é":-0}`,
		"{ \"é\" : -0,\n\t\"a\": {\"c\": \"x\", \"d\": [1e2, true, {\"y\": \"<&>é\\n\\u0001/\", \"z\": null}]}, \"b\": 1.50 }",
	}
	want := "{\"a\":{\"c\":\"x\",\"d\":[1e2,true,{\"y\":\"<&>é\\n\\u0001/\",\"z\":null}]},\"b\":1.50,\"é\":-0}"
	var digests []string
	for _, s := range texts {
		v, err := m.ValidateArgs([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(Canonical(v)); got != want {
			t.Errorf("Canonical(%s)\n= %s\nwant %s", s, got, want)
		}
		digests = append(digests, ArgsDigest(v))
	}
	if digests[0] != digests[1] || digests[0] != sha([]byte(want)) {
		t.Errorf("digests %v, want %s", digests, sha([]byte(want)))
	}
	// Numbers stay as written: 1.5 and 1.50 are different arguments.
	if ArgsDigest(map[string]any{"x": json.Number("1.5")}) == ArgsDigest(map[string]any{"x": json.Number("1.50")}) {
		t.Error("numbers normalized")
	}
	// Other Go values go through encoding/json, canonicalized.
	type pair struct {
		Z int    `json:"z"`
		A string `json:"a"`
	}
	if got := string(Canonical([]any{pair{1, "<"}, float64(2.5), nil})); got != `[{"a":"<","z":1},2.5,null]` {
		t.Errorf("Canonical of Go values = %s", got)
	}
}

func FuzzValidateArgs(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"filter":".a","input":{"x":1}}`, `[]`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"a":2}`,
		`{"x":"\ud800"}`, `{"n":-0.0e+5}`, strings.Repeat("[", 100), `{"s":"\u0000"}`, "{\"k\":\"\xff\"}", ``, `{} x`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	permissive, err := LoadFile(writeTool(f, dir, "p.yaml", "p.tool", ""))
	if err != nil {
		f.Fatal(err)
	}
	strict := loadGood(f)
	codes := []string{CodeArgumentsTooLarge, CodeInvalidJSON, CodeArgumentsTooDeep, CodeInvalidArguments}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, m := range []*Manifest{permissive, strict} {
			v, err := m.ValidateArgs(raw)
			if err != nil {
				var ae *ArgsError
				if !errors.As(err, &ae) || !slices.Contains(codes, ae.Code) {
					t.Fatalf("error %v", err)
				}
				continue
			}
			// What was accepted has a canonical form that is accepted again
			// and is a fixed point.
			c := Canonical(v)
			v2, err := m.ValidateArgs(c)
			if err != nil {
				t.Fatalf("canonical form %s of %q refused: %v", c, raw, err)
			}
			if c2 := Canonical(v2); !bytes.Equal(c, c2) {
				t.Fatalf("canonical form is not stable: %s then %s", c, c2)
			}
			if !json.Valid(c) {
				t.Fatalf("canonical form %s is not JSON", c)
			}
			// What is accepted, encoding/json reads the same way.
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var std any
			if err := dec.Decode(&std); err != nil || !reflect.DeepEqual(std, v) {
				t.Fatalf("%q: encoding/json reads %#v (%v), the parser %#v", raw, std, err, v)
			}
		}
		// What encoding/json refuses, the parser refuses.
		if !json.Valid(raw) {
			if _, err := permissive.ValidateArgs(raw); err == nil {
				t.Fatalf("%q is not JSON but was accepted", raw)
			}
		}
	})
}

// typicalArgs is a 200-byte argument object.
var typicalArgs = []byte(`{"filter":".items[] | select(.price > 10) | {name, price}","input":{"x":12.5,"when":"2024-05-01T10:00:00Z","items":[{"name":"a","price":11},{"name":"b","price":3}],"note":"typical call"}}`)

func BenchmarkValidateArgs(b *testing.B) {
	m := loadGood(b)
	if _, err := m.ValidateArgs(typicalArgs); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(typicalArgs)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.ValidateArgs(typicalArgs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	v, err := loadGood(b).ValidateArgs(typicalArgs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = ArgsDigest(v)
	}
}

func ExampleManifest_ValidateArgs() {
	m, err := LoadFile("testdata/good/json_query.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = m.ValidateArgs([]byte(`{"filter": 42}`))
	var ae *ArgsError
	if errors.As(err, &ae) {
		fmt.Println(ae.Code, ae.Field)
		fmt.Println(ae.Message)
	}
	// Output:
	// invalid_arguments /filter
	// argument /filter: got number, want string
}
