// Package plugin turns a typed Go function into a native airlock tool: a
// program the executor starts as an isolated go-plugin process
// (ARCHITECTURE.md 3.5), for tools that need a real binary or an OS
// feature that WebAssembly does not offer.
//
// A tool author writes the same typed function as for a WASM tool
// (package tools/sdk) and a one-line main:
//
//	func main() { plugin.Main(query) }
//
// and builds it natively (go build). The manifest names the binary and pins
// its SHA-256:
//
//	runtime:
//	  plugin: {command: ../../build/plugins/sqlitequery, sha256: "..."}
//
// # Protocol v1
//
// The executor starts the binary with no host environment (only the
// manifest's capabilities.env and go-plugin's own variables), speaks gRPC
// over a unix socket with mutual TLS (go-plugin AutoMTLS), and sends one
// call at a time (package sandbox/plugin/pluginv1, service Tool). A process
// serves many calls of one tool (of one task when the tool is granted the
// workspace) and may be killed between any two.
//
// For each call the function gets:
//   - the validated arguments, decoded into In with unknown fields rejected
//     and numbers in `any` kept exact (json.Number), as tools/sdk does;
//   - a context that carries the call's deadline and is canceled when the
//     executor cancels the call (the task ended, the caller went away); the
//     process is killed shortly after, so return promptly;
//   - Credential: the env- and file-mode credentials of THIS call, by the
//     name the manifest gives them (inject.env.name, inject.file.path);
//     they are never in the process environment;
//   - Workspace: the path of the task's workspace ("" when not granted);
//   - HTTPClient: an *http.Client whose requests go through the executor's
//     egress proxy, which applies the manifest's network allowlist and
//     attaches http-mode credentials the tool never sees.
//
// The function's result is encoded as one JSON value. A returned error
// becomes the outcome's message, as with WASM tools: an *sdk.Error is
// written as "code: message". A panic fails the call with "panic: ...".
package plugin

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
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/airlock-dev/airlock/sandbox/plugin/pluginv1"
	"github.com/airlock-dev/airlock/tools/sdk"
)

// Exit codes carried in CallResponse.exit_code.
const (
	// ExitError: the function returned an error or the input did not decode.
	ExitError = 1
	// ExitPanic: the function panicked.
	ExitPanic = 2
)

// maxErrorBytes bounds the error message sent back.
const maxErrorBytes = pluginv1.MaxErrorBytes

// Main serves fn as a native tool over the plugin protocol until the
// executor ends the process. It never returns. Started by anything but the
// executor, it prints what it is and exits 1.
func Main[In, Out any](fn func(ctx context.Context, in In) (Out, error)) {
	goplugin.Serve(ServeConfig(fn))
	os.Exit(0)
}

// ServeConfig is the go-plugin configuration Main serves: the protocol v1
// handshake, gRPC with bounded messages, and fn as the Tool service. Use it
// to serve a tool in a test (goplugin.ServeConfig.Test) or to embed one.
func ServeConfig[In, Out any](fn func(ctx context.Context, in In) (Out, error)) *goplugin.ServeConfig {
	return &goplugin.ServeConfig{
		HandshakeConfig: pluginv1.Handshake,
		Plugins:         goplugin.PluginSet{pluginv1.PluginName: &pluginv1.GRPCPlugin{Impl: NewServer(fn)}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts,
				grpc.MaxRecvMsgSize(pluginv1.MaxInputBytes+pluginv1.Slack),
				grpc.MaxSendMsgSize(pluginv1.MaxOutputBytes+pluginv1.Slack))
			return grpc.NewServer(opts...)
		},
	}
}

// NewServer returns fn as a pluginv1.ToolServer: what Main serves.
func NewServer[In, Out any](fn func(ctx context.Context, in In) (Out, error)) pluginv1.ToolServer {
	var wrapped func(ctx context.Context, in In) (Out, error)
	if fn != nil {
		wrapped = func(ctx context.Context, in In) (out Out, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = &panicError{value: r}
				}
			}()
			return fn(ctx, in)
		}
	}
	return &server{h: sdk.Handle(wrapped)}
}

type server struct {
	pluginv1.UnimplementedToolServer
	h sdk.Handler
}

