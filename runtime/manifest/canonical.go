package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Canonical returns the canonical JSON form of a decoded JSON value (what
// ValidateArgs returns): object keys sorted by their bytes, no insignificant
// whitespace, numbers exactly as they were written (json.Number), strings
// with only the escapes JSON requires. Two argument texts that decode to the
// same value have the same canonical form, whatever their key order or
// spacing, so it is what args digests and approvals are bound to.
//
// Values other than those encoding/json decodes into (map[string]any,
// []any, string, json.Number, float64, bool, nil) are written through
// encoding/json and then canonicalized.
func Canonical(v any) []byte {
	var buf bytes.Buffer
	writeCanonical(&buf, v)
	return buf.Bytes()
}

// ArgsDigest is the lowercase hex SHA-256 of Canonical(v).
func ArgsDigest(v any) string {
	sum := sha256.Sum256(Canonical(v))
	return hex.EncodeToString(sum[:])
}

func writeCanonical(buf *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case string:
		writeJSONString(buf, x)
	case json.Number:
		buf.WriteString(string(x))
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			buf.WriteString("null") // no JSON form; never produced by decoding
			return
		}
		buf.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			writeCanonical(buf, x[k])
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeCanonical(buf, e)
		}
		buf.WriteByte(']')
	default:
		b, err := json.Marshal(x)
		if err != nil {
			buf.WriteString("null")
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var generic any
		if err := dec.Decode(&generic); err != nil {
			buf.WriteString("null")
			return
		}
		writeCanonical(buf, generic)
	}
}

const hexDigits = "0123456789abcdef"

// writeJSONString writes s as a JSON string: '"' and '\\' escaped, control
// characters as \b \f \n \r \t or \u00XX, invalid UTF-8 as U+FFFD, and
// everything else (including <, > and &) as is.
func writeJSONString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf.WriteByte('\\')
				buf.WriteByte(c)
			case c == '\b':
				buf.WriteString(`\b`)
			case c == '\f':
				buf.WriteString(`\f`)
			case c == '\n':
				buf.WriteString(`\n`)
			case c == '\r':
				buf.WriteString(`\r`)
			case c == '\t':
				buf.WriteString(`\t`)
			case c < 0x20:
				buf.WriteString(`\u00`)
				buf.WriteByte(hexDigits[c>>4])
				buf.WriteByte(hexDigits[c&0xf])
			default:
				buf.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf.WriteString("\ufffd")
		} else {
			buf.WriteString(s[i : i+size])
		}
		i += size
	}
	buf.WriteByte('"')
}
