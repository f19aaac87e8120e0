package wasm

// # Host API airlock_v1
//
// A tool whose manifest grants capabilities.network may import these
// functions from the module "airlock_v1" (all values i32, pointers are
// offsets in the guest's exported memory):
//
//	http_request(req_ptr, req_len, out_ptr, out_cap, out_len_ptr) -> errno
//	http_result(out_ptr, out_cap, out_len_ptr) -> errno
//
// http_request reads a JSON request of req_len bytes at req_ptr:
//
//	{"method": "GET", "url": "https://api.example.org/x",
//	 "headers": {"Accept": ["application/json"]}, "body": "<base64>"}
//
// (method defaults to GET; headers and body are optional), sends it through
// the call's egress binding (sandbox.Call.Egress) and produces a JSON result,
// either a response
//
//	{"status": 200, "headers": {"Content-Type": ["text/plain"]},
//	 "body": "<base64>", "truncated": false}
//
// or a refusal or failure
//
//	{"error": {"code": "not_allowed", "message": "host evil.org is not ..."}}
//
// with the codes of package runtime/egress plus "network_not_granted" (the
// call has no egress), "budget_exceeded" (the call used up its requests or
// response bytes) and "invalid_request" (the JSON is malformed). Injected
// credentials are attached host-side: they never enter guest memory.
//
// When the result fits in out_cap bytes it is written at out_ptr, its
// length at out_len_ptr (u32 little endian), and the errno is 0. When it
// does not, nothing is written at out_ptr, its length is written at
// out_len_ptr, the errno is 1 (ErrnoTooSmall) and the result is kept until
// the guest fetches it with http_result into a buffer large enough (errno
// 0), or until the next http_request replaces it. The errno is 2
// (ErrnoFault) when a pointer or length lies outside guest memory, and 3
// (ErrnoNoResult) when http_result finds no kept result.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/sandbox"
)

// Names of the airlock_v1 host functions.
const (
	FuncHTTPRequest = "http_request"
	FuncHTTPResult  = "http_result"
)

// Errnos of the airlock_v1 host functions.
const (
	ErrnoOK       = 0
	ErrnoTooSmall = 1
	ErrnoFault    = 2
	ErrnoNoResult = 3
)

// Defaults of the per-call HTTP budget in Config.
const (
	DefaultMaxHTTPRequests      = 64
	DefaultMaxHTTPResponseBytes = 8 << 20
	DefaultMaxHTTPRequestBytes  = 2 << 20
)

// Error codes the host adds to those of package egress.
const (
	CodeNetworkNotGranted = "network_not_granted"
	CodeBudgetExceeded    = "budget_exceeded"
)

var (
	i32   = api.ValueTypeI32
	reqFn = []api.ValueType{i32, i32, i32, i32, i32}
	resFn = []api.ValueType{i32, i32, i32}
	errFn = []api.ValueType{i32}
)

// hostFuncs are the airlock_v1 functions this executor provides.
var hostFuncs = map[string]bool{FuncHTTPRequest: true, FuncHTTPResult: true}

// instantiateHostModule defines airlock_v1 in a tool's runtime. The
// functions find their call's state in the context (see withHostCall).
func instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(HostModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(httpRequest), reqFn, errFn).
		WithParameterNames("req_ptr", "req_len", "out_ptr", "out_cap", "out_len_ptr").Export(FuncHTTPRequest).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(httpResult), resFn, errFn).
		WithParameterNames("out_ptr", "out_cap", "out_len_ptr").Export(FuncHTTPResult).
		Instantiate(ctx)
	return err
}

// hostCall is the airlock_v1 state of one call.
type hostCall struct {
	egress      sandbox.Egress
	maxRequests int
	maxBytes    int64
	maxReq      uint32
	log         zerolog.Logger

	mu       sync.Mutex
	requests int
	bytes    int64
	pending  []byte
}

type hostCallKey struct{}

func withHostCall(ctx context.Context, hc *hostCall) context.Context {
	return context.WithValue(ctx, hostCallKey{}, hc)
}

// guestRequest is the JSON request of http_request.
type guestRequest struct {
	Method  string              `json:"method"`
	URL     string              `json:"url"`
	Headers map[string][]string `json:"headers"`
	Body    []byte              `json:"body"`
}

// guestResult is the JSON result of http_request.
type guestResult struct {
	Status    int                 `json:"status,omitempty"`
	Headers   map[string][]string `json:"headers,omitempty"`
	Body      []byte              `json:"body,omitempty"`
	Truncated bool                `json:"truncated,omitempty"`
	Error     *guestError         `json:"error,omitempty"`
}

type guestError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func failure(code, format string, args ...any) *guestResult {
	return &guestResult{Error: &guestError{Code: code, Message: fmt.Sprintf(format, args...)}}
}

