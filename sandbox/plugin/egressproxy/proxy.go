// Package egressproxy is the only network path of an isolated plugin
// process: an HTTP proxy on a unix socket, inside the plugin's socket
// directory, that sends each request through the call's egress binding
// (sandbox.Call.Egress). The binding enforces the manifest's allowlist, the
// address checks and the http credential injection exactly as it does for
// the WASM host function; the plugin's network namespace has nothing else.
//
// # Protocol
//
// The plugin sends one HTTP/1.1 request per connection in absolute form,
// the target URL on the request line, over the unix socket:
//
//	GET https://api.example.org/repos/x HTTP/1.1
//	Host: api.example.org
//
// (Client returns an *http.Client that does this.) The proxy makes the
// connection and the TLS handshake itself, so that it can check the
// address and attach credentials; CONNECT is therefore refused. The answer
// is the upstream response (status, headers, body, at most the egress
// caps), with the header X-Airlock-Egress-Truncated: true when the body was
// cut. A request that is refused or fails gets a status (403 for a
// refusal, 400, 413, 429, 502, 504) with the header X-Airlock-Egress-Error
// set to the code (those of package runtime/egress, plus
// network_not_granted, budget_exceeded, connect_refused) and a JSON body
// {"error": {"code": ..., "message": ...}}, the shape of the WASM host
// function's failures.
package egressproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/sandbox"
)

// Bounds of the proxy.
const (
	// MaxConns bounds the open connections.
	MaxConns = 16
	// MaxConcurrent bounds the requests sent upstream at once.
	MaxConcurrent = 4
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes = egress.MaxRequestHeaderBytes + 4<<10
	// MaxBodyBytes bounds a request's body.
	MaxBodyBytes = egress.DefaultMaxRequestBytes
	// MaxRequests and MaxResponseBytes are the budget of one binding
	// (one call), as for WASM tools.
	MaxRequests      = 64
	MaxResponseBytes = 8 << 20
	// ReadTimeout bounds reading a request; WriteTimeout bounds a whole
	// exchange (the egress timeout is shorter).
	ReadTimeout  = 30 * time.Second
	WriteTimeout = egress.DefaultTimeout + 30*time.Second
)

// Header names of the protocol.
const (
	HeaderError     = "X-Airlock-Egress-Error"
	HeaderTruncated = "X-Airlock-Egress-Truncated"
)

// Codes the proxy adds to those of package egress.
const (
	CodeNetworkNotGranted = "network_not_granted"
	CodeBudgetExceeded    = "budget_exceeded"
	CodeConnectRefused    = "connect_refused"
)

// Proxy is a running egress proxy.
type Proxy struct {
	path string
	srv  *http.Server
	log  zerolog.Logger
	sem  chan struct{}
	done chan struct{}

	mu       sync.Mutex
	e        sandbox.Egress
	requests int
	bytes    int64

	closeOnce sync.Once
	closeErr  error
}

// Serve listens on the unix socket path (which must not exist; its
// directory must) with mode 0600, owned by the plugin's uid (see
// isolate.SandboxIDs), and serves until ctx ends or Close. e is the first
// binding (nil: every request is refused).
func Serve(ctx context.Context, path string, e sandbox.Egress, log zerolog.Logger) (*Proxy, error) {
	return ServePeers(ctx, path, e, nil, log)
}

// PeerCheck decides whether the process pid (as the executor sees it, from
// SO_PEERCRED) may use the proxy.
type PeerCheck func(pid int32) bool

// ServePeers is Serve that accepts a connection only when allow approves
// the connecting process (nil: every process that may open the socket).
// The socket belongs to the plugin's uid, so any host process running as
// that uid could open it; the plugin backend passes a check that the peer
// lives in the plugin's own PID namespace.
func ServePeers(ctx context.Context, path string, e sandbox.Egress, allow PeerCheck, log zerolog.Logger) (*Proxy, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("egress proxy: socket path %q is not absolute", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("egress proxy: %s already exists: remove it or pick another path", path)
	}
	lis, err := listen(path)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		path: path, e: e, sem: make(chan struct{}, MaxConcurrent), done: make(chan struct{}),
		log: log.With().Str("component", "egressproxy").Logger(),
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: ReadTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       ReadTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          nil,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	p.srv.SetKeepAlivesEnabled(false)
	go func() {
		defer close(p.done)
		var l net.Listener = lis
		if allow != nil {
			l = &peerListener{Listener: lis, allow: allow, log: p.log}
		}
		_ = p.srv.Serve(netutil.LimitListener(l, MaxConns))
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Close()
		case <-p.done:
		}
	}()
	return p, nil
}

// listen binds the socket in a private directory next to path, sets its
// mode and owner, then moves it into place: it is never reachable with
// looser permissions.
func listen(path string) (net.Listener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".egress-")
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "s")
	lis, err := net.Listen("unix", staged)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: listen on %s: %w", path, err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		_ = lis.Close()
		return nil, fmt.Errorf("egress proxy: socket %s: %w", path, err)
	}
	if err := os.Chmod(staged, 0o600); err != nil {
		return fail(err)
	}
	if uid, gid := isolate.SandboxIDs(); uid != os.Getuid() || gid != os.Getgid() {
		if err := os.Lchown(staged, uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(staged, path); err != nil {
		return fail(err)
	}
	return lis, nil
}

// Path is the socket's path.
func (p *Proxy) Path() string { return p.path }

// Bind swaps the egress binding for the next requests (one call's rules
// and credentials) and resets the per-call budget; nil refuses every
// request.
func (p *Proxy) Bind(e sandbox.Egress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.e, p.requests, p.bytes = e, 0, 0
}

// Close stops the proxy, ends the requests in flight and removes the
// socket.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.srv.Close()
		<-p.done
		if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) && p.closeErr == nil {
			p.closeErr = err
		}
	})
	return p.closeErr
}

