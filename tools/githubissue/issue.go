package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/tools/sdk"
)

// DefaultAPIBase is the API base URL when GITHUB_API_BASE is unset.
const DefaultAPIBase = "https://api.github.com"

// The bounds of the input, the same as the manifest's input schema (checked
// again here: the tool does not rely on the executor alone).
const (
	MaxTitle     = 256
	MaxBody      = 65536
	MaxLabels    = 100
	MaxLabel     = 50
	maxAPIDetail = 512 // bytes of an API error message quoted in a tool error
)

// Error codes of the tool, besides sdk.CodeInvalidInput and the egress codes.
const (
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeValidationFailed = "validation_failed"
	CodeAPIError         = "api_error"
	CodeBadConfig        = "bad_configuration"
)

var (
	ownerRe = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$`)
	repoRe  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

// Input is the github.issue.create arguments.
type Input struct {
	Owner  string   `json:"owner"`
	Repo   string   `json:"repo"`
	Title  string   `json:"title"`
	Body   *string  `json:"body,omitempty"`
	Labels []string `json:"labels,omitempty"`
}

// Output is the github.issue.create result.
type Output struct {
	Number int64  `json:"number"`
	URL    string `json:"url"`
}

// send is the HTTP function, sdk.HTTP in the module (tests replace it).
var send = sdk.HTTP

// getenv reads the configuration (tests replace it).
var getenv = os.Getenv

func create(ctx context.Context, in Input) (Output, error) {
	if err := check(in); err != nil {
		return Output{}, err
	}
	base, err := apiBase(getenv("GITHUB_API_BASE"))
	if err != nil {
		return Output{}, err
	}
	payload := struct {
		Title  string   `json:"title"`
		Body   *string  `json:"body,omitempty"`
		Labels []string `json:"labels,omitempty"`
	}{in.Title, in.Body, in.Labels}
	body, err := json.Marshal(payload)
	if err != nil {
		return Output{}, fmt.Errorf("encoding the issue: %w", err)
	}
	u := base + "/repos/" + url.PathEscape(in.Owner) + "/" + url.PathEscape(in.Repo) + "/issues"
	resp, err := send(ctx, sdk.Request{
		Method: "POST",
		URL:    u,
		Headers: map[string][]string{
			"Accept":               {"application/vnd.github+json"},
			"Content-Type":         {"application/json"},
			"User-Agent":           {"airlock-github-issue/1"},
			"X-Github-Api-Version": {"2022-11-28"},
		},
		Body: body,
	})
	if err != nil {
		return Output{}, err
	}
	repo := in.Owner + "/" + in.Repo
	switch resp.Status {
	case 201:
		var got struct {
			Number  int64  `json:"number"`
			HTMLURL string `json:"html_url"`
		}
		if err := json.Unmarshal(resp.Body, &got); err != nil || got.Number <= 0 || got.HTMLURL == "" {
			return Output{}, sdk.Errorf(CodeAPIError, "the API answered 201 for %s but not with an issue number and html_url: check GITHUB_API_BASE points at a GitHub API", repo)
		}
		return Output{Number: got.Number, URL: got.HTMLURL}, nil
	case 401:
		return Output{}, sdk.Errorf(CodeUnauthorized, "the GitHub API refused the token (401%s): the operator must configure a valid token for this tool's credential", detail(resp.Body))
	case 403:
		return Output{}, sdk.Errorf(CodeForbidden, "the GitHub API forbade creating an issue in %s (403%s): the token lacks the Issues write permission on the repository, or a rate limit was hit; do not retry at once", repo, detail(resp.Body))
	case 404:
		return Output{}, sdk.Errorf(CodeNotFound, "repository %s was not found, or the token cannot see it (404%s): check owner and repo", repo, detail(resp.Body))
	case 410:
		return Output{}, sdk.Errorf(CodeForbidden, "issues are disabled in %s (410%s)", repo, detail(resp.Body))
	case 422:
		return Output{}, sdk.Errorf(CodeValidationFailed, "the GitHub API rejected the issue for %s (422%s): fix the title, body or labels", repo, detail(resp.Body))
	}
	return Output{}, sdk.Errorf(CodeAPIError, "the GitHub API answered %d for %s%s: try again later", resp.Status, repo, detail(resp.Body))
}

// check validates the input like the manifest's schema does.
func check(in Input) error {
	switch {
	case !ownerRe.MatchString(in.Owner):
		return sdk.Errorf(sdk.CodeInvalidInput, "owner %q is not a GitHub user or organization name (letters, digits and -, at most 39)", in.Owner)
	case !repoRe.MatchString(in.Repo) || in.Repo == "." || in.Repo == "..":
		return sdk.Errorf(sdk.CodeInvalidInput, "repo %q is not a repository name (letters, digits, ., _ and -, at most 100)", in.Repo)
	case strings.TrimSpace(in.Title) == "":
		return sdk.Errorf(sdk.CodeInvalidInput, "title is required")
	case utf8.RuneCountInString(in.Title) > MaxTitle:
		return sdk.Errorf(sdk.CodeInvalidInput, "title has %d characters: at most %d", utf8.RuneCountInString(in.Title), MaxTitle)
	case in.Body != nil && utf8.RuneCountInString(*in.Body) > MaxBody:
		return sdk.Errorf(sdk.CodeInvalidInput, "body has %d characters: at most %d", utf8.RuneCountInString(*in.Body), MaxBody)
	case len(in.Labels) > MaxLabels:
		return sdk.Errorf(sdk.CodeInvalidInput, "labels has %d entries: at most %d", len(in.Labels), MaxLabels)
	}
	for i, l := range in.Labels {
		if l == "" || utf8.RuneCountInString(l) > MaxLabel {
			return sdk.Errorf(sdk.CodeInvalidInput, "labels[%d] must have 1 to %d characters", i, MaxLabel)
		}
	}
	return nil
}

// apiBase validates GITHUB_API_BASE: an absolute https URL without user
// info, query or fragment (where the tool may actually go is decided by the
// manifest's network allowlist, host-side).
func apiBase(s string) (string, error) {
	if s == "" {
		return DefaultAPIBase, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", sdk.Errorf(CodeBadConfig, "GITHUB_API_BASE %q is not an https URL like https://api.github.com: fix the manifest's capabilities.env", s)
	}
	return strings.TrimRight(s, "/"), nil
}

// detail quotes the API's error message, if any, bounded.
func detail(body []byte) string {
	var e struct {
		Message string `json:"message"`
		Errors  []struct {
			Field   string `json:"field"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(bytes.TrimSpace(body), &e) != nil || e.Message == "" {
		return ""
	}
	msg := e.Message
	for _, x := range e.Errors {
		switch {
		case x.Message != "":
			msg += "; " + x.Message
		case x.Field != "":
			msg += "; " + x.Field + " " + x.Code
		}
	}
	if len(msg) > maxAPIDetail {
		msg = msg[:maxAPIDetail]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
		msg += "..."
	}
	return ": " + strings.ToValidUTF8(msg, "?")
}
