// Package egress is the only way a sandboxed tool reaches the network: an
// HTTP client that enforces the tool's manifest allowlist and attaches
// task-scoped credentials host-side (ARCHITECTURE.md 3.6).
//
// For every request, and again for every redirect hop, the client
//
//   - checks scheme, host (exact, or "*.example.org" for names below a
//     domain), port (the scheme's default unless the rule lists ports),
//     method and path (globs: "*" within a segment, "**" across segments)
//     against the manifest's capabilities.network rules;
//   - resolves the host name once, refuses loopback, link-local, private,
//     carrier-grade NAT, multicast, unspecified and other special-purpose
//     addresses (also in IPv4-mapped, NAT64 and 6to4 form) unless a rule's
//     host is that literal IP, and dials exactly the address it checked,
//     with the Host header and TLS server name taken from the URL, so DNS
//     rebinding cannot move the connection elsewhere;
//   - attaches each injected credential only to requests for its host, only
//     over https (unless Config.AllowCredentialsOverHTTP), and drops every
//     credential for the rest of the chain once a redirect changes host;
//   - refuses a request that sets an injected header itself, and headers
//     that would change framing or routing (Host, Content-Length, ...);
//   - caps the request body, the response headers and body, the number of
//     redirects and the total time.
//
// A refused or failed request returns an *Error whose Code says why and
// whose Message names the host and the rule, or the missing rule. Values of
// headers (credentials in particular) are never logged.
package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http/httpguts"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// Defaults of Config.
const (
	DefaultMaxResponseBytes = 1 << 20
	DefaultMaxRequestBytes  = 1 << 20
	DefaultTimeout          = 10 * time.Second
	DefaultMaxRedirects     = 5
	// MaxResponseHeaderBytes bounds the response headers of one hop.
	MaxResponseHeaderBytes = 64 << 10
	// MaxRequestHeaders bounds the header values a request may set.
	MaxRequestHeaders = 64
	// MaxRequestHeaderBytes bounds the total size of the request's headers.
	MaxRequestHeaderBytes = 32 << 10
	// MaxURLBytes bounds the length of a request URL.
	MaxURLBytes = 8 << 10
)

// Error codes.
const (
	// CodeInvalidRequest: the URL, method or a header is malformed.
	CodeInvalidRequest = "invalid_request"
	// CodeNotAllowed: no capabilities.network rule covers the request.
	CodeNotAllowed = "not_allowed"
	// CodeForbiddenHeader: the request sets a header it may not (an
	// injected credential's header, Host, Content-Length, ...).
	CodeForbiddenHeader = "forbidden_header"
	// CodeForbiddenAddress: the host is, or resolves to, an address tools
	// may not reach without an explicit rule for that literal address.
	CodeForbiddenAddress = "forbidden_address"
	// CodeInsecureCredential: a credential would be sent over plain http.
	CodeInsecureCredential = "insecure_credential"
	// CodeRedirectRefused: a redirect led somewhere the request may not go.
	CodeRedirectRefused = "redirect_refused"
	// CodeTooManyRedirects: the chain was longer than MaxRedirects.
	CodeTooManyRedirects = "too_many_redirects"
	// CodeTooLarge: the request body or the response headers are too big.
	CodeTooLarge = "too_large"
	// CodeTimeout: the request took longer than Config.Timeout or the
	// caller's deadline.
	CodeTimeout = "timeout"
	// CodeCanceled: the caller canceled the request.
	CodeCanceled = "canceled"
	// CodeResolve: the host name did not resolve.
	CodeResolve = "resolve_failed"
	// CodeConnect: connecting, TLS or the HTTP exchange failed.
	CodeConnect = "connect_failed"
)

