package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// frame is one open array or object of the parser.
type frame struct {
	obj    map[string]any
	arr    []any
	isObj  bool
	key    string
	hasKey bool
}

// What the parser expects next.
const (
	wantValue        = iota // a value
	wantValueOrClose        // after '[': a value or ']'
	wantKeyOrClose          // after '{': a key or '}'
	wantKey                 // after ',' in an object: a key
	wantCommaOrClose        // after a value in an array or object
)

// jsonParser parses one JSON text into the values encoding/json produces
// with UseNumber (map[string]any, []any, string, json.Number, bool, nil)
// with an explicit stack instead of recursion, so that the nesting depth is
// checked at each opening bracket: a 10,000-deep text is refused at level
// MaxArgsDepth+1 having cost almost nothing. It refuses duplicate keys and
// out-of-range numbers. data must be valid UTF-8.
type jsonParser struct {
	data  []byte
	i     int
	b     bounds
	stack []frame
}

// decodeBounded checks raw against b and parses it.
func decodeBounded(raw []byte, b bounds) (any, *ArgsError) {
	if int64(len(raw)) > b.maxBytes {
		return nil, &ArgsError{Code: b.tooLarge, Message: fmt.Sprintf("%s are %d bytes, over the limit of %d bytes (%s)", b.noun, len(raw), b.maxBytes, ByteSize(b.maxBytes))}
	}
	if !utf8.Valid(raw) {
		return nil, &ArgsError{Code: b.invalid, Message: fmt.Sprintf("%s are not valid UTF-8", b.noun)}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		hint := ""
		if b.object {
			hint = ": send a JSON object, like {}"
		}
		return nil, &ArgsError{Code: b.invalid, Message: fmt.Sprintf("%s are empty%s", b.noun, hint)}
	}
	p := jsonParser{data: raw, b: b, stack: make([]frame, 0, 8)}
	return p.parse()
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) invalid(format string, args ...any) *ArgsError {
	return &ArgsError{Code: p.b.invalid, Field: p.at(), Message: fmt.Sprintf("%s not valid JSON: %s", nounVerb(p.b.noun), fmt.Sprintf(format, args...))}
}

// unexpected describes the byte at p.i, which is not what was wanted.
func (p *jsonParser) unexpected(want string) *ArgsError {
	if p.i >= len(p.data) {
		return p.invalid("the text ends before the value does")
	}
	r, _ := utf8.DecodeRune(p.data[p.i:])
	return p.invalid("unexpected %q at byte %d: want %s", r, p.i, want)
}

// at is the JSON pointer of the value being read, for errors.
func (p *jsonParser) at() string { return pointer(p.stack) }

func (p *jsonParser) parse() (any, *ArgsError) {
	var root any
	state := wantValue
	// emit attaches a finished value to its container, or makes it the
	// root; it reports whether the root is done.
	emit := func(v any) bool {
		if len(p.stack) == 0 {
			root = v
			return true
		}
		top := &p.stack[len(p.stack)-1]
		if top.isObj {
			top.obj[top.key] = v
			top.hasKey = false
		} else {
			top.arr = append(top.arr, v)
		}
		state = wantCommaOrClose
		return false
	}
	closeTop := func() bool {
		top := p.stack[len(p.stack)-1]
		p.stack = p.stack[:len(p.stack)-1]
		p.i++
		if top.isObj {
			return emit(top.obj)
		}
		return emit(top.arr)
	}
	for {
		p.skipSpace()
		if p.i >= len(p.data) {
			return nil, p.invalid("the text ends before the value does")
		}
		c := p.data[p.i]
		switch state {
		case wantKeyOrClose, wantKey:
			if c == '}' && state == wantKeyOrClose {
				if closeTop() {
					return p.end(root)
				}
				continue
			}
			if c != '"' {
				return nil, p.unexpected("a string key")
			}
			key, err := p.parseString()
			if err != nil {
				return nil, err
			}
			top := &p.stack[len(p.stack)-1]
			top.key, top.hasKey = key, true
			if _, dup := top.obj[key]; dup {
				return nil, p.invalid("the key %q appears twice in one object (at %s): send each key once", key, p.at())
			}
			p.skipSpace()
			if p.i >= len(p.data) || p.data[p.i] != ':' {
				return nil, p.unexpected("':' after the key")
			}
			p.i++
			state = wantValue
			continue
		case wantCommaOrClose:
			top := &p.stack[len(p.stack)-1]
			switch {
			case c == ',':
				p.i++
				if top.isObj {
					state = wantKey
				} else {
					state = wantValue
				}
			case c == '}' && top.isObj, c == ']' && !top.isObj:
				if closeTop() {
					return p.end(root)
				}
			default:
				if top.isObj {
					return nil, p.unexpected("',' or '}'")
				}
				return nil, p.unexpected("',' or ']'")
			}
			continue
		case wantValueOrClose:
			if c == ']' {
				if closeTop() {
					return p.end(root)
				}
				continue
			}
		}
		// A value.
		var v any
		switch {
		case c == '{' || c == '[':
			if len(p.stack) >= MaxArgsDepth {
				return nil, &ArgsError{Code: p.b.tooDeep, Field: p.at(), Message: fmt.Sprintf("%s nest deeper than %d levels (at byte %d): flatten the data", p.b.noun, MaxArgsDepth, p.i)}
			}
			if c == '[' && p.b.object && len(p.stack) == 0 {
				return nil, &ArgsError{Code: p.b.badSchema, Message: fmt.Sprintf("%s must be a JSON object, not an array", p.b.noun)}
			}
			p.i++
			if c == '{' {
				p.stack = append(p.stack, frame{obj: map[string]any{}, isObj: true})
				state = wantKeyOrClose
			} else {
				p.stack = append(p.stack, frame{arr: []any{}})
				state = wantValueOrClose
			}
			continue
		case c == '"':
			s, err := p.parseString()
			if err != nil {
				return nil, err
			}
			v = s
		case c == '-' || (c >= '0' && c <= '9'):
			n, err := p.parseNumber()
			if err != nil {
				return nil, err
			}
			v = n
		case c == 't':
			if err := p.literal("true"); err != nil {
				return nil, err
			}
			v = true
		case c == 'f':
			if err := p.literal("false"); err != nil {
				return nil, err
			}
			v = false
		case c == 'n':
			if err := p.literal("null"); err != nil {
				return nil, err
			}
			v = nil
		default:
			return nil, p.unexpected("a JSON value")
		}
		if len(p.stack) == 0 && p.b.object {
			kind := map[bool]string{true: "a string", false: "a number"}[c == '"']
			switch c {
			case 't', 'f':
				kind = "a boolean"
			case 'n':
				kind = "null"
			}
			return nil, &ArgsError{Code: p.b.badSchema, Message: fmt.Sprintf("%s must be a JSON object, not %s", p.b.noun, kind)}
		}
		if emit(v) {
			return p.end(root)
		}
	}
}

