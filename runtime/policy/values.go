package policy

import (
	"encoding/json"
	"fmt"
	"github.com/airlock-dev/airlock/runtime/identity"
	"math"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// maxArgsDepth bounds the nesting of arguments and Env values. The executor
// bounds argument depth well below this before a decision.
const maxArgsDepth = 1000

// numberValue returns f as int64 when it is integral and in range, else f.
func numberValue(f float64) any {
	if f == math.Trunc(f) && f >= -(1<<63) && f < (1<<63) {
		return int64(f)
	}
	return f
}

// jsonNumber converts a json.Number: int64 when integral, else float64.
func jsonNumber(n json.Number) (any, error) {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("number %q is out of range", string(n))
	}
	return numberValue(f), nil
}

// needsNormalize reports whether v holds anything normalizeValue would
// change, so that the common case (already normalized) costs no copy.
func needsNormalize(v any, depth int) bool {
	if depth > maxArgsDepth {
		return true
	}
	switch x := v.(type) {
	case nil, string, bool, int64, int:
		return false
	case float64:
		return x == math.Trunc(x) && x >= -(1<<63) && x < (1<<63)
	case []any:
		for _, e := range x {
			if needsNormalize(e, depth+1) {
				return true
			}
		}
		return false
	case map[string]any:
		for _, e := range x {
			if needsNormalize(e, depth+1) {
				return true
			}
		}
		return false
	}
	return true // json.Number and anything unexpected
}

// normalizeValue returns a JSON-like value in which numbers are int64 when
// integral and float64 otherwise. It copies only when something changes.
// Values that are not JSON-like are an error (fail closed).
func normalizeValue(v any) (any, error) {
	if !needsNormalize(v, 0) {
		return v, nil
	}
	return normalizeCopy(v, 0)
}

func normalizeCopy(v any, depth int) (any, error) {
	if depth > maxArgsDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxArgsDepth)
	}
	switch x := v.(type) {
	case nil, string, bool, int64:
		return x, nil
	case int:
		return int64(x), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, fmt.Errorf("number %v is not a JSON number", x)
		}
		return numberValue(x), nil
	case json.Number:
		return jsonNumber(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeCopy(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalizeCopy(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("value of Go type %T is not a decoded JSON value", v)
}

// CallerFromSPIFFE builds a Caller from a SPIFFE ID of the form
// spiffe://TRUST-DOMAIN/PATH. The path keeps its leading "/".
func CallerFromSPIFFE(id string) (Caller, error) {
	c, err := identity.Parse(id)
	if err != nil {
		return Caller{}, err
	}
	return Caller{SpiffeID: c.SpiffeID, TrustDomain: c.TrustDomain, Path: c.Path}, nil
}

// ToolFromManifest builds the `tool` variable of a decision from a tool's
// manifest, as the executor and RunTests do: digest is the pinned SHA-256
// of the module or plugin, capabilities the manifest's capabilities as JSON.
func ToolFromManifest(m *manifest.Manifest) (Tool, error) {
	t := Tool{
		Name:    m.Metadata.Name,
		Version: m.Metadata.Version,
		Risk:    string(m.Spec.Risk),
		Labels:  m.Metadata.Labels,
	}
	switch {
	case m.Spec.Runtime.Wasm != nil:
		t.Digest = m.Spec.Runtime.Wasm.SHA256
	case m.Spec.Runtime.Plugin != nil:
		t.Digest = m.Spec.Runtime.Plugin.SHA256
	}
	raw, err := json.Marshal(m.Spec.Capabilities)
	if err != nil {
		return Tool{}, fmt.Errorf("tool %s: encode capabilities: %w", t.Name, err)
	}
	var caps map[string]any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&caps); err != nil {
		return Tool{}, fmt.Errorf("tool %s: decode capabilities: %w", t.Name, err)
	}
	norm, err := normalizeValue(caps)
	if err != nil {
		return Tool{}, fmt.Errorf("tool %s: capabilities: %w", t.Name, err)
	}
	t.Capabilities, _ = norm.(map[string]any)
	if t.Capabilities == nil {
		t.Capabilities = map[string]any{}
	}
	return t, nil
}

// celValue converts a normalized JSON-like value (see normalizeValue) to
// CEL values all the way down, so that evaluation does not convert it again
// on every access. Maps become map(string, dyn) and lists list(dyn), the
// types cel-go gives the same values when it converts them lazily. The
// work is proportional to the size of v; Decide calls it only for inputs
// within fastPathWeight.
func celValue(a types.Adapter, v any) ref.Val {
	switch x := v.(type) {
	case nil:
		return types.NullValue
	case bool:
		return types.Bool(x)
	case int64:
		return types.Int(x)
	case int:
		return types.Int(x)
	case float64:
		return types.Double(x)
	case string:
		return types.String(x)
	case []any:
		out := make([]ref.Val, len(x))
		for i, e := range x {
			out[i] = celValue(a, e)
		}
		return types.NewRefValList(a, out)
	case map[string]any:
		out := make(map[string]ref.Val, len(x))
		for k, e := range x {
			out[k] = celValue(a, e)
		}
		return types.NewMap(a, out)
	}
	return a.NativeToValue(v) // not produced by normalizeValue; convert as cel-go would
}