// Error is a refused or failed request.
type Error struct {
	// Code is one of the Code constants.
	Code string
	// Message is lowercase, names the host and the rule (or the missing
	// one) and says what to do. It never contains a credential.
	Message string
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Resolver resolves host names; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens connections; *net.Dialer implements it. The client only
// ever asks it for "tcp" to an IP:port it has checked.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Config configures a Client. The zero value is usable; New copies it.
type Config struct {
	// Resolver resolves host names (default net.DefaultResolver).
	Resolver Resolver
	// Dialer dials the checked addresses (default a net.Dialer with a 5 s
	// connect timeout).
	Dialer Dialer
	// TLSConfig is the base TLS configuration (cloned per hop, ServerName
	// set to the URL's host). nil: the system roots, TLS 1.2 or later.
	TLSConfig *tls.Config
	// MaxResponseBytes caps a response body; the rest is dropped and
	// Response.Truncated set (default DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// MaxRequestBytes caps a request body (default DefaultMaxRequestBytes).
	MaxRequestBytes int64
	// Timeout bounds a whole request, redirects and body included (default
	// DefaultTimeout).
	Timeout time.Duration
	// MaxRedirects bounds the redirects followed (default
	// DefaultMaxRedirects; negative: follow none).
	MaxRedirects int
	// AllowCredentialsOverHTTP lets injected credentials travel over plain
	// http. For local development and tests only: default false, and such
	// a request is refused with CodeInsecureCredential.
	AllowCredentialsOverHTTP bool
	// Logger receives one event per request (host, method, status,
	// sizes, refusal code; never header values or the query). Default: none.
	Logger zerolog.Logger
}

// Client sends requests for sandboxed tools. It is safe for concurrent use
// and holds no connections between requests.
type Client struct {
	cfg Config
	log zerolog.Logger
}

// New returns a Client with cfg's defaults filled in.
func New(cfg Config) *Client {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{Timeout: 5 * time.Second}
	}
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		cfg.TLSConfig = cfg.TLSConfig.Clone()
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	} else if cfg.MaxRedirects < 0 {
		cfg.MaxRedirects = 0
	}
	return &Client{cfg: cfg, log: cfg.Logger.With().Str("component", "egress").Logger()}
}

// Request is one HTTP request of a tool.
type Request struct {
	// Method is an upper-case HTTP method ("" means GET).
	Method string
	// URL is an absolute http or https URL without user info.
	URL string
	// Headers are sent as given, after the checks (see the package doc).
	Headers map[string][]string
	// Body is sent as is; at most Config.MaxRequestBytes.
	Body []byte
	// MaxResponseBytes lowers the body cap of this request (0: the client's).
	MaxResponseBytes int64
}

// Response is the final response of a request (after redirects).
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Headers are the response headers, canonical names.
	Headers map[string][]string
	// Body is the response body, at most the cap.
	Body []byte
	// Truncated is true when the body was longer than the cap and cut.
	Truncated bool
}

// Injection is one credential to attach host-side. The executor builds it
// from a manifest credential with inject.http and the lease's value.
type Injection struct {
	// CredentialName is the manifest's credential name (for messages).
	CredentialName string
	// Host is the only host the header is sent to (exact, lower case).
	Host string
	// Header is the header name, e.g. "Authorization".
	Header string
	// Value is the formatted header value, e.g. "Bearer <token>". It is a
	// secret: never logged, never put in an error.
	Value string
}

// Binding is a Client bound to one tool's rules and one call's injected
// credentials: what the sandbox hands the guest's HTTP host function.
type Binding struct {
	c      *Client
	rules  []*rule
	inject []Injection
}

// Bind compiles rules and checks inject for use by many requests. It fails
// on a rule or injection that is malformed; the manifest loader normally
// catches those first.
func (c *Client) Bind(rules []manifest.NetworkRule, inject []Injection) (*Binding, error) {
	rs, err := compileRules(rules)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	return (&Binding{c: c, rules: rs}).With(inject)
}

