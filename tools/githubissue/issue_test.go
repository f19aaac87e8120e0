package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/tools/sdk"
)

func fake(t *testing.T, status int, body string, env string) *sdk.Request {
	t.Helper()
	var got sdk.Request
	send = func(ctx context.Context, req sdk.Request) (sdk.Response, error) {
		got = req
		return sdk.Response{Status: status, Body: []byte(body)}, nil
	}
	getenv = func(k string) string {
		if k == "GITHUB_API_BASE" {
			return env
		}
		return ""
	}
	t.Cleanup(func() { send, getenv = sdk.HTTP, os.Getenv })
	return &got
}

func TestCreateSendsTheIssue(t *testing.T) {
	got := fake(t, 201, `{"number":42,"html_url":"https://github.com/o/r/issues/42","id":1}`, "https://ghe.example/api/v3/")
	body := "details"
	out, err := create(context.Background(), Input{Owner: "o-1", Repo: ".github", Title: "Broken", Body: &body, Labels: []string{"bug"}})
	if err != nil {
		t.Fatal(err)
	}
	if out != (Output{Number: 42, URL: "https://github.com/o/r/issues/42"}) {
		t.Fatalf("output %+v", out)
	}
	if got.Method != "POST" || got.URL != "https://ghe.example/api/v3/repos/o-1/.github/issues" {
		t.Fatalf("request %s %s", got.Method, got.URL)
	}
	if _, ok := got.Headers["Authorization"]; ok {
		t.Fatal("the tool set Authorization: the host injects it")
	}
	var sent map[string]any
	if err := json.Unmarshal(got.Body, &sent); err != nil {
		t.Fatal(err)
	}
	if sent["title"] != "Broken" || sent["body"] != "details" || len(sent["labels"].([]any)) != 1 {
		t.Fatalf("sent %s", got.Body)
	}
	// No body, no labels: neither is sent; the default base is used.
	got = fake(t, 201, `{"number":1,"html_url":"https://github.com/o/r/issues/1"}`, "")
	if _, err := create(context.Background(), Input{Owner: "o", Repo: "r", Title: "t"}); err != nil {
		t.Fatal(err)
	}
	if got.URL != "https://api.github.com/repos/o/r/issues" || strings.Contains(string(got.Body), "labels") || strings.Contains(string(got.Body), "body") {
		t.Fatalf("request %s %s", got.URL, got.Body)
	}
}

func TestCreateMapsAPIErrors(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		code   string
		want   string
	}{
		{401, `{"message":"Bad credentials"}`, CodeUnauthorized, "Bad credentials"},
		{403, `{"message":"Resource not accessible by integration"}`, CodeForbidden, "Issues write permission"},
		{404, `{"message":"Not Found"}`, CodeNotFound, "o/r was not found"},
		{410, `{"message":"Issues are disabled for this repo"}`, CodeForbidden, "disabled"},
		{422, `{"message":"Validation Failed","errors":[{"resource":"Issue","field":"title","code":"missing_field"}]}`, CodeValidationFailed, "Validation Failed; title missing_field"},
		{500, `<html>oops</html>`, CodeAPIError, "answered 500"},
		{201, `{"id":3}`, CodeAPIError, "issue number"},
		{422, `{"message":"` + strings.Repeat("é", 1000) + `"}`, CodeValidationFailed, "..."},
	} {
		fake(t, c.status, c.body, "")
		_, err := create(context.Background(), Input{Owner: "o", Repo: "r", Title: "t"})
		var e *sdk.Error
		if !errors.As(err, &e) || e.Code != c.code || !strings.Contains(e.Error(), c.want) {
			t.Errorf("%d: %v, want %s containing %q", c.status, err, c.code, c.want)
		}
		if e != nil && len(e.Error()) > maxAPIDetail+300 {
			t.Errorf("%d: message of %d bytes is not bounded", c.status, len(e.Error()))
		}
	}
	// Egress refusals come back as they are.
	send = func(context.Context, sdk.Request) (sdk.Response, error) {
		return sdk.Response{}, sdk.Errorf("not_allowed", "host x is not in the allowlist")
	}
	if _, err := create(context.Background(), Input{Owner: "o", Repo: "r", Title: "t"}); err == nil || !strings.Contains(err.Error(), "allowlist") {
		t.Fatalf("refusal: %v", err)
	}
}

func TestCreateRefusesBadInput(t *testing.T) {
	long := strings.Repeat("x", MaxBody+1)
	for name, in := range map[string]Input{
		"owner":      {Owner: "-o", Repo: "r", Title: "t"},
		"owner/":     {Owner: "o/x", Repo: "r", Title: "t"},
		"repo":       {Owner: "o", Repo: "..", Title: "t"},
		"repo/":      {Owner: "o", Repo: "r/../../x", Title: "t"},
		"title":      {Owner: "o", Repo: "r", Title: " "},
		"long title": {Owner: "o", Repo: "r", Title: strings.Repeat("t", MaxTitle+1)},
		"body":       {Owner: "o", Repo: "r", Title: "t", Body: &long},
		"label":      {Owner: "o", Repo: "r", Title: "t", Labels: []string{""}},
	} {
		fake(t, 201, `{"number":1,"html_url":"u"}`, "")
		if _, err := create(context.Background(), in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, base := range []string{"http://api.github.com", "https://u:p@api.github.com", "api.github.com", "https://x/?q=1"} {
		fake(t, 201, `{"number":1,"html_url":"u"}`, base)
		var e *sdk.Error
		if _, err := create(context.Background(), Input{Owner: "o", Repo: "r", Title: "t"}); !errors.As(err, &e) || e.Code != CodeBadConfig {
			t.Errorf("base %q: %v", base, err)
		}
	}
}
