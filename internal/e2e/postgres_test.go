package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-dev/airlock/runtime/store/storetest"
)

// Two executors share one PostgreSQL store: both serve intents and
// `airlock audit verify --store` verifies one chain holding what both wrote.
func TestTwoExecutorsShareOnePostgreSQLChain(t *testing.T) {
	url := storetest.PostgresSchema(t)

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