// With returns a binding with the same client and rules and the given
// injections instead of b's: bind a tool's rules once at load, then add
// each call's credentials cheaply.
func (b *Binding) With(inject []Injection) (*Binding, error) {
	inj := make([]Injection, len(inject))
	for i, in := range inject {
		in.Host = strings.TrimSuffix(strings.ToLower(in.Host), ".")
		if in.Host == "" {
			return nil, fmt.Errorf("egress: credential %q: injection host is empty: set inject.http.host", in.CredentialName)
		}
		if !httpguts.ValidHeaderFieldName(in.Header) {
			return nil, fmt.Errorf("egress: credential %q: %q is not an HTTP header name: fix inject.http.header", in.CredentialName, in.Header)
		}
		if in.Value == "" || !httpguts.ValidHeaderFieldValue(in.Value) {
			// Never print the value.
			return nil, fmt.Errorf("egress: credential %q: the formatted value is empty or not a valid header value (control characters): check the credential source and inject.http.format", in.CredentialName)
		}
		in.Header = http.CanonicalHeaderKey(in.Header)
		if forbiddenHeader(in.Header) != "" {
			return nil, fmt.Errorf("egress: credential %q: header %s cannot carry a credential: pick another inject.http.header", in.CredentialName, in.Header)
		}
		inj[i] = in
	}
	return &Binding{c: b.c, rules: b.rules, inject: inj}, nil
}

// Do binds rules and inject and sends req: see Binding.Do.
func (c *Client) Do(ctx context.Context, rules []manifest.NetworkRule, inject []Injection, req Request) (*Response, error) {
	b, err := c.Bind(rules, inject)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Message: err.Error(), Err: err}
	}
	return b.Do(ctx, req)
}

// forbiddenHeader says why a caller may not set header h ("" if it may).
func forbiddenHeader(h string) string {
	switch h {
	case "Host":
		return "the host comes from the URL"
	case "Content-Length", "Transfer-Encoding", "Te", "Trailer", "Connection", "Keep-Alive", "Upgrade", "Expect":
		return "it controls message framing or the connection, which the client manages"
	case "Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate":
		return "there is no proxy"
	}
	return ""
}

// hop is one checked request of a chain.
type hop struct {
	u    *url.URL
	t    target
	rule *rule
	addr netip.Addr
}

