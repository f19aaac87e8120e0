package egress

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// Defaults of a network rule that leaves a field out (the manifest loader
// fills the same ones in; rules built in code may leave them empty).
var (
	defaultSchemes = []string{"https"}
	defaultMethods = []string{"GET"}
	defaultPaths   = []string{"/**"}
)

// rule is a compiled manifest.NetworkRule.
type rule struct {
	index    int    // position in capabilities.network
	host     string // lower case, no trailing dot; "*.x.y" for a wildcard
	wildcard string // ".x.y" for a wildcard rule, else ""
	ip       netip.Addr
	schemes  []string
	ports    []int
	methods  []string
	paths    []string
	globs    []*regexp.Regexp
}

// name is how error messages point at the rule.
func (r *rule) name() string {
	return fmt.Sprintf("capabilities.network[%d] (host %s)", r.index, r.host)
}

func compileRules(rules []manifest.NetworkRule) ([]*rule, error) {
	out := make([]*rule, 0, len(rules))
	for i, nr := range rules {
		r := &rule{index: i}
		h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(nr.Host)), ".")
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" {
			return nil, fmt.Errorf("capabilities.network[%d].host is empty: name the host the tool may reach", i)
		}
		r.host = h
		if ip, err := netip.ParseAddr(h); err == nil {
			if ip.Zone() != "" {
				return nil, fmt.Errorf("capabilities.network[%d].host %q has an IPv6 zone: name the address without it", i, nr.Host)
			}
			r.ip = ip.Unmap()
		} else if rest, ok := strings.CutPrefix(h, "*."); ok {
			if rest == "" || strings.Contains(rest, "*") {
				return nil, fmt.Errorf("capabilities.network[%d].host %q: a wildcard is only allowed as the first label, like *.example.org", i, nr.Host)
			}
			r.wildcard = "." + rest
		} else if strings.Contains(h, "*") {
			return nil, fmt.Errorf("capabilities.network[%d].host %q: a wildcard is only allowed as the first label, like *.example.org", i, nr.Host)
		}
		r.schemes = lowerAll(orDefault(nr.Schemes, defaultSchemes))
		for _, s := range r.schemes {
			if s != "http" && s != "https" {
				return nil, fmt.Errorf("capabilities.network[%d].schemes: %q is not http or https", i, s)
			}
		}
		r.ports = slices.Clone(nr.Ports)
		for _, p := range r.ports {
			if p < 1 || p > 65535 {
				return nil, fmt.Errorf("capabilities.network[%d].ports: %d is not a port (1 to 65535)", i, p)
			}
		}
		r.methods = upperAll(orDefault(nr.Methods, defaultMethods))
		r.paths = orDefault(nr.Paths, defaultPaths)
		for _, p := range r.paths {
			if !strings.HasPrefix(p, "/") {
				return nil, fmt.Errorf("capabilities.network[%d].paths: %q must start with /", i, p)
			}
			r.globs = append(r.globs, compileGlob(p))
		}
		out = append(out, r)
	}
	return out, nil
}

func orDefault(v, def []string) []string {
	if len(v) == 0 {
		return def
	}
	return v
}

func lowerAll(v []string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.ToLower(s)
	}
	return out
}

func upperAll(v []string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.ToUpper(s)
	}
	return out
}

