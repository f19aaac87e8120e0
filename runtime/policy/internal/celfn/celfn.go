// Package celfn holds airlock's CEL functions beyond cel-go's standard
// library and extensions:
//
//	url(string) -> airlock.URL               parses an absolute URL (scheme and host required)
//	<airlock.URL>.scheme() -> string         lower-case scheme, e.g. "https"
//	<airlock.URL>.host() -> string           host name without port or IPv6 brackets, lower-cased
//	<airlock.URL>.port() -> int              explicit port, else 80 for http/ws, 443 for https/wss, else 0
//	<airlock.URL>.path() -> string           decoded path, "" when absent
//	<airlock.URL>.query() -> map(string, list(string))
//	isURL(string) -> bool                    whether url() would accept the string
//	string(airlock.URL) -> string            the URL as text
//	<net.IP>.isPrivate() -> bool             RFC 1918 / RFC 4193 address (complements ext.Network)
//	glob(pattern string, s string) -> bool   '*' any run of characters, '?' one, '\' escapes
//
// ip(), cidr(), containsIP(), isLoopback() and friends come from cel-go's
// ext.Network library, which the policy environment installs alongside.
package celfn

import (
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"

	"github.com/airlock-dev/airlock/runtime/policy/internal/glob"
)

// Bounds on function inputs, so that no single call can take long: glob is
// O(len(pattern)*len(s)) at worst and the cost limit counts it as one step.
const (
	// MaxURLLen is the longest string url() parses.
	MaxURLLen = 8 << 10
	// MaxGlobPattern is the longest pattern glob() accepts.
	MaxGlobPattern = 1 << 10
	// MaxGlobWork bounds len(pattern)*len(s) for one glob() call.
	MaxGlobWork = 4 << 20
)

// URLType is the CEL type of url() values.
var URLType = types.NewOpaqueType("airlock.URL")

// URL is a parsed absolute URL as a CEL value.
type URL struct{ *url.URL }

var _ ref.Val = URL{}

// ConvertToNative converts to *url.URL or string.
func (u URL) ConvertToNative(typeDesc reflect.Type) (any, error) {
	switch {
	case typeDesc == reflect.TypeFor[*url.URL]():
		return u.URL, nil
	case typeDesc.Kind() == reflect.String:
		return u.URL.String(), nil
	}
	return nil, fmt.Errorf("unsupported conversion of airlock.URL to %v", typeDesc)
}

// ConvertToType converts to string or reports the type.
func (u URL) ConvertToType(typeValue ref.Type) ref.Val {
	switch typeValue {
	case types.StringType:
		return types.String(u.URL.String())
	case URLType:
		return u
	case types.TypeType:
		return URLType
	}
	return types.NewErr("type conversion error from '%s' to '%s'", URLType, typeValue)
}

// Equal compares the URLs' string forms.
func (u URL) Equal(other ref.Val) ref.Val {
	o, ok := other.(URL)
	if !ok {
		return types.False
	}
	return types.Bool(u.URL.String() == o.URL.String())
}

// Type returns URLType.
func (u URL) Type() ref.Type { return URLType }

// Value returns the *url.URL.
func (u URL) Value() any { return u.URL }

// ParseURL parses an absolute URL as url() does.
func ParseURL(s string) (*url.URL, error) {
	if len(s) > MaxURLLen {
		return nil, fmt.Errorf("url: string of %d bytes is longer than the %d-byte limit", len(s), MaxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("url: %q is not an absolute URL with a scheme and a host", s)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("url: %q has an invalid port", s)
		}
	}
	return u, nil
}

// Library returns the EnvOption that declares the functions. It expects
// ext.Network() to be installed too (for the net.IP type).
func Library() cel.EnvOption {
	return cel.Lib(lib{})
}

type lib struct{}

func (lib) LibraryName() string { return "airlock.functions" }

func (lib) ProgramOptions() []cel.ProgramOption { return nil }