// Do sends req under the binding's rules, follows allowed redirects and
// returns the final response. A non-nil error is always an *Error.
func (b *Binding) Do(ctx context.Context, req Request) (*Response, error) {
	start := time.Now()
	resp, last, err := b.do(ctx, req)
	ev := b.c.log.Info()
	if err != nil {
		ev = b.c.log.Warn().Str("code", err.Code)
	}
	if last != nil {
		// The path is not logged: some APIs carry a token in it.
		ev = ev.Str("host", last.t.host).Str("method", last.t.method)
		if last.addr.IsValid() {
			ev = ev.Str("addr", last.addr.String())
		}
	}
	if resp != nil {
		ev = ev.Int("status", resp.Status).Int("body_bytes", len(resp.Body)).Bool("truncated", resp.Truncated)
	}
	ev.Dur("duration", time.Since(start)).Msg("egress request")
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (b *Binding) do(ctx context.Context, req Request) (*Response, *hop, *Error) {
	c := b.c
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validMethod(method) {
		return nil, nil, errorf(CodeInvalidRequest, "method %q is not an upper-case HTTP method like GET or POST", method)
	}
	if int64(len(req.Body)) > c.cfg.MaxRequestBytes {
		return nil, nil, errorf(CodeTooLarge, "the request body has %d bytes, more than the %d allowed: send less", len(req.Body), c.cfg.MaxRequestBytes)
	}
	header, herr := b.checkHeaders(req.Headers)
	if herr != nil {
		return nil, nil, herr
	}
	limit := c.cfg.MaxResponseBytes
	if req.MaxResponseBytes > 0 && req.MaxResponseBytes < limit {
		limit = req.MaxResponseBytes
	}

	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	u, perr := parseURL(req.URL)
	if perr != nil {
		return nil, nil, perr
	}
	h, err := b.check(ctx, u, method)
	if err != nil {
		return nil, h, err
	}
	inject := b.inject
	body := req.Body
	origin := h.t.host
	for redirects := 0; ; redirects++ {
		resp, rerr := b.roundTrip(ctx, h, header, body, inject, limit)
		if rerr != nil {
			return nil, h, rerr
		}
		loc := ""
		switch resp.Status {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			if v := resp.Headers["Location"]; len(v) > 0 {
				loc = v[0]
			}
		}
		if loc == "" {
			return resp, h, nil
		}
		if redirects >= c.cfg.MaxRedirects {
			return nil, h, errorf(CodeTooManyRedirects, "%s redirected more than %d times: the last hop was to %s; call the final URL directly", origin, c.cfg.MaxRedirects, redactURL(loc))
		}
		next, uerr := h.u.Parse(loc)
		if uerr != nil {
			return nil, h, &Error{Code: CodeRedirectRefused, Message: fmt.Sprintf("%s redirected to a malformed location", h.t.host), Err: uerr}
		}
		nu, perr := parseURL(next.String())
		if perr != nil {
			return nil, h, &Error{Code: CodeRedirectRefused, Message: fmt.Sprintf("%s redirected to %s: %s", h.t.host, redactURL(next.String()), perr.Message), Err: perr}
		}
		// 303, and 301/302 after a POST, turn into a GET without a body,
		// as browsers do; 307 and 308 repeat the request.
		switch {
		case resp.Status == http.StatusSeeOther && method != http.MethodHead,
			(resp.Status == http.StatusMovedPermanently || resp.Status == http.StatusFound) && method == http.MethodPost:
			method, body = http.MethodGet, nil
			header.Del("Content-Type")
		}
		nh, cerr := b.check(ctx, nu, method)
		if cerr != nil {
			return nil, h, &Error{Code: CodeRedirectRefused, Message: fmt.Sprintf("%s redirected to %s, which is refused: %s", h.t.host, redactURL(nu.String()), cerr.Message), Err: cerr}
		}
		if nh.t.host != h.t.host || nh.t.port != h.t.port || nh.t.scheme != h.t.scheme {
			// Cross-origin: no credential leaves for the rest of the chain,
			// neither an injected one nor one the guest set itself (as
			// net/http does).
			inject = nil
			for _, k := range []string{"Authorization", "Cookie", "Proxy-Authorization", "Www-Authenticate"} {
				header.Del(k)
			}
		}
		h = nh
	}
}

// checkHeaders validates the caller's headers and refuses the ones it may
// not set.
func (b *Binding) checkHeaders(in map[string][]string) (http.Header, *Error) {
	out := http.Header{}
	n, size := 0, 0
	for k, vs := range in {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, errorf(CodeInvalidRequest, "header name %q is not a valid HTTP header name", k)
		}
		ck := http.CanonicalHeaderKey(k)
		if why := forbiddenHeader(ck); why != "" {
			return nil, errorf(CodeForbiddenHeader, "the request sets header %s, which a tool may not set: %s; remove it", ck, why)
		}
		for _, in := range b.inject {
			if in.Header == ck {
				return nil, errorf(CodeForbiddenHeader, "the request sets header %s, which airlock injects for %s (credential %s): remove it from the request; the credential is attached host-side", ck, in.Host, in.CredentialName)
			}
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, errorf(CodeInvalidRequest, "header %s has a value with control characters (CR, LF or NUL)", ck)
			}
			n++
			size += len(ck) + len(v) + 4
			out[ck] = append(out[ck], v)
		}
	}
	if n > MaxRequestHeaders || size > MaxRequestHeaderBytes {
		return nil, errorf(CodeTooLarge, "the request has %d header values (%d bytes), more than %d values or %d bytes: send fewer headers", n, size, MaxRequestHeaders, MaxRequestHeaderBytes)
	}
	return out, nil
}