// compileGlob turns a path glob into an anchored regular expression:
// "*" matches within one segment, "**" matches across segments (any depth,
// also none), and a trailing "/**" also matches the directory itself
// ("/api/**" matches "/api", "/api/" and "/api/a/b"). Everything else is
// literal.
func compileGlob(g string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	tail := ""
	if rest, ok := strings.CutSuffix(g, "/**"); ok {
		g, tail = rest, "(/.*)?"
	}
	for i := 0; i < len(g); i++ {
		switch {
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i++
		case g[i] == '*':
			b.WriteString("[^/]*")
		default:
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		}
	}
	b.WriteString(tail)
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// matchHost reports whether the rule covers host (lower case, no trailing
// dot, brackets stripped). A literal-IP rule matches that address only; a
// wildcard matches names below its domain, never the domain itself nor an
// IP literal.
func (r *rule) matchHost(host string, ip netip.Addr) bool {
	switch {
	case r.ip.IsValid():
		return ip.IsValid() && ip.Unmap() == r.ip
	case ip.IsValid():
		return false
	case r.wildcard != "":
		return len(host) > len(r.wildcard) && strings.HasSuffix(host, r.wildcard)
	default:
		return host == r.host
	}
}

func (r *rule) matchPort(scheme string, port int) bool {
	if len(r.ports) == 0 {
		return port == defaultPort(scheme)
	}
	return slices.Contains(r.ports, port)
}

func (r *rule) matchPath(p string) bool {
	for _, g := range r.globs {
		if g.MatchString(p) {
			return true
		}
	}
	return false
}

func defaultPort(scheme string) int {
	if scheme == "http" {
		return 80
	}
	return 443
}

func portsText(r *rule) string {
	if len(r.ports) == 0 {
		return "the scheme's default port"
	}
	s := make([]string, len(r.ports))
	for i, p := range r.ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}

// target is one checked request line.
type target struct {
	scheme string
	host   string     // lower case, no brackets, no trailing dot
	ip     netip.Addr // valid when host is an IP literal
	port   int
	method string
	path   string
}

// allow finds the rule that covers t, or explains which part of t no rule
// covers (the most specific miss: host, then scheme and port, then method,
// then path).
func allow(rules []*rule, t target) (*rule, *Error) {
	var hostRules []*rule
	for _, r := range rules {
		if r.matchHost(t.host, t.ip) {
			hostRules = append(hostRules, r)
		}
	}
	if len(hostRules) == 0 {
		hosts := make([]string, len(rules))
		for i, r := range rules {
			hosts[i] = r.host
		}
		have := "the tool has no network rules"
		if len(hosts) > 0 {
			have = "the tool's capabilities.network allows " + strings.Join(hosts, ", ")
		}
		if t.ip.IsValid() {
			if why := Forbidden(t.ip); why != "" {
				return nil, errorf(CodeForbiddenAddress, "host %s is %s, which tools may not reach (%s): only a capabilities.network rule whose host is that literal address allows it", t.host, why, have)
			}
		}
		return nil, errorf(CodeNotAllowed, "host %s is not in the allowlist (%s): add a capabilities.network rule with host: %s to the manifest if the tool must reach it", t.host, have, t.host)
	}
	var miss *Error
	for _, r := range hostRules {
		switch {
		case !slices.Contains(r.schemes, t.scheme):
			miss = firstMiss(miss, errorf(CodeNotAllowed, "scheme %s for host %s is not allowed by %s (schemes %s): extend the rule if the tool must", t.scheme, t.host, r.name(), strings.Join(r.schemes, ", ")))
		case !r.matchPort(t.scheme, t.port):
			miss = firstMiss(miss, errorf(CodeNotAllowed, "port %d of host %s is not allowed by %s (ports: %s): extend the rule if the tool must", t.port, t.host, r.name(), portsText(r)))
		case !slices.Contains(r.methods, t.method):
			miss = firstMiss(miss, errorf(CodeNotAllowed, "method %s for host %s is not allowed by %s (methods %s): extend the rule if the tool must", t.method, t.host, r.name(), strings.Join(r.methods, ", ")))
		case !r.matchPath(t.path):
			miss = firstMiss(miss, errorf(CodeNotAllowed, "path %s of host %s is not allowed by %s (paths %s): extend the rule if the tool must", t.path, t.host, r.name(), strings.Join(r.paths, ", ")))
		default:
			return r, nil
		}
	}
	return nil, miss
}

func firstMiss(have, e *Error) *Error {
	if have != nil {
		return have
	}
	return e
}
