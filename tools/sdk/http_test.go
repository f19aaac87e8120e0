//go:build !wasip1

package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

func TestHTTPNative(t *testing.T) {
	_, err := HTTP(context.Background(), Request{URL: "https://example.org/"})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNoNetwork {
		t.Fatalf("natively HTTP = %v, want code %s", err, CodeNoNetwork)
	}
}

// TestHTTPWire checks the JSON of the airlock_v1 ABI with a fake host.
func TestHTTPWire(t *testing.T) {
	orig := hostHTTP
	t.Cleanup(func() { hostHTTP = orig })
	var got map[string]any
	hostHTTP = func(in []byte) ([]byte, error) {
		got = nil
		if err := json.Unmarshal(in, &got); err != nil {
			t.Fatal(err)
		}
		if got["url"] == "https://refused.example/" {
			return []byte(`{"error":{"code":"not_allowed","message":"host refused.example is not in the allowlist"}}`), nil
		}
		return []byte(`{"status":201,"headers":{"X-A":["1","2"]},"body":"aGk=","truncated":true}`), nil
	}
	resp, err := HTTP(context.Background(), Request{Method: "POST", URL: "https://ok.example/", Headers: map[string][]string{"Accept": {"text/plain"}}, Body: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	if got["method"] != "POST" || got["body"] != "aGk=" || got["headers"].(map[string]any)["Accept"].([]any)[0] != "text/plain" {
		t.Fatalf("wire request %v", got)
	}
	if resp.Status != 201 || string(resp.Body) != "hi" || !resp.Truncated || len(resp.Headers["X-A"]) != 2 {
		t.Fatalf("response %+v", resp)
	}
	_, err = HTTP(context.Background(), Request{URL: "https://refused.example/"})
	var e *Error
	if !errors.As(err, &e) || e.Code != "not_allowed" || err.Error() != "not_allowed: host refused.example is not in the allowlist" {
		t.Fatalf("refusal = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := HTTP(ctx, Request{URL: "https://ok.example/"}); err == nil {
		t.Fatal("a canceled context sent the request")
	}
}