// validMethod: an upper-case token.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// parseURL parses and normalises an absolute request URL.
func parseURL(raw string) (*url.URL, *Error) {
	if len(raw) > MaxURLBytes {
		return nil, errorf(CodeInvalidRequest, "the URL has %d bytes, more than %d", len(raw), MaxURLBytes)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Message: "the URL does not parse: give an absolute http or https URL", Err: err}
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errorf(CodeInvalidRequest, "URL scheme %q is not http or https", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return nil, errorf(CodeInvalidRequest, "the URL %s has no host: give an absolute URL like https://api.example.org/path", redactURL(raw))
	case u.User != nil:
		return nil, errorf(CodeInvalidRequest, "the URL for %s carries user info (user:password@): credentials are injected by airlock, never written in URLs", u.Hostname())
	}
	u.Fragment, u.RawFragment = "", ""
	if u.Path == "" {
		u.Path, u.RawPath = "/", ""
	}
	return u, nil
}

// redactURL drops the query and user info of a URL for messages: both may
// hold secrets.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(malformed URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// check matches u and method against the rules and resolves and checks
// the address to dial.
func (b *Binding) check(ctx context.Context, u *url.URL, method string) (*hop, *Error) {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return nil, errorf(CodeInvalidRequest, "the URL has an empty host")
	}
	for _, r := range host {
		if r > 0x7e || r <= 0x20 {
			return nil, errorf(CodeInvalidRequest, "host %q has characters outside ASCII: write internationalized names in punycode (xn--...)", host)
		}
	}
	port := defaultPort(u.Scheme)
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, errorf(CodeInvalidRequest, "port %q of host %s is not a port (1 to 65535)", p, host)
		}
		port = n
	}
	ip, err := netip.ParseAddr(host)
	if err == nil {
		if ip.Zone() != "" {
			return nil, errorf(CodeInvalidRequest, "host %s has an IPv6 zone, which is not allowed", host)
		}
	} else {
		ip = netip.Addr{}
		if strings.Contains(host, ":") {
			return nil, errorf(CodeInvalidRequest, "host %q is not a valid IPv6 address", host)
		}
		if looksNumeric(host) {
			// "2130706433", "0x7f.1", "127.1": numeric forms some resolvers
			// read as addresses. Refuse rather than guess.
			return nil, errorf(CodeInvalidRequest, "host %q looks like an IP address in a non-standard form: write it as a dotted-quad IPv4 or an IPv6 address", host)
		}
	}
	p := u.EscapedPath()
	if msg := pathProblem(u.Path, p); msg != "" {
		return nil, errorf(CodeNotAllowed, "path %s of host %s is refused: %s", p, host, msg)
	}
	t := target{scheme: u.Scheme, host: host, ip: ip, port: port, method: method, path: u.Path}
	h := &hop{u: u, t: t}
	r, aerr := allow(b.rules, t)
	if aerr != nil {
		return h, aerr
	}
	h.rule = r
	if ip.IsValid() {
		// A literal address reached here only through a rule naming it:
		// that rule is the explicit opt-in for a special address.
		h.addr = ip.Unmap()
		return h, nil
	}
	addrs, rerr := b.c.cfg.Resolver.LookupNetIP(ctx, "ip", host)
	if rerr != nil {
		if ce := ctxError(ctx, host); ce != nil {
			return h, ce
		}
		return h, &Error{Code: CodeResolve, Message: fmt.Sprintf("host %s does not resolve: check the name", host), Err: rerr}
	}
	if len(addrs) == 0 {
		return h, errorf(CodeResolve, "host %s resolved to no address: check the name", host)
	}
	// Every address must be allowed: a name that resolves to a public and a
	// private address is refused as a whole.
	for _, a := range addrs {
		if why := Forbidden(a); why != "" {
			return h, errorf(CodeForbiddenAddress, "host %s resolves to %s, %s, which tools may not reach: only a capabilities.network rule whose host is that literal address allows it", host, a.Unmap(), why)
		}
	}
	h.addr = addrs[0].Unmap()
	return h, nil
}

// looksNumeric reports a host made of digits, dots and hex markers only.
func looksNumeric(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == 'x' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	// All hex letters and dots could be a name ("cafe.be" is not numeric
	// in any resolver unless it starts with 0x or a digit).
	return h[0] >= '0' && h[0] <= '9'
}

