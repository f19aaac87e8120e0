package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// MaxManifestBytes bounds the size of one manifest file.
const MaxManifestBytes = 1 << 20

// maxFlowDepth bounds the nesting of YAML flow collections ([ and {),
// checked before parsing: the YAML parser recurses and slows down
// superlinearly with depth.
const maxFlowDepth = 100

// maxSchemaDepth bounds the nesting of a JSON Schema written in a manifest.
const maxSchemaDepth = 64

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	byteSizeType   = reflect.TypeFor[ByteSize]()
	durationType   = reflect.TypeFor[Duration]()
)

// pos is a 1-based line and column in a manifest file.
type pos struct{ line, col int }

// yamlDecoder decodes one manifest document from its YAML syntax tree. It is
// strict (unknown keys, duplicate keys, wrong types, anchors, aliases and
// tags are problems) and, unlike a plain decoder, it does not stop at the
// first problem: it reports each one with its line and goes on. It also
// remembers where every key is, so that later checks can point at the line
// of the offending key.
type yamlDecoder struct {
	file     string
	problems Problems
	// at maps a field path ("spec.limits.memory", "spec.rules[1]") to the
	// position of its key (or of the list item).
	at map[string]pos
	// bad holds the paths that already have a structural problem, so that
	// the checks after decoding do not report them twice.
	bad map[string]bool
}

func newYAMLDecoder(file string) *yamlDecoder {
	return &yamlDecoder{file: file, at: map[string]pos{}, bad: map[string]bool{}}
}

func nodePos(n ast.Node) pos {
	if n == nil {
		return pos{}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return pos{}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

func (d *yamlDecoder) problem(p pos, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...)})
}

// structural records a decoding problem at path.
func (d *yamlDecoder) structural(path string, n ast.Node, format string, args ...any) {
	d.bad[path] = true
	d.problem(nodePos(n), format, args...)
}

// lineOf returns the position of path's key, or of its nearest ancestor that
// was written (for a missing key: its parent).
func (d *yamlDecoder) lineOf(path string) pos {
	for {
		if p, ok := d.at[path]; ok {
			return p
		}
		if path == "" {
			return pos{1, 1}
		}
		i := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
		if i < 0 {
			path = ""
		} else {
			path = path[:i]
		}
	}
}

// present reports whether path was written in the file.
func (d *yamlDecoder) present(path string) bool {
	_, ok := d.at[path]
	return ok
}

// isBad reports whether path or one of its ancestors had a structural
// problem.
func (d *yamlDecoder) isBad(path string) bool {
	for {
		if d.bad[path] {
			return true
		}
		i := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
		if i < 0 {
			return d.bad[""]
		}
		path = path[:i]
	}
}

// parseDocument parses data as exactly one YAML document and returns its
// body, or nil after recording a problem.
func (d *yamlDecoder) parseDocument(data []byte) ast.Node {
	if line := flowTooDeep(data); line > 0 {
		d.problem(pos{line, 0}, "YAML flow collections ([ and {) nest deeper than %d levels here: flatten the manifest", maxFlowDepth)
		return nil
	}
	// Duplicate keys are allowed by the parser so that the decoder can
	// report all of them, with both lines, instead of only the first.
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		d.yamlError(err)
		return nil
	}
	var bodies []ast.Node
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			bodies = append(bodies, doc.Body)
		}
	}
	switch len(bodies) {
	case 0:
		d.problem(pos{}, "the file is empty: a manifest starts with apiVersion: %s and kind: %s", APIVersion, KindTool)
		return nil
	case 1:
		return bodies[0]
	}
	d.problem(nodePos(bodies[1]), "the file holds %d YAML documents: put one manifest per file", len(bodies))
	return nil
}

// yamlError records an error of the YAML library, with its position when
// it has one.
func (d *yamlDecoder) yamlError(err error) {
	var ye yaml.Error
	if errors.As(err, &ye) {
		p := pos{}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			p = pos{tk.Position.Line, tk.Position.Column}
		}
		d.problem(p, "invalid YAML: %s", ye.GetMessage())
		return
	}
	d.problem(pos{}, "invalid YAML: %v", err)
}

// plain rejects the YAML features a manifest does not need and that make
// a file say something other than what it reads as: anchors, aliases, merge
// keys and tags. It returns false after recording a problem.
func (d *yamlDecoder) plain(path string, n ast.Node) bool {
	switch n.(type) {
	case *ast.AnchorNode, *ast.AliasNode:
		d.structural(path, n, "%s: YAML anchors and aliases are not supported in manifests: write the value out", display(path))
		return false
	case *ast.TagNode:
		d.structural(path, n, "%s: YAML tags are not supported in manifests: remove the tag", display(path))
		return false
	case *ast.MergeKeyNode, *ast.MappingKeyNode:
		d.structural(path, n, "%s: YAML merge keys and complex keys are not supported in manifests", display(path))
		return false
	}
	return true
}

