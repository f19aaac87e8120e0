package sdk

import (
	"context"
	"encoding/json"
	"errors"
)

// Request is an HTTP request a tool sends with HTTP.
type Request struct {
	// Method is an upper-case HTTP method; "" means GET.
	Method string
	// URL is an absolute http or https URL. The manifest's
	// capabilities.network must allow its scheme, host, port, method and
	// path.
	URL string
	// Headers to send. A header the executor injects a credential into
	// (for example Authorization) may not be set: the request is refused.
	Headers map[string][]string
	// Body to send (nil: none).
	Body []byte
}

// Response is the final response (after the redirects the allowlist
// permits).
type Response struct {
	Status    int
	Headers   map[string][]string
	Body      []byte
	Truncated bool // the body was cut at the executor's cap
}

// Error codes of HTTP, besides those of the executor's egress ("not_allowed",
// "forbidden_address", "redirect_refused", "timeout", ...).
const (
	// CodeNoNetwork: the module runs outside the airlock sandbox (natively),
	// where there is no airlock_v1 host.
	CodeNoNetwork = "network_unavailable"
)

// MaxHTTPResult bounds the result a single HTTP call accepts from the host.
const MaxHTTPResult = 64 << 20

// wireRequest and wireResult are the JSON of the airlock_v1 http_request
// ABI (see sandbox/wasm/hostapi.go); []byte travels as base64.
type wireRequest struct {
	Method  string              `json:"method,omitempty"`
	URL     string              `json:"url"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    []byte              `json:"body,omitempty"`
}

type wireResult struct {
	Status    int                 `json:"status"`
	Headers   map[string][]string `json:"headers"`
	Body      []byte              `json:"body"`
	Truncated bool                `json:"truncated"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// HTTP sends req through the executor's airlock_v1 host function, which
// enforces the tool's network allowlist and attaches any credential the
// manifest injects for the request's host (the tool never sees it). A
// refusal or failure is an *Error whose Code says why (for example
// "not_allowed" or "forbidden_address") and whose message names the host
// and the rule. A non-2xx status is not an error.
func HTTP(ctx context.Context, req Request) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, Errorf("canceled", "http request not sent: %w", err)
	}
	in, err := json.Marshal(wireRequest{Method: req.Method, URL: req.URL, Headers: req.Headers, Body: req.Body})
	if err != nil {
		return Response{}, Errorf(CodeInternal, "encode the http request: %w", err)
	}
	out, err := hostHTTP(in)
	if err != nil {
		return Response{}, err
	}
	var res wireResult
	if err := json.Unmarshal(out, &res); err != nil {
		return Response{}, Errorf(CodeInternal, "decode the host's http result: %w", err)
	}
	if res.Error != nil {
		return Response{}, &Error{Code: res.Error.Code, Err: errors.New(res.Error.Message)}
	}
	return Response{Status: res.Status, Headers: res.Headers, Body: res.Body, Truncated: res.Truncated}, nil
}