// pathProblem refuses paths that servers may read differently from the
// rule check: dot segments, encoded slashes, backslashes and dots, NUL.
func pathProblem(decoded, escaped string) string {
	low := strings.ToLower(escaped)
	switch {
	case strings.ContainsAny(decoded, "\\\x00"):
		return "it contains a backslash or NUL"
	case strings.Contains(low, "%2f"), strings.Contains(low, "%5c"), strings.Contains(low, "%2e"):
		return "it contains an encoded '/', '\\' or '.': write the path plainly"
	}
	for _, seg := range strings.Split(decoded, "/") {
		if seg == "." || seg == ".." {
			return "it contains a '.' or '..' segment: write the path without them"
		}
	}
	return ""
}

// ctxError maps a done context to an *Error (nil while ctx is live).
func ctxError(ctx context.Context, host string) *Error {
	switch {
	case ctx.Err() == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &Error{Code: CodeTimeout, Message: fmt.Sprintf("the request to %s did not finish in time (the egress timeout or the call's deadline): retry, or ask for less", host), Err: ctx.Err()}
	default:
		return &Error{Code: CodeCanceled, Message: fmt.Sprintf("the request to %s was canceled", host), Err: ctx.Err()}
	}
}

// roundTrip sends one hop to its pinned address and reads the response.
func (b *Binding) roundTrip(ctx context.Context, h *hop, header http.Header, body []byte, inject []Injection, limit int64) (*Response, *Error) {
	c := b.c
	hdr := header.Clone()
	for _, in := range inject {
		if in.Host != h.t.host {
			continue
		}
		if h.t.scheme != "https" && !c.cfg.AllowCredentialsOverHTTP {
			return nil, errorf(CodeInsecureCredential, "credential %s would be sent to %s over plain http: use https (the request was not sent)", in.CredentialName, h.t.host)
		}
		hdr.Set(in.Header, in.Value)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(ctx, h.t.method, h.u.String(), rd)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("cannot build the request for %s", h.t.host), Err: err}
	}
	hreq.Header = hdr
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", "airlock-egress/1")
	}

	hostPort := net.JoinHostPort(h.u.Hostname(), strconv.Itoa(h.t.port))
	pinned := netip.AddrPortFrom(h.addr, uint16(h.t.port)).String()
	tlsCfg := c.cfg.TLSConfig.Clone()
	tlsCfg.ServerName = h.t.host
	tlsCfg.NextProtos = nil
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != hostPort {
				return nil, fmt.Errorf("egress: the transport asked for %s, not the checked %s", addr, hostPort)
			}
			return c.cfg.Dialer.DialContext(ctx, "tcp", pinned)
		},
		TLSClientConfig:        tlsCfg,
		TLSHandshakeTimeout:    c.cfg.Timeout,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
		ForceAttemptHTTP2:      false,
	}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(hreq)
	if err != nil {
		if ce := ctxError(ctx, h.t.host); ce != nil {
			return nil, ce
		}
		if strings.Contains(err.Error(), "response headers exceeded") {
			return nil, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("the response headers of %s are larger than %d bytes", h.t.host, MaxResponseHeaderBytes), Err: err}
		}
		return nil, &Error{Code: CodeConnect, Message: fmt.Sprintf("the request to %s (%s) failed: %s", h.t.host, h.addr, scrub(err.Error(), inject)), Err: errors.New(scrub(err.Error(), inject))}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ce := ctxError(ctx, h.t.host); ce != nil {
			return nil, ce
		}
		return nil, &Error{Code: CodeConnect, Message: fmt.Sprintf("reading the response of %s failed", h.t.host), Err: err}
	}
	out := &Response{Status: resp.StatusCode, Headers: map[string][]string(resp.Header)}
	if int64(len(data)) > limit {
		data, out.Truncated = data[:limit], true
	}
	out.Body = data
	return out, nil
}

// scrub removes injected values from a text (transport errors can quote
// request data).
func scrub(s string, inject []Injection) string {
	for _, in := range inject {
		if in.Value != "" {
			s = strings.ReplaceAll(s, in.Value, "[REDACTED:"+in.CredentialName+"]")
		}
	}
	return s
}
