package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/ids"
)

// Two executors share one PostgreSQL store: both serve intents and
// `airlock audit verify --store` verifies one chain holding what both wrote.
func TestTwoExecutorsShareOnePostgreSQLChain(t *testing.T) {
	base := os.Getenv("AIRLOCK_POSTGRES_URL")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AIRLOCK_POSTGRES_URL is not set but CI=true: start PostgreSQL with scripts/postgres.sh start DIR")
		}
		t.Skip("AIRLOCK_POSTGRES_URL not set: eval \"$(scripts/postgres.sh start DIR)\"")
	}
	ctx := context.Background()
	schema := strings.ReplaceAll(ids.New("e2e"), "_", "")
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	url := base + sep + "search_path=" + schema

	d1 := startDaemon(t, "--store", url)
	d2 := startDaemon(t, "--store", url)
	var wg sync.WaitGroup
	for i, d := range []*daemon{d1, d2, d1, d2, d1, d2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := d.call(t, "call", "json.query", fmt.Sprintf(`{"filter":".","input":%d}`, i))
			if r.code != 0 {
				t.Errorf("call %d: %d %s %s", i, r.code, r.stdout, r.stderr)
			}
		}()
	}
	wg.Wait()
	r := runCLI(t, "", "audit", "verify", "--store", url)
	if r.code != 0 || !strings.Contains(r.stdout, "audit chain ok: 12 events") {
		t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "audit", "tail", "--store", url, "-n", "12")
	if got := strings.Count(r.stdout, `"type":"execution"`); got != 6 {
		t.Fatalf("audit tail shows %d executions, want 6:\n%s", got, r.stdout)
	}
}
