package main

import (
	"bufio"
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/devca"
	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/server"
)

const operatorID = "spiffe://airlock.local/human/ann"

// executor serves the bundled tools under the development policy, as
// `make run` does, on a unix socket (the planner, identified by its uid)
// and over mTLS for operators under spiffe://airlock.local/human/. It
// returns the executor and an operator's client.
func executor(t *testing.T) (*testenv.Executor, *client.Client) {
	t.Helper()
	now := time.Now()
	ca, err := devca.Init(filepath.Join(t.TempDir(), "ca"), devca.DefaultTrustDomain, now)
	if err != nil {
		t.Fatal(err)
	}
	svid := func(id string) identity.SVIDConfig {
		t.Helper()
		s, err := ca.Issue(id, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		cert, key, bundle, err := s.Write(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return identity.SVIDConfig{CertFile: cert, KeyFile: key, Bundles: []string{bundle}}
	}
	execSVID, annSVID := svid("spiffe://airlock.local/executor"), svid(operatorID)
	addr := make(chan string, 1)
	x := testenv.Start(t, testenv.Options{
		Manifests: testenv.BundledManifests(t),
		Policies:  filepath.Join(testenv.Root(t), "manifests", "policies"),
		Quiet:     true,
		Configure: func(o *server.Options) {
			o.Listen = "127.0.0.1:0"
			o.SVID = execSVID
			o.Allow = identity.Allow{Patterns: []string{"spiffe://airlock.local/human/*"}}
			o.Approvers = []string{"spiffe://airlock.local/human/*"}
			o.ListenReady = func(a string) { addr <- a }
		},
	})
	ctx := context.Background()
	src, err := identity.OpenSource(ctx, annSVID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	op, err := client.DialMTLS(ctx, <-addr, client.MTLSOptions{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { op.Close() })
	return x, op
}

// running is the example program running against x, its output read line
// by line.
type running struct {
	lines chan string
	all   strings.Builder
	done  chan error
	res   *Result
}

func start(t *testing.T, x *testenv.Executor, cfg Config) *running {
	t.Helper()
	pr, pw := io.Pipe()
	r := &running{lines: make(chan string, 64), done: make(chan error, 1)}
	go func() {
		res, err := Run(context.Background(), x.Client, cfg, pw)
		r.res = res
		pw.Close()
		r.done <- err
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	return r
}

var approveLine = regexp.MustCompile(`^  bin/airlock approvals approve (apr_[a-z0-9]+) --reason `)

// approvalID reads the program's output until it names the command that
// approves, and returns the approval id.
func (r *running) approvalID(t *testing.T) string {
	t.Helper()
	for l := range r.lines {
		r.all.WriteString(l + "\n")
		if m := approveLine.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("the program ended without printing the approve command:\n%s\n%v", r.all.String(), <-r.done)
	return ""
}

// wait returns the rest of the output and the result.
func (r *running) wait(t *testing.T) (string, *Result) {
	t.Helper()
	for l := range r.lines {
		r.all.WriteString(l + "\n")
	}
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v\n%s", err, r.all.String())
	}
	return r.all.String(), r.res
}

// The program waits; the operator, a second identity over mTLS, runs what
// it printed and approves; the write runs once and the program prints it.
// The planner itself cannot approve its own intent.
func TestApprovedByAnotherIdentity(t *testing.T) {
	x, op := executor(t)
	ctx := context.Background()
	// A short step: the planner resubmits with its idempotency key while it
	// waits, which must not make a second approval.
	r := start(t, x, Config{Path: "publish/hello.md", Content: "hello\n", Wait: 2 * time.Minute, Step: 300 * time.Millisecond})
	id := r.approvalID(t)

	_, err := x.Client.Approve(ctx, id, "my own")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the requester approving its own intent: %v, want PermissionDenied", err)
	}
	a, err := op.GetApproval(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTool() != "workspace.write" || a.GetArguments() != `{"content":"hello\n","path":"publish/hello.md"}` ||
		strings.Join(a.GetRules(), ",") != "local-dev/publishing-needs-approval" {
		t.Fatalf("the approval covers %s %s %v", a.GetTool(), a.GetArguments(), a.GetRules())
	}
	if _, err := op.Approve(ctx, id, "checked the note"); err != nil {
		t.Fatal(err)
	}
	out, res := r.wait(t)
	if res.Outcome.GetStatus() != airlockv1.Status_STATUS_OK || res.ApprovalID != id || res.Outcome.GetApprovalId() != id {
		t.Fatalf("outcome %v, want ok under %s\n%s", res.Outcome, id, out)
	}
	if !strings.Contains(out, "ok: workspace.write ran after approval "+id) ||
		!strings.Contains(out, "as an operator other than spiffe://airlock.local/uid/") {
		t.Fatalf("the program printed:\n%s", out)
	}
	if strings.TrimSpace(res.Outcome.GetOutput()) != `{"bytes":6}` {
		t.Fatalf("workspace.write returned %s, want the 6 bytes written", res.Outcome.GetOutput())
	}
	all, err := op.ListApprovals(ctx, client.ApprovalFilter{TaskID: res.TaskID, States: []airlockv1.ApprovalState{
		airlockv1.ApprovalState_APPROVAL_STATE_PENDING, airlockv1.ApprovalState_APPROVAL_STATE_APPROVED,
		airlockv1.ApprovalState_APPROVAL_STATE_DENIED, airlockv1.ApprovalState_APPROVAL_STATE_EXPIRED}})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].GetApprover() != operatorID || all[0].GetIntentStatus() != "ok" {
		t.Fatalf("the task's approvals: %v, want one, approved by %s and run", all, operatorID)
	}
}

// Denied: the program gets denied with the operator's reason, and the
// intent never runs.
func TestDeniedByAnotherIdentity(t *testing.T) {
	x, op := executor(t)
	r := start(t, x, Config{Path: "publish/draft.md", Content: "draft\n", Wait: 2 * time.Minute})
	id := r.approvalID(t)
	if _, err := op.Deny(context.Background(), id, "not before the review"); err != nil {
		t.Fatal(err)
	}
	out, res := r.wait(t)
	if res.Outcome.GetStatus() != airlockv1.Status_STATUS_DENIED || res.Outcome.GetError().GetCode() != "approval_denied" ||
		!strings.Contains(out, "not before the review") {
		t.Fatalf("outcome %v\n%s", res.Outcome, out)
	}
	a, err := op.GetApproval(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetState() != airlockv1.ApprovalState_APPROVAL_STATE_DENIED || a.GetApprover() != operatorID || a.GetIntentStatus() == "ok" {
		t.Fatalf("the approval after the denial: %v", a)
	}
}
