package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/airlock-dev/airlock/internal/isolate"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// The bundled native tool through the real server: sqlite.query runs as an
// isolated plugin process over a database the test puts in the task's
// workspace, reads it, and can neither write it nor reach another file.
func TestSQLiteQueryPlugin(t *testing.T) {
	if rep := isolate.Probe(); len(rep.Missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("isolation layers missing in CI: %s", rep)
		}
		t.Skipf("isolation layers missing here: %s", rep)
	}
	x := devExecutor(t)
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "query a shop database"})
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(x.Data, "workspaces", task.GetId())
	if err := os.MkdirAll(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(ws, "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE items (name TEXT, price INTEGER, img BLOB)`,
		`INSERT INTO items VALUES ('a', 5, NULL), ('b', 12, x'00ff'), ('c', 30, NULL)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	in := client.WithTask(task.GetId())

	v := wantOK(t, submit(t, x, "sqlite.query",
		`{"database": "shop.db", "query": "SELECT name, price, img FROM items WHERE price > ? ORDER BY price", "params": [10]}`, in))
	got, _ := json.Marshal(v)
	if want := `{"columns":["name","price","img"],"rows":[["b",12,{"base64":"AP8="}],["c",30,null]],"truncated":false}`; string(got) != want {
		t.Fatalf("sqlite.query returned %s, want %s", got, want)
	}
	// A second call is served by the warm process of this task.
	v = wantOK(t, submit(t, x, "sqlite.query", `{"database": "shop.db", "query": "SELECT count(*) AS n FROM items", "max_rows": 1}`, in))
	if got, _ := json.Marshal(v["rows"]); string(got) != `[[3]]` {
		t.Fatalf("count: %s", got)
	}
	v = wantOK(t, submit(t, x, "sqlite.query", `{"database": "shop.db", "query": "SELECT name FROM items", "max_rows": 2}`, in))
	if v["truncated"] != true {
		t.Fatalf("max_rows 2 over 3 rows: %v", v)
	}

	// Read-only: a write fails, and so does ATTACH of another file.
	out := submit(t, x, "sqlite.query", `{"database": "shop.db", "query": "DELETE FROM items"}`, in)
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
	mustContain(t, out.GetError().GetMessage(), "query_failed")
	mustContain(t, out.GetError().GetMessage(), "readonly")
	out = submit(t, x, "sqlite.query", `{"database": "shop.db", "query": "ATTACH DATABASE '/etc/passwd' AS p"}`, in)
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
	mustContain(t, out.GetError().GetMessage(), "query_failed")
	// The path stays in the workspace: the schema refuses "..", the tool
	// a symbolic link out of it.
	wantStatus(t, submit(t, x, "sqlite.query", `{"database": "../x.db", "query": "SELECT 1"}`, in), airlockv1.Status_STATUS_INVALID, "")
	if err := os.Symlink("/etc/passwd", filepath.Join(ws, "link.db")); err != nil {
		t.Fatal(err)
	}
	out = submit(t, x, "sqlite.query", `{"database": "link.db", "query": "SELECT 1"}`, in)
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
	mustContain(t, out.GetError().GetMessage(), "invalid_path")
	// Without a task there is no workspace.
	wantStatus(t, submit(t, x, "sqlite.query", `{"database": "shop.db", "query": "SELECT 1"}`), airlockv1.Status_STATUS_INVALID, "task_required")

	if _, err := x.Client.EndTask(ctx, task.GetId(), "done"); err != nil {
		t.Fatal(err)
	}
	stillServes(t, x)
}
