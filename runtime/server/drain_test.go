package server_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/server"
)

const wcNeedsApproval = `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: drain}
spec:
  match: {tools: ["*"]}
  rules:
    - name: ask
      effect: require_approval
      when: 'true'
      message: '"drain test"'
`

// Draining ends the streams that follow (an audit follow, an approvals
// watch) with Unavailable at once: they never end on their own, and must
// not hold the executor for the whole drain timeout. The drain timeout here
// is longer than testenv's one-minute stop bound, so a stream that held the
// drain fails the test.
func TestDrainEndsFollowingStreams(t *testing.T) {
	wc := filepath.Join(testenv.Root(t), "tools", "textwc", "textwc.wasm")
	x := testenv.Start(t, testenv.Options{
		Manifests: testenv.Manifests(t, testenv.ToolManifest{Name: "text.wc", Module: wc}),
		Policies:  testenv.Policy(t, "drain", wcNeedsApproval), Quiet: true,
		Configure: func(o *server.Options) { o.DrainTimeout = 10 * time.Minute },
	})
	// A client of its own: Stop closes x.Client first.
	c, err := client.Dial(context.Background(), x.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// An intent pending approval gives each stream something to send: its
	// first message proves the stream is open on the server.
	task, err := c.BeginTask(ctx, client.TaskOptions{Purpose: "drain"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Submit(ctx, "text.wc", `{"text":"a b"}`, client.WithTask(task.GetId()))
	if err != nil || out.GetStatus() != airlockv1.Status_STATUS_PENDING_APPROVAL {
		t.Fatalf("submit: %v %v, want pending approval", out, err)
	}
	var open sync.WaitGroup
	open.Add(2)
	once := func() func() { var o sync.Once; return func() { o.Do(open.Done) } }
	audit, watch := make(chan error, 1), make(chan error, 1)
	auditOpen, watchOpen := once(), once()
	go func() {
		audit <- c.StreamAudit(ctx, client.AuditFilter{Follow: true}, func(*airlockv1.AuditEvent) error { auditOpen(); return nil })
	}()
	go func() {
		watch <- c.WatchApprovals(ctx, client.ApprovalFilter{}, func(*airlockv1.Approval) error { watchOpen(); return nil })
	}()
	open.Wait()

	if err := x.Stop(); err != nil {
		t.Fatalf("stop with following streams open: %v", err)
	}
	for name, ch := range map[string]chan error{"audit follow": audit, "approvals watch": watch} {
		if err := <-ch; status.Code(err) != codes.Unavailable {
			t.Errorf("%s ended with %v, want Unavailable (the executor is shutting down)", name, err)
		}
	}
}
