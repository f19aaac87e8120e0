package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/tools/sdk"
)

func TestFetch(t *testing.T) {
	var got sdk.Request
	send = func(ctx context.Context, req sdk.Request) (sdk.Response, error) {
		got = req
		if strings.Contains(req.URL, "refused") {
			return sdk.Response{}, sdk.Errorf("not_allowed", "host refused.example is not in the allowlist")
		}
		if strings.Contains(req.URL, "big") {
			return sdk.Response{Status: 200, Body: []byte(strings.Repeat("é", MaxBodyText))}, nil
		}
		return sdk.Response{Status: 404, Headers: map[string][]string{"X-A": {"1", "2"}}, Body: []byte("bad \xff byte")}, nil
	}
	t.Cleanup(func() { send = sdk.HTTP })
	body := "payload"
	out, err := fetch(context.Background(), Input{URL: "https://ok.example/x", Method: "post", Headers: map[string]string{"Accept": "text/plain"}, Body: &body})
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || string(got.Body) != "payload" || got.Headers["Accept"][0] != "text/plain" {
		t.Fatalf("request %+v", got)
	}
	if out.Status != 404 || out.Headers["X-A"] != "1, 2" || out.Body != "bad \uFFFD byte" || out.Truncated {
		t.Fatalf("output %+v", out)
	}
	out, err = fetch(context.Background(), Input{URL: "https://big.example/"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != "GET" || !out.Truncated || len(out.Body) > MaxBodyText || !utf8.ValidString(out.Body) || strings.Contains(out.Body, "\uFFFD") {
		t.Fatalf("big body: %d bytes, truncated %v", len(out.Body), out.Truncated)
	}
	_, err = fetch(context.Background(), Input{URL: "https://refused.example/"})
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != "not_allowed" {
		t.Fatalf("refusal = %v", err)
	}
	if _, err := fetch(context.Background(), Input{}); err == nil {
		t.Fatal("no url accepted")
	}
}
