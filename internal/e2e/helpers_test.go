package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// devExecutor starts an executor with the bundled tools under the shipped
// development policy.
func devExecutor(t *testing.T) *testenv.Executor {
	t.Helper()
	return testenv.Start(t, testenv.Options{
		Manifests: testenv.BundledManifests(t),
		Policies:  filepath.Join(testenv.Root(t), "manifests", "policies"),
	})
}

func submit(t *testing.T, x *testenv.Executor, tool, args string, opts ...client.SubmitOption) *airlockv1.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := x.Client.Submit(ctx, tool, args, opts...)
	if err != nil {
		t.Fatalf("submit %s: %v", tool, err)
	}
	return out
}

// wantStatus fails unless the outcome has the status and, when code is not
// empty, the error code.
func wantStatus(t *testing.T, out *airlockv1.Outcome, status airlockv1.Status, code string) {
	t.Helper()
	if out.GetStatus() != status || (code != "" && out.GetError().GetCode() != code) {
		t.Fatalf("outcome: got %v %q (%s), want %v %q", out.GetStatus(), out.GetError().GetCode(), out.GetError().GetMessage(), status, code)
	}
	if out.GetIntentId() == "" || out.GetAuditEventId() == "" {
		t.Fatalf("outcome lacks its ids: %v", out)
	}
}

func wantOK(t *testing.T, out *airlockv1.Outcome) map[string]any {
	t.Helper()
	wantStatus(t, out, airlockv1.Status_STATUS_OK, "")
	var v map[string]any
	if err := json.Unmarshal([]byte(out.GetOutput()), &v); err != nil {
		t.Fatalf("output is not a JSON object: %v: %q", err, out.GetOutput())
	}
	return v
}

// stillServes proves the executor still answers a good call.
func stillServes(t *testing.T, x *testenv.Executor) {
	t.Helper()
	v := wantOK(t, submit(t, x, "json.query", `{"filter":".a","input":{"a":7}}`))
	if got, _ := json.Marshal(v["results"]); string(got) != "[7]" {
		t.Fatalf("good call after a bad one returned %s", got)
	}
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}
