package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

func TestBundledToolsThroughThePipeline(t *testing.T) {
	x := devExecutor(t)
	ctx := context.Background()

	tools, err := x.Client.ListTools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*airlockv1.Tool{}
	for _, tl := range tools {
		names[tl.GetName()] = tl
	}
	for _, n := range []string{"json.query", "html.to_text", "workspace.write", "workspace.read", "workspace.list", "text.wc"} {
		tl, ok := names[n]
		if !ok {
			t.Fatalf("tool %s not listed (got %v)", n, tools)
		}
		if !json.Valid([]byte(tl.GetInputSchema())) || !json.Valid([]byte(tl.GetOutputSchema())) || tl.GetDescription() == "" || tl.GetRisk() == "" || len(tl.GetDigest()) != 64 {
			t.Fatalf("tool %s is not fully described: %v", n, tl)
		}
	}

	t.Run("json.query", func(t *testing.T) {
		out := submit(t, x, "json.query", `{"filter": ".users[] | select(.admin) | .name", "input": {"users": [{"name": "ada", "admin": true}, {"name": "bob"}]}}`)
		v := wantOK(t, out)
		if got, _ := json.Marshal(v["results"]); string(got) != `["ada"]` {
			t.Fatalf("results %s", got)
		}
		if d := out.GetDecision(); d.GetEffect() != airlockv1.Effect_EFFECT_ALLOW || strings.Join(d.GetRules(), ",") != "local-dev/allow-local" {
			t.Fatalf("decision %v", d)
		}
	})
	t.Run("html.to_text", func(t *testing.T) {
		v := wantOK(t, submit(t, x, "html.to_text", `{"html": "<h1>Hello</h1><script>evil()</script><p>See <a href=\"https://example.org\">the docs</a>.</p>"}`))
		text, _ := v["text"].(string)
		mustContain(t, text, "Hello")
		mustContain(t, text, "the docs")
		if strings.Contains(text, "evil") {
			t.Fatalf("script content leaked into text: %q", text)
		}
		links, _ := json.Marshal(v["links"])
		if string(links) != `[{"href":"https://example.org","text":"the docs"}]` {
			t.Fatalf("links %s", links)
		}
	})
	t.Run("text.wc in C", func(t *testing.T) {
		v := wantOK(t, submit(t, x, "text.wc", `{"text": "one two\nthree é"}`))
		got, _ := json.Marshal(v)
		if string(got) != `{"bytes":16,"lines":1,"words":4}` {
			t.Fatalf("text.wc %s", got)
		}
	})
	t.Run("workspace in a task", func(t *testing.T) {
		a, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "e2e a"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "e2e b"})
		if err != nil {
			t.Fatal(err)
		}
		v := wantOK(t, submit(t, x, "workspace.write", `{"path":"notes/a.txt","content":"alpha"}`, client.WithTask(a.GetId())))
		if v["bytes"] != float64(5) {
			t.Fatalf("write %v", v)
		}
		v = wantOK(t, submit(t, x, "workspace.read", `{"path":"notes/a.txt"}`, client.WithTask(a.GetId())))
		if v["content"] != "alpha" {
			t.Fatalf("read %v", v)
		}
		v = wantOK(t, submit(t, x, "workspace.list", `{}`, client.WithTask(a.GetId())))
		if got, _ := json.Marshal(v["entries"]); !strings.Contains(string(got), `"name":"notes"`) {
			t.Fatalf("list %s", got)
		}
		// Task b sees nothing of task a.
		out := submit(t, x, "workspace.read", `{"path":"notes/a.txt"}`, client.WithTask(b.GetId()))
		wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
		v = wantOK(t, submit(t, x, "workspace.list", `{}`, client.WithTask(b.GetId())))
		if got, _ := json.Marshal(v["entries"]); string(got) != "[]" {
			t.Fatalf("task b sees %s", got)
		}
		// The dev policy keeps everyone out of secrets/.
		out = submit(t, x, "workspace.write", `{"path":"secrets/key","content":"x"}`, client.WithTask(a.GetId()))
		wantStatus(t, out, airlockv1.Status_STATUS_DENIED, "denied")
		if d := out.GetDecision(); d.GetEffect() != airlockv1.Effect_EFFECT_DENY || d.GetMessage() != "the secrets directory is off limits" {
			t.Fatalf("decision %v", d)
		}
		// Workspace tools need a task.
		wantStatus(t, submit(t, x, "workspace.list", `{}`), airlockv1.Status_STATUS_INVALID, "task_required")
		// An ended task is refused.
		if _, err := x.Client.EndTask(ctx, a.GetId(), "done"); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, submit(t, x, "workspace.list", `{}`, client.WithTask(a.GetId())), airlockv1.Status_STATUS_INVALID, "task_ended")
		// A task id that does not exist.
		wantStatus(t, submit(t, x, "workspace.list", `{}`, client.WithTask("tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa")), airlockv1.Status_STATUS_INVALID, "unknown_task")
	})
	t.Run("get intent", func(t *testing.T) {
		out := submit(t, x, "json.query", `{"filter":".","input":1}`)
		got, err := x.Client.Intents.GetIntent(ctx, &airlockv1.GetIntentRequest{IntentId: out.GetIntentId()})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetOutput() != out.GetOutput() || got.GetAuditEventId() != out.GetAuditEventId() || got.GetStatus() != out.GetStatus() {
			t.Fatalf("stored outcome %v differs from %v", got, out)
		}
	})
}
