package main

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/tools/sdk"
)

// MaxBodyText bounds the body text returned, in bytes of UTF-8.
const MaxBodyText = 256 << 10

// Input is the http.fetch arguments.
type Input struct {
	URL     string            `json:"url"`
	Method  string            `json:"method,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    *string           `json:"body,omitempty"`
}

// Output is the http.fetch result.
type Output struct {
	Status int `json:"status"`
	// Headers joins repeated headers with ", ".
	Headers map[string]string `json:"headers"`
	// Body is the body as text: invalid UTF-8 is replaced by U+FFFD and the
	// text is cut at MaxBodyText bytes.
	Body string `json:"body"`
	// Truncated is true when the body was cut, here or by the executor.
	Truncated bool `json:"truncated"`
}

// send is the HTTP function, sdk.HTTP in the module (tests replace it).
var send = sdk.HTTP

func fetch(ctx context.Context, in Input) (Output, error) {
	if in.URL == "" {
		return Output{}, sdk.Errorf(sdk.CodeInvalidInput, "url is required: give an absolute http or https URL")
	}
	method := strings.ToUpper(in.Method)
	if method == "" {
		method = "GET"
	}
	req := sdk.Request{Method: method, URL: in.URL}
	if len(in.Headers) > 0 {
		req.Headers = make(map[string][]string, len(in.Headers))
		for k, v := range in.Headers {
			req.Headers[k] = []string{v}
		}
	}
	if in.Body != nil {
		req.Body = []byte(*in.Body)
	}
	resp, err := send(ctx, req)
	if err != nil {
		return Output{}, err
	}
	out := Output{Status: resp.Status, Headers: make(map[string]string, len(resp.Headers)), Truncated: resp.Truncated}
	for k, vs := range resp.Headers {
		out.Headers[k] = strings.Join(vs, ", ")
	}
	body := resp.Body
	if len(body) > MaxBodyText {
		body, out.Truncated = body[:MaxBodyText], true
		// Do not split a multi-byte character at the cut.
		for i := 0; i < utf8.UTFMax && len(body) > 0 && !utf8.Valid(body); i++ {
			body = body[:len(body)-1]
		}
	}
	out.Body = strings.ToValidUTF8(string(body), "\uFFFD")
	return out, nil
}