// panicError is a recovered panic of the tool function.
type panicError struct{ value any }

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// Call runs the tool on one request.
func (s *server) Call(ctx context.Context, req *pluginv1.CallRequest) (*pluginv1.CallResponse, error) {
	cc := &callInfo{creds: req.GetCredentials(), workspace: req.GetWorkspace(), proxy: req.GetEgressProxy()}
	out, err := s.h.Call(context.WithValue(ctx, callKey{}, cc), req.GetInput())
	if err != nil {
		code := int32(ExitError)
		var pe *panicError
		if errors.As(err, &pe) {
			code = ExitPanic
		}
		msg := err.Error()
		if len(msg) > maxErrorBytes {
			msg = msg[:maxErrorBytes] + "... (truncated)"
		}
		if msg == "" {
			msg = "the tool failed without a message"
		}
		return &pluginv1.CallResponse{Error: msg, ExitCode: code}, nil
	}
	return &pluginv1.CallResponse{Output: out}, nil
}

type callKey struct{}

// callInfo is what one call carries besides its arguments.
type callInfo struct {
	creds     map[string]string
	workspace string
	proxy     string
}

func info(ctx context.Context) *callInfo {
	c, _ := ctx.Value(callKey{}).(*callInfo)
	if c == nil {
		return &callInfo{}
	}
	return c
}

// Credential returns the value of the call's env- or file-mode credential
// named name (the manifest's inject.env.name or inject.file.path), and
// whether the call has it. http-mode credentials are never visible: the
// egress proxy attaches them.
func Credential(ctx context.Context, name string) (string, bool) {
	v, ok := info(ctx).creds[name]
	return v, ok
}

// Workspace returns the path of the task's workspace as this process sees
// it, or "" when the manifest grants no workspace or the call has no task.
func Workspace(ctx context.Context) string {
	return info(ctx).workspace
}

// HTTPClient returns a client whose requests go through the executor's
// egress proxy for this call. Every request fails when the manifest grants
// no network. A request the proxy refuses or cannot make fails with an
// *EgressError carrying the egress error code.
func HTTPClient(ctx context.Context) *http.Client {
	return &http.Client{
		Transport: &proxyTransport{socket: info(ctx).proxy},
		// Redirects are followed by the client, each one checked again by
		// the proxy.
		Timeout: 0,
	}
}

// ErrNoNetwork is the error of a request made without a granted network.
var ErrNoNetwork = errors.New("network is not granted to this tool: the manifest has no capabilities.network")

// proxyTransport sends each request in absolute form ("GET https://host/p
// HTTP/1.1") on a fresh connection to the proxy's unix socket: the host
// makes the real connection, TLS included, so that it can apply the
// allowlist and attach credentials.
type proxyTransport struct{ socket string }

// maxResponseHeader bounds the proxy's response header.
const maxResponseHeader = 1 << 20

// RoundTrip implements http.RoundTripper.
func (t *proxyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if t.socket == "" {
		return nil, ErrNoNetwork
	}
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return nil, fmt.Errorf("request URL %v: want an absolute http or https URL", req.URL)
	}
	ctx := req.Context()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", t.socket)
	if err != nil {
		return nil, fmt.Errorf("connect to the egress proxy %s: %w", t.socket, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	out := req.Clone(ctx)
	out.Close = true
	out.Header.Del("Proxy-Connection")
	out.Body = req.Body
	if err := out.WriteProxy(conn); err != nil {
		stop()
		conn.Close()
		return nil, fmt.Errorf("send the request to the egress proxy: %w", err)
	}
	br := bufio.NewReader(io.LimitReader(conn, 1<<62))
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("read the egress proxy's response: %w", err)
	}
	if code := resp.Header.Get(headerEgressError); code != "" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		resp.Body.Close()
		stop()
		conn.Close()
		e := &EgressError{Code: code, Status: resp.StatusCode}
		var f struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &f) == nil {
			e.Message = f.Error.Message
		}
		return nil, e
	}
	resp.Body = &connBody{ReadCloser: resp.Body, conn: conn, stop: stop}
	return resp, nil
}

// headerEgressError carries the code of a request the egress proxy
// refused or could not make (package sandbox/plugin/egressproxy).
const headerEgressError = "X-Airlock-Egress-Error"

// EgressError is a request the egress proxy refused or could not make: not
// in the allowlist, to a forbidden address, over a bound, unreachable.
type EgressError struct {
	Code    string // the egress error code, like "not_allowed"
	Status  int    // the proxy's HTTP status (403 for a refusal)
	Message string
}

func (e *EgressError) Error() string {
	if e.Message == "" {
		return "egress refused: " + e.Code
	}
	return "egress refused: " + e.Code + ": " + e.Message
}

// connBody closes the proxy connection with the response body.
type connBody struct {
	io.ReadCloser
	conn net.Conn
	stop func() bool
}

func (b *connBody) Close() error {
	err := b.ReadCloser.Close()
	b.stop()
	_ = b.conn.Close()
	return err
}
