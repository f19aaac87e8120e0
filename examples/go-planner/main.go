// Command go-planner is a minimal planner: it shows its "model" the tools,
// then runs a small plan as intents inside one task, printing each outcome.
// A real planner would let an LLM choose the tool calls; here they are
// fixed so that the example is reproducible.
//
//	make run &                      # in another terminal
//	go run ./examples/go-planner    # or: --socket PATH
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/airlock-dev/airlock/planner-api/client"
)

func main() {
	socket := flag.String("socket", ".airlock/airlock.sock", "the executor's socket")
	flag.Parse()
	if err := run(*socket); err != nil {
		fmt.Fprintln(os.Stderr, "go-planner:", err)
		os.Exit(1)
	}
}

func run(socket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()

	// 1. What the model may use: names, descriptions and JSON Schemas.
	tools, err := c.ListTools(ctx)
	if err != nil {
		return fmt.Errorf("list tools: %w", err)
	}
	for _, t := range tools {
		fmt.Printf("tool %-16s risk=%-6s %s\n", t.GetName(), t.GetRisk(), firstLine(t.GetDescription()))
	}

	// 2. A task scopes the work: its workspace, its budget, its audit trail.
	task, err := c.BeginTask(ctx, client.TaskOptions{Purpose: "summarise a page into notes", TTL: 10 * time.Minute})
	if err != nil {
		return fmt.Errorf("begin task: %w", err)
	}
	defer func() {
		if _, err := c.EndTask(context.Background(), task.GetId(), "plan finished"); err != nil {
			fmt.Fprintln(os.Stderr, "end task:", err)
		}
	}()

	// 3. The plan: each step is a tool name and arguments as JSON text,
	// exactly what a model's tool call contains.
	plan := []struct{ tool, args string }{
		{"html.to_text", `{"html": "<h1>airlock</h1><p>Tool calls as <a href=\"https://example.org/tx\">transactions</a>.</p>"}`},
		{"workspace.write", `{"path": "notes/summary.md", "content": "airlock: tool calls as transactions"}`},
		{"workspace.read", `{"path": "notes/summary.md"}`},
		{"workspace.write", `{"path": "secrets/token", "content": "nope"}`}, // the dev policy denies this
	}
	for _, step := range plan {
		out, err := c.Submit(ctx, step.tool, step.args,
			client.WithTask(task.GetId()), client.WithJustification("go-planner example"))
		if err != nil {
			return fmt.Errorf("submit %s: %w", step.tool, err)
		}
		// Feed the outcome back to the model: status, output or error.
		fmt.Printf("%-16s %-7s %s%s\n", step.tool, client.StatusName(out.GetStatus()), out.GetOutput(), out.GetError().GetMessage())
	}
	return nil
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