type failure struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (p *Proxy) fail(w http.ResponseWriter, status int, code, msg string) {
	var f failure
	f.Error.Code, f.Error.Message = code, msg
	b, _ := json.Marshal(f)
	h := w.Header()
	h.Set(HeaderError, code)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	p.log.Debug().Str("code", code).Int("status", status).Msg("plugin request refused")
}

// hopByHop are headers of the connection to the proxy, not of the request.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Content-Length"}

// statusOf maps an egress error code to the proxy's status.
func statusOf(code string) int {
	switch code {
	case egress.CodeInvalidRequest:
		return http.StatusBadRequest
	case egress.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case egress.CodeTimeout:
		return http.StatusGatewayTimeout
	case egress.CodeConnect, egress.CodeResolve, egress.CodeTooManyRedirects, egress.CodeCanceled:
		return http.StatusBadGateway
	default:
		// not_allowed, forbidden_header, forbidden_address,
		// insecure_credential, redirect_refused: refusals.
		return http.StatusForbidden
	}
}

// ServeHTTP handles one request of the plugin.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.fail(w, http.StatusMethodNotAllowed, CodeConnectRefused, "CONNECT is refused: airlock makes the TLS connection itself to check the address and attach credentials; send the request in absolute form (GET https://host/path HTTP/1.1) over this socket")
		return
	}
	if !r.URL.IsAbs() || r.URL.Host == "" {
		p.fail(w, http.StatusBadRequest, egress.CodeInvalidRequest, "the request line must carry the absolute URL (GET https://host/path HTTP/1.1): this socket is airlock's egress proxy")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		p.fail(w, http.StatusBadRequest, egress.CodeInvalidRequest, "reading the request body failed: "+err.Error())
		return
	}
	if len(body) > MaxBodyBytes {
		p.fail(w, http.StatusRequestEntityTooLarge, egress.CodeTooLarge, fmt.Sprintf("the request body has more than %d bytes: send less", MaxBodyBytes))
		return
	}
	hdr := r.Header.Clone()
	for _, h := range hopByHop {
		hdr.Del(h)
	}

	p.mu.Lock()
	e := p.e
	if e == nil {
		p.mu.Unlock()
		p.fail(w, http.StatusForbidden, CodeNetworkNotGranted, "this call has no network: the manifest grants none, or no call is running")
		return
	}
	if p.requests >= MaxRequests {
		p.mu.Unlock()
		p.fail(w, http.StatusTooManyRequests, CodeBudgetExceeded, fmt.Sprintf("this call already made %d HTTP requests, the most one call may make", MaxRequests))
		return
	}
	remaining := MaxResponseBytes - p.bytes
	if remaining <= 0 {
		p.mu.Unlock()
		p.fail(w, http.StatusTooManyRequests, CodeBudgetExceeded, fmt.Sprintf("this call already received %d response bytes, the most one call may receive", MaxResponseBytes))
		return
	}
	p.requests++
	p.mu.Unlock()

	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-r.Context().Done():
		return
	}
	var reqBody []byte
	if len(body) > 0 {
		reqBody = body
	}
	resp, err := e.Do(r.Context(), egress.Request{
		Method: r.Method, URL: r.URL.String(), Headers: hdr, Body: reqBody, MaxResponseBytes: remaining,
	})
	if err != nil {
		var ee *egress.Error
		if errors.As(err, &ee) {
			p.fail(w, statusOf(ee.Code), ee.Code, ee.Message)
			return
		}
		p.fail(w, http.StatusBadGateway, egress.CodeConnect, err.Error())
		return
	}
	p.mu.Lock()
	p.bytes += int64(len(resp.Body))
	p.mu.Unlock()
	h := w.Header()
	for k, vs := range resp.Headers {
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
	h.Del(HeaderError)
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	if resp.Truncated {
		h.Set(HeaderTruncated, "true")
	} else {
		h.Del(HeaderTruncated)
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// Client returns an HTTP client for the plugin side: every request goes
// to the proxy at socket in absolute form, one connection per request.
func Client(socket string, timeout time.Duration) *http.Client {
	return &http.Client{Transport: &transport{socket: socket}, Timeout: timeout,
		// The proxy follows the redirects the rules allow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type transport struct{ socket string }

// RoundTrip writes req in absolute form to the proxy and reads the answer.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	var d net.Dialer
	c, err := d.DialContext(req.Context(), "unix", t.socket)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	stop := context.AfterFunc(req.Context(), func() { _ = c.Close() })
	out := req.Clone(req.Context())
	out.Close = true
	if err := out.WriteProxy(c); err != nil {
		stop()
		_ = c.Close()
		return nil, fmt.Errorf("egress proxy: send: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		stop()
		_ = c.Close()
		return nil, fmt.Errorf("egress proxy: read the answer: %w", err)
	}
	resp.Body = &closeBoth{ReadCloser: resp.Body, c: c, stop: stop}
	return resp, nil
}

type closeBoth struct {
	io.ReadCloser
	c    net.Conn
	stop func() bool
}

func (b *closeBoth) Close() error {
	b.stop()
	err := b.ReadCloser.Close()
	_ = b.c.Close()
	return err
}

// peerListener drops connections from processes its check refuses.
type peerListener struct {
	net.Listener
	allow PeerCheck
	log   zerolog.Logger
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		pid, ok := peerPID(c)
		if ok && l.allow(pid) {
			return c, nil
		}
		l.log.Warn().Int32("peer_pid", pid).Msg("refused an egress proxy connection from a process outside the plugin")
		_ = c.Close()
	}
}