// display names a path for messages; the root is "the manifest".
func display(path string) string {
	if path == "" {
		return "the manifest"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names the kind of a YAML value for type errors.
func describe(n ast.Node) string {
	switch n.(type) {
	case ast.MapNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode:
		return "null"
	}
	return "a " + n.Type().String()
}

// scalarText is the text of a string scalar.
func scalarText(n ast.Node) (string, bool) {
	switch s := n.(type) {
	case *ast.StringNode:
		return s.Value, true
	case *ast.LiteralNode:
		if s.Value == nil {
			return "", true
		}
		return s.Value.Value, true
	}
	return "", false
}

type fieldInfo struct {
	name  string
	index int
}

var fieldCache sync.Map // reflect.Type -> []fieldInfo

// fieldsOf lists the YAML keys of a struct type, in declaration order.
func fieldsOf(t reflect.Type) []fieldInfo {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]fieldInfo)
	}
	var out []fieldInfo
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out = append(out, fieldInfo{name: name, index: i})
	}
	fieldCache.Store(t, out)
	return out
}

// mapEntries iterates the entries of a mapping node, reporting merge
// keys, non-string keys and duplicate keys, and calling fn for each good
// entry with its key, key node and value node.
func (d *yamlDecoder) mapEntries(path string, mn ast.MapNode, fn func(key string, kn, vn ast.Node)) {
	seen := map[string]pos{}
	it := mn.MapRange()
	for it.Next() {
		kn, vn := it.Key(), it.Value()
		if kn.IsMergeKey() || !d.plain(path, kn) {
			if kn.IsMergeKey() {
				d.structural(path, kn, "%s: YAML merge keys (<<) are not supported in manifests: write the keys out", display(path))
			}
			continue
		}
		key, ok := scalarText(kn)
		if !ok {
			d.structural(path, kn, "%s: key %s is %s; keys must be strings: quote it", display(path), kn.GetToken().Value, describe(kn))
			continue
		}
		if first, dup := seen[key]; dup {
			d.structural(join(path, key), kn, "%s: duplicate key %q (first at line %d): remove one", display(path), key, first.line)
			continue
		}
		seen[key] = nodePos(kn)
		fn(key, kn, vn)
	}
}