// end checks that nothing but white space follows the root value.
func (p *jsonParser) end(root any) (any, *ArgsError) {
	p.skipSpace()
	if p.i < len(p.data) {
		return nil, &ArgsError{Code: p.b.invalid, Message: fmt.Sprintf("%s not valid JSON: unexpected data after the value at byte %d: send one JSON value", nounVerb(p.b.noun), p.i)}
	}
	return root, nil
}

func (p *jsonParser) literal(word string) *ArgsError {
	if !bytes.HasPrefix(p.data[p.i:], []byte(word)) {
		for j := 0; j < len(word); j++ {
			if p.i+j >= len(p.data) || p.data[p.i+j] != word[j] {
				p.i += j
				return p.unexpected(fmt.Sprintf("%q", word))
			}
		}
	}
	p.i += len(word)
	return nil
}

// parseNumber reads a JSON number at p.i and keeps its text.
func (p *jsonParser) parseNumber() (json.Number, *ArgsError) {
	d, start := p.data, p.i
	i := p.i
	digits := func() int {
		n := 0
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case digits() == 0:
		p.i = i
		return "", p.unexpected("a digit")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if digits() == 0 {
			p.i = i
			return "", p.unexpected("a digit after the decimal point")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if digits() == 0 {
			p.i = i
			return "", p.unexpected("a digit in the exponent")
		}
	}
	p.i = i
	n := string(d[start:i])
	if !numberInRange(n) {
		return "", &ArgsError{Code: p.b.badSchema, Field: p.at(), Message: fmt.Sprintf("number at %s is out of range: use at most %d characters and an exponent between -%d and %d", pointerOrRoot(p.at()), maxNumberLen, maxExponent, maxExponent)}
	}
	return json.Number(n), nil
}

// parseString reads a JSON string at p.i (an opening quote). A lone UTF-16
// surrogate escape becomes U+FFFD, as encoding/json does.
func (p *jsonParser) parseString() (string, *ArgsError) {
	d := p.data
	start := p.i + 1
	i := start
	for i < len(d) && d[i] != '"' && d[i] != '\\' && d[i] >= 0x20 {
		i++
	}
	if i < len(d) && d[i] == '"' {
		p.i = i + 1
		return string(d[start:i]), nil
	}
	var sb strings.Builder
	sb.Write(d[start:i])
	for {
		if i >= len(d) {
			p.i = i
			return "", p.invalid("a string is not closed")
		}
		c := d[i]
		switch {
		case c == '"':
			p.i = i + 1
			return sb.String(), nil
		case c < 0x20:
			p.i = i
			return "", p.invalid("control character %q in a string at byte %d: escape it", rune(c), i)
		case c != '\\':
			sb.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(d) {
			p.i = i + 1
			return "", p.invalid("a string is not closed")
		}
		switch e := d[i+1]; e {
		case '"', '\\', '/':
			sb.WriteByte(e)
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			r, ok := hex4(d, i+2)
			if !ok {
				p.i = i
				return "", p.invalid("bad \\u escape at byte %d", i)
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(d, i+2); ok && i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						sb.WriteRune(dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			sb.WriteRune(r)
			continue
		default:
			p.i = i
			return "", p.invalid("bad escape \\%c at byte %d", e, i)
		}
		i += 2
	}
}

// hex4 reads four hex digits at d[i:].
func hex4(d []byte, i int) (rune, bool) {
	if i+4 > len(d) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d[i:i+4]), 16, 32)
	return rune(n), err == nil
}

// nounVerb is "arguments are" or "output is".
func nounVerb(noun string) string {
	if strings.HasSuffix(noun, "s") {
		return noun + " are"
	}
	return noun + " is"
}