func (lib) CompileOptions() []cel.EnvOption {
	mapStrList := cel.MapType(cel.StringType, cel.ListType(cel.StringType))
	return []cel.EnvOption{
		cel.Types(URLType),
		cel.Function("url",
			cel.Overload("airlock_string_to_url", []*cel.Type{cel.StringType}, URLType,
				cel.UnaryBinding(func(v ref.Val) ref.Val {
					s, ok := v.(types.String)
					if !ok {
						return types.MaybeNoSuchOverloadErr(v)
					}
					u, err := ParseURL(string(s))
					if err != nil {
						return types.WrapErr(err)
					}
					return URL{u}
				}))),
		cel.Function("string",
			cel.Overload("airlock_url_to_string", []*cel.Type{URLType}, cel.StringType,
				urlFunc(func(u *url.URL) ref.Val { return types.String(u.String()) }))),
		cel.Function("isURL",
			cel.Overload("airlock_is_url", []*cel.Type{cel.StringType}, cel.BoolType,
				cel.UnaryBinding(func(v ref.Val) ref.Val {
					s, ok := v.(types.String)
					if !ok {
						return types.MaybeNoSuchOverloadErr(v)
					}
					_, err := ParseURL(string(s))
					return types.Bool(err == nil)
				}))),
		cel.Function("scheme",
			cel.MemberOverload("airlock_url_scheme", []*cel.Type{URLType}, cel.StringType,
				urlFunc(func(u *url.URL) ref.Val { return types.String(strings.ToLower(u.Scheme)) }))),
		cel.Function("host",
			cel.MemberOverload("airlock_url_host", []*cel.Type{URLType}, cel.StringType,
				urlFunc(func(u *url.URL) ref.Val { return types.String(strings.ToLower(u.Hostname())) }))),
		cel.Function("port",
			cel.MemberOverload("airlock_url_port", []*cel.Type{URLType}, cel.IntType,
				urlFunc(func(u *url.URL) ref.Val { return types.Int(port(u)) }))),
		cel.Function("path",
			cel.MemberOverload("airlock_url_path", []*cel.Type{URLType}, cel.StringType,
				urlFunc(func(u *url.URL) ref.Val { return types.String(u.Path) }))),
		cel.Function("query",
			cel.MemberOverload("airlock_url_query", []*cel.Type{URLType}, mapStrList,
				urlFunc(func(u *url.URL) ref.Val {
					q, err := url.ParseQuery(u.RawQuery)
					if err != nil {
						return types.NewErr("url: query of %q: %v", u.Redacted(), err)
					}
					return types.DefaultTypeAdapter.NativeToValue(map[string][]string(q))
				}))),
		cel.Function("isPrivate",
			cel.MemberOverload("airlock_ip_is_private", []*cel.Type{ext.IPType}, cel.BoolType,
				cel.UnaryBinding(func(v ref.Val) ref.Val {
					ip, ok := v.(ext.IP)
					if !ok {
						return types.MaybeNoSuchOverloadErr(v)
					}
					return types.Bool(ip.Addr.IsPrivate())
				}))),
		cel.Function("glob",
			cel.Overload("airlock_glob_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(p, s ref.Val) ref.Val {
					ps, ok1 := p.(types.String)
					ss, ok2 := s.(types.String)
					if !ok1 || !ok2 {
						return types.MaybeNoSuchOverloadErr(p)
					}
					if len(ps) > MaxGlobPattern {
						return types.NewErr("glob: pattern of %d bytes is longer than the %d-byte limit", len(ps), MaxGlobPattern)
					}
					if len(ps)*len(ss) > MaxGlobWork {
						return types.NewErr("glob: pattern and string are too long to match (%d*%d bytes, limit %d)", len(ps), len(ss), MaxGlobWork)
					}
					ok, err := glob.Match(string(ps), string(ss))
					if err != nil {
						return types.NewErr("glob: %v", err)
					}
					return types.Bool(ok)
				}))),
	}
}

func urlFunc(f func(*url.URL) ref.Val) cel.OverloadOpt {
	return cel.UnaryBinding(func(v ref.Val) ref.Val {
		u, ok := v.(URL)
		if !ok {
			return types.MaybeNoSuchOverloadErr(v)
		}
		return f(u.URL)
	})
}

func port(u *url.URL) int64 {
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err == nil {
			return int64(n)
		}
		return 0
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	}
	return 0
}