// decode walks n into v (settable), whose type drives what is expected.
func (d *yamlDecoder) decode(path string, n ast.Node, v reflect.Value) {
	if !d.plain(path, n) {
		return
	}
	if _, null := n.(*ast.NullNode); null {
		return // the zero value; required fields are checked after decoding
	}
	t := v.Type()
	switch {
	case t == rawMessageType:
		var buf bytes.Buffer
		if d.toJSON(path, n, &buf, 0) {
			v.SetBytes(buf.Bytes())
		} else {
			d.bad[path] = true
		}
		return
	case t == byteSizeType:
		var (
			b   ByteSize
			err error
		)
		switch x := n.(type) {
		case *ast.IntegerNode:
			b, err = byteSizeFromAny(x.Value)
		case *ast.StringNode:
			b, err = ParseByteSize(x.Value)
		default:
			err = fmt.Errorf("got %s; write a size like 64MiB", describe(n))
		}
		if err != nil {
			d.structural(path, n, "%s: %v", path, err)
			return
		}
		v.SetInt(int64(b))
		return
	case t == durationType:
		s, ok := n.(*ast.StringNode)
		if !ok {
			d.structural(path, n, "%s: got %s; a duration needs a unit: write it like 10s or 250ms", path, describe(n))
			return
		}
		dur, err := ParseDuration(s.Value)
		if err != nil {
			d.structural(path, n, "%s: %v", path, err)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.decode(path, n, p.Elem())
		v.Set(p)
	case reflect.Struct:
		mn, ok := n.(ast.MapNode)
		if !ok {
			d.structural(path, n, "%s must be a mapping, not %s", display(path), describe(n))
			return
		}
		fields := fieldsOf(t)
		d.mapEntries(path, mn, func(key string, kn, vn ast.Node) {
			child := join(path, key)
			for _, f := range fields {
				if f.name == key {
					d.at[child] = nodePos(kn)
					d.decode(child, vn, v.Field(f.index))
					return
				}
			}
			names := make([]string, len(fields))
			for i, f := range fields {
				names[i] = f.name
			}
			d.structural(child, kn, "unknown key %q in %s: known keys are %s", key, display(path), strings.Join(names, ", "))
		})
	case reflect.Slice:
		sn, ok := n.(*ast.SequenceNode)
		if !ok {
			d.structural(path, n, "%s must be a list, not %s", path, describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(sn.Values), len(sn.Values))
		for i, item := range sn.Values {
			child := fmt.Sprintf("%s[%d]", path, i)
			d.at[child] = nodePos(item)
			d.decode(child, item, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		mn, ok := n.(ast.MapNode)
		if !ok {
			d.structural(path, n, "%s must be a mapping, not %s", path, describe(n))
			return
		}
		m := reflect.MakeMap(t)
		d.mapEntries(path, mn, func(key string, kn, vn ast.Node) {
			child := join(path, key)
			d.at[child] = nodePos(kn)
			e := reflect.New(t.Elem()).Elem()
			d.decode(child, vn, e)
			m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), e)
		})
		v.Set(m)
	case reflect.String:
		s, ok := scalarText(n)
		if !ok {
			hint := ""
			if _, scalar := n.(ast.ScalarNode); scalar {
				hint = fmt.Sprintf(": quote it, like %q", n.GetToken().Value)
			}
			d.structural(path, n, "%s must be a string, not %s%s", path, describe(n), hint)
			return
		}
		v.SetString(s)
	case reflect.Int:
		in, ok := n.(*ast.IntegerNode)
		if !ok {
			d.structural(path, n, "%s must be an integer, not %s", path, describe(n))
			return
		}
		var i int64
		switch x := in.Value.(type) {
		case int64:
			i = x
		case uint64:
			if x > math.MaxInt64 {
				d.structural(path, n, "%s: %d is too large", path, x)
				return
			}
			i = int64(x)
		}
		v.SetInt(i)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.structural(path, n, "%s must be true or false, not %s", path, describe(n))
			return
		}
		v.SetBool(b.Value)
	default:
		// Unreachable with the manifest types; fail closed all the same.
		d.structural(path, n, "%s: cannot decode into %s", path, t)
	}
}

// toJSON writes the YAML value n as JSON into buf, keeping the key order
// of mappings. It returns false after recording a problem.
func (d *yamlDecoder) toJSON(path string, n ast.Node, buf *bytes.Buffer, depth int) bool {
	if !d.plain(path, n) {
		return false
	}
	if depth > maxSchemaDepth {
		d.structural(path, n, "%s is nested deeper than %d levels", path, maxSchemaDepth)
		return false
	}
	switch x := n.(type) {
	case ast.MapNode:
		before := len(d.problems)
		buf.WriteByte('{')
		first := true
		d.mapEntries(path, x, func(key string, _, vn ast.Node) {
			if !first {
				buf.WriteByte(',')
			}
			first = false
			writeJSONString(buf, key)
			buf.WriteByte(':')
			d.toJSON(join(path, key), vn, buf, depth+1)
		})
		buf.WriteByte('}')
		return len(d.problems) == before
	case *ast.SequenceNode:
		ok := true
		buf.WriteByte('[')
		for i, item := range x.Values {
			if i > 0 {
				buf.WriteByte(',')
			}
			ok = d.toJSON(fmt.Sprintf("%s[%d]", path, i), item, buf, depth+1) && ok
		}
		buf.WriteByte(']')
		return ok
	case *ast.StringNode, *ast.LiteralNode:
		s, _ := scalarText(x)
		writeJSONString(buf, s)
	case *ast.IntegerNode:
		switch i := x.Value.(type) {
		case int64:
			buf.WriteString(strconv.FormatInt(i, 10))
		case uint64:
			buf.WriteString(strconv.FormatUint(i, 10))
		}
	case *ast.FloatNode:
		if math.IsInf(x.Value, 0) || math.IsNaN(x.Value) {
			d.structural(path, n, "%s: %s has no JSON form", path, x.GetToken().Value)
			return false
		}
		buf.WriteString(strconv.FormatFloat(x.Value, 'g', -1, 64))
	case *ast.BoolNode:
		buf.WriteString(strconv.FormatBool(x.Value))
	case *ast.NullNode:
		buf.WriteString("null")
	default:
		d.structural(path, n, "%s: %s has no JSON form", path, describe(n))
		return false
	}
	return true
}

// flowTooDeep returns the line at which the flow collections of data nest
// deeper than maxFlowDepth, or 0. It skips quoted scalars and comments
// without recursion; brackets inside plain scalars (a regexp, say) count,
// which errs on the side of refusing.
func flowTooDeep(data []byte) int {
	depth, line := 0, 1
	var quote byte
	comment := false
	prev := byte('\n') // the last byte that is not a space or tab
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '\n' && quote == 0 {
			line++
			comment, prev = false, '\n'
			continue
		}
		if c == '\n' {
			line++
		}
		switch {
		case comment:
		case quote == '"':
			if c == '\\' && i+1 < len(data) && data[i+1] != '\n' {
				i++ // an escaped character
			} else if c == '"' {
				quote = 0
			}
		case quote == '\'':
			if c == '\'' {
				quote = 0 // '' (an escaped quote) closes and reopens
			}
		case (c == '"' || c == '\'') && strings.IndexByte(":-[{,?\n", prev) >= 0:
			quote = c // a quote opens a scalar only where a scalar starts
		case c == '#' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t' || data[i-1] == '\n'):
			comment = true
		case c == '[' || c == '{':
			depth++
			if depth > maxFlowDepth {
				return line
			}
		case c == ']' || c == '}':
			depth = max(depth-1, 0)
		}
		if c != ' ' && c != '\t' {
			prev = c
		}
	}
	return 0
}