func httpRequest(ctx context.Context, mod api.Module, stack []uint64) {
	reqPtr, reqLen := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	outPtr, outCap, outLenPtr := api.DecodeU32(stack[2]), api.DecodeU32(stack[3]), api.DecodeU32(stack[4])
	hc, _ := ctx.Value(hostCallKey{}).(*hostCall)
	mem := mod.Memory()
	if mem == nil || !inMemory(mem, outPtr, outCap) || !inMemory(mem, outLenPtr, 4) || !inMemory(mem, reqPtr, reqLen) {
		stack[0] = ErrnoFault
		return
	}
	var res *guestResult
	if hc == nil {
		res = failure(CodeNetworkNotGranted, "this call has no network: the manifest grants none, or the executor gave the call no egress")
	} else {
		res = hc.do(ctx, mem, reqPtr, reqLen)
	}
	out, err := json.Marshal(res)
	if err != nil {
		out, _ = json.Marshal(failure("internal", "cannot encode the result: %v", err))
	}
	if hc != nil {
		hc.mu.Lock()
		hc.pending = nil
		hc.mu.Unlock()
	}
	stack[0] = deliver(hc, mem, out, outPtr, outCap, outLenPtr)
}

// deliver writes out, or keeps it for http_result when it does not fit.
func deliver(hc *hostCall, mem api.Memory, out []byte, outPtr, outCap, outLenPtr uint32) uint64 {
	if !mem.WriteUint32Le(outLenPtr, uint32(len(out))) {
		return ErrnoFault
	}
	if uint64(len(out)) > uint64(outCap) {
		if hc != nil {
			hc.mu.Lock()
			hc.pending = out
			hc.mu.Unlock()
		}
		return ErrnoTooSmall
	}
	if !mem.Write(outPtr, out) {
		return ErrnoFault
	}
	return ErrnoOK
}

func httpResult(ctx context.Context, mod api.Module, stack []uint64) {
	outPtr, outCap, outLenPtr := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	hc, _ := ctx.Value(hostCallKey{}).(*hostCall)
	mem := mod.Memory()
	if mem == nil || !inMemory(mem, outPtr, outCap) || !inMemory(mem, outLenPtr, 4) {
		stack[0] = ErrnoFault
		return
	}
	if hc == nil {
		stack[0] = ErrnoNoResult
		return
	}
	hc.mu.Lock()
	out := hc.pending
	hc.mu.Unlock()
	if out == nil {
		stack[0] = ErrnoNoResult
		return
	}
	errno := deliver(hc, mem, out, outPtr, outCap, outLenPtr)
	if errno == ErrnoOK {
		hc.mu.Lock()
		hc.pending = nil
		hc.mu.Unlock()
	}
	stack[0] = errno
}

func inMemory(mem api.Memory, ptr, n uint32) bool {
	return uint64(ptr)+uint64(n) <= uint64(mem.Size())
}

// do runs one request of the guest under the call's budget.
func (hc *hostCall) do(ctx context.Context, mem api.Memory, reqPtr, reqLen uint32) *guestResult {
	if hc.egress == nil {
		return failure(CodeNetworkNotGranted, "this call has no network: the manifest grants none, or the executor gave the call no egress")
	}
	if reqLen > hc.maxReq {
		return failure(egress.CodeTooLarge, "the request JSON has %d bytes, more than the %d allowed: send a smaller body", reqLen, hc.maxReq)
	}
	raw, ok := mem.Read(reqPtr, reqLen)
	if !ok {
		return failure("invalid_request", "the request lies outside guest memory")
	}
	var gr guestRequest
	dec := json.NewDecoder(bytes.NewReader(raw)) // copies out of guest memory as it decodes
	dec.DisallowUnknownFields()
	if err := dec.Decode(&gr); err != nil {
		return failure("invalid_request", "the request is not a JSON object {method, url, headers, body(base64)}: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return failure("invalid_request", "the request has trailing data after the JSON object")
	}

	hc.mu.Lock()
	if hc.requests >= hc.maxRequests {
		hc.mu.Unlock()
		return failure(CodeBudgetExceeded, "this call already made %d HTTP requests, the most one call may make", hc.maxRequests)
	}
	remaining := hc.maxBytes - hc.bytes
	if remaining <= 0 {
		hc.mu.Unlock()
		return failure(CodeBudgetExceeded, "this call already received %d response bytes, the most one call may receive", hc.maxBytes)
	}
	hc.requests++
	hc.mu.Unlock()

	resp, err := hc.egress.Do(ctx, egress.Request{
		Method: gr.Method, URL: gr.URL, Headers: gr.Headers, Body: gr.Body, MaxResponseBytes: remaining,
	})
	if err != nil {
		var ee *egress.Error
		if errors.As(err, &ee) {
			hc.log.Debug().Str("code", ee.Code).Msg("guest http request refused or failed")
			return failure(ee.Code, "%s", ee.Message)
		}
		return failure(egress.CodeConnect, "%v", err)
	}
	hc.mu.Lock()
	hc.bytes += int64(len(resp.Body))
	hc.mu.Unlock()
	return &guestResult{Status: resp.Status, Headers: resp.Headers, Body: resp.Body, Truncated: resp.Truncated}
}
