package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/postgres"
	"github.com/airlock-dev/airlock/runtime/store/storetest"
)

// TestConformance runs the store conformance suite on a fresh schema per
// test.
func TestConformance(t *testing.T) {
	baseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, freshURL(t)) })
}

// baseURL returns AIRLOCK_POSTGRES_URL. Without it the test is skipped,
// except under CI=true, where a missing database is a failure: start one
// with scripts/postgres.sh start DIR.
func baseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("AIRLOCK_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AIRLOCK_POSTGRES_URL is not set and CI=true: start PostgreSQL with scripts/postgres.sh start DIR and export the URL it prints")
		}
		t.Skip("AIRLOCK_POSTGRES_URL is not set: start PostgreSQL with scripts/postgres.sh start DIR to run the PostgreSQL store tests")
	}
	return u
}

// freshURL creates a schema of its own for the test (dropped at cleanup)
// and returns a URL whose search_path is that schema.
func freshURL(t testing.TB) string {
	t.Helper()
	base := baseURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to AIRLOCK_POSTGRES_URL: %v", err)
	}
	defer conn.Close(ctx)
	schema := "t_" + strings.ToLower(strings.ReplaceAll(ids.New("s"), "-", "_"))
	schema = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, schema)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("AIRLOCK_POSTGRES_URL must be a postgres:// URL (%v)", err)
	}
	qv := u.Query()
	qv.Set("search_path", schema)
	u.RawQuery = qv.Encode()
	return u.String()
}

func open(t testing.TB, u string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), u, postgres.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// exec runs statements on the test's schema with a raw connection, as an
// attacker with database access would.
func exec(t *testing.T, u string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
}

func TestClosed(t *testing.T) {
	s := open(t, freshURL(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := s.Commit(context.Background(), []*store.Batch{{}}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("commit after close: %v", err)
	}
}

// seeded commits a task and n intents (2n events) into a fresh schema and
// closes the store; it returns the schema's URL.
func seeded(t *testing.T, intents int) (string, []*store.Batch) {
	t.Helper()
	u := freshURL(t)
	s, err := postgres.Open(context.Background(), u, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bs := []*store.Batch{{Tasks: []*store.Task{storetest.NewTask("tsk_1")}}}
	for range intents {
		bs = append(bs, storetest.IntentBatch("tsk_1"))
	}
	if err := s.Commit(context.Background(), bs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return u, bs
}

func verifyURL(t *testing.T, u string) audit.Report {
	t.Helper()
	return store.Verify(context.Background(), open(t, u))
}

func TestVerifyDetectsEdit(t *testing.T) {
	u, bs := seeded(t, 5)    // 10 events
	id := bs[3].Events[1].ID // seq 6
	exec(t, u, `UPDATE audit_events SET body = convert_to(replace(convert_from(body, 'UTF8'), '"status":"ok"', '"status":"failed"'), 'UTF8') WHERE seq = 6`)
	rep := verifyURL(t, u)
	want := fmt.Sprintf("event 6 (%s) was edited: its hash does not match its body", id)
	if len(rep.Problems) != 1 || rep.Problems[0].Message != want {
		t.Fatalf("got:\n%s\nwant %q", rep, want)
	}
}

func TestVerifyDetectsDeletion(t *testing.T) {
	u, _ := seeded(t, 5)
	exec(t, u, `DELETE FROM audit_events WHERE seq = 4`)
	rep := verifyURL(t, u)
	want := "event 4 is missing: events 3 and 5 are adjacent — it was deleted"
	if len(rep.Problems) != 1 || rep.Problems[0].Message != want || rep.Problems[0].Kind != audit.ProblemMissing {
		t.Fatalf("got:\n%s\nwant %q", rep, want)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	ctx := context.Background()
	u, bs := seeded(t, 3)
	last := bs[3].Events[1]
	s := open(t, u)
	next := storetest.IntentBatch("tsk_1")
	if err := s.Commit(ctx, []*store.Batch{next}); err != nil {
		t.Fatal(err)
	}
	if next.Events[0].Seq != last.Seq+1 || next.Events[0].PrevHash != last.Hash {
		t.Fatalf("reopened chain: seq %d prev %s, want %d %s", next.Events[0].Seq, next.Events[0].PrevHash, last.Seq+1, last.Hash)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 8 {
		t.Fatalf("verify: %s", rep)
	}
	head, err := s.Head(ctx)
	if err != nil || head.Seq != 8 || head.Hash != next.Events[1].Hash {
		t.Fatalf("head = %+v %v", head, err)
	}
}

// TestTwoStoresOneChain is two executors on one database: two Stores,
// opened at the same time (both migrate), 32 goroutines each committing
// intents directly and through a Committer. The result is one contiguous,
// valid chain with every event exactly once, and no lost call count.
func TestTwoStoresOneChain(t *testing.T) {
	ctx := context.Background()
	u := freshURL(t)
	var (
		stores [2]*postgres.Store
		errs   [2]error
		wg     sync.WaitGroup
	)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(ctx, u, postgres.Options{}) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		t.Cleanup(func() { _ = s.Close() })
	}
	if err := stores[0].Commit(ctx, []*store.Batch{{Tasks: []*store.Task{storetest.NewTask("tsk_1")}}}); err != nil {
		t.Fatal(err)
	}
	const workers, per = 32, 8
	committers := [2]*store.Committer{store.NewCommitter(stores[0], store.CommitterOptions{}), store.NewCommitter(stores[1], store.CommitterOptions{})}
	var mu sync.Mutex
	seen := map[int64]string{}
	fail := make(chan error, 2*workers*per)
	for i := range stores {
		for w := range workers {
			wg.Go(func() {
				for k := range per {
					b := storetest.IntentBatch("tsk_1")
					var err error
					if (w+k)%2 == 0 {
						err = stores[i].Commit(ctx, []*store.Batch{b})
					} else {
						err = committers[i].Commit(ctx, b)
					}
					if err != nil {
						fail <- fmt.Errorf("store %d: %w", i, err)
						continue
					}
					mu.Lock()
					for _, ev := range b.Events {
						if other, dup := seen[ev.Seq]; dup {
							fail <- fmt.Errorf("seq %d given to %s and %s", ev.Seq, other, ev.ID)
						}
						seen[ev.Seq] = ev.ID
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, c := range committers {
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(fail)
	for err := range fail {
		t.Fatal(err)
	}
	const events = 2 * 2 * workers * per
	if len(seen) != events {
		t.Fatalf("%d distinct seqs, want %d", len(seen), events)
	}
	for _, s := range stores {
		rep := store.Verify(ctx, s)
		if !rep.OK() || rep.Count != events || rep.Head.Seq != events {
			t.Fatalf("chain after concurrent commits from two stores: %s", rep)
		}
		head, err := s.Head(ctx)
		if err != nil || head != rep.Head {
			t.Fatalf("head %+v (%v), verified head %+v", head, err, rep.Head)
		}
		recs, err := s.AuditRecords(ctx, 0, events)
		if err != nil || len(recs) != events {
			t.Fatalf("records %d %v", len(recs), err)
		}
		for i, r := range recs {
			if r.Seq != int64(i+1) {
				t.Fatalf("record %d has seq %d", i, r.Seq)
			}
			ev, err := audit.Decode(r.Body)
			if err != nil || seen[r.Seq] != ev.ID {
				t.Fatalf("record %d is %s, the committer was told %s (%v)", r.Seq, ev.ID, seen[r.Seq], err)
			}
		}
		if task, err := s.Task(ctx, "tsk_1"); err != nil || task.CallCount != 2*workers*per {
			t.Fatalf("call count = %+v %v, want %d", task, err, 2*workers*per)
		}
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	u, _ := seeded(t, 1)
	next := postgres.SchemaVersion() + 1
	exec(t, u, fmt.Sprintf(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (%d, 'future', '2030-01-01T00:00:00.000000000Z')`, next))
	_, err := postgres.Open(context.Background(), u, postgres.Options{})
	want := fmt.Sprintf("its schema version is %d but this airlock binary knows only versions up to %d", next, next-1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}

func TestMigrationsRecorded(t *testing.T) {
	ctx := context.Background()
	u, _ := seeded(t, 0)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, max int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != postgres.SchemaVersion() || max != postgres.SchemaVersion() || max < 2 {
		t.Fatalf("schema_migrations has %d rows, max %d; binary knows %d", n, max, postgres.SchemaVersion())
	}
	s := open(t, u)
	_ = s.Close()
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != postgres.SchemaVersion() {
		t.Fatalf("after reopen: %d rows (%v)", n, err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := postgres.Open(ctx, "", postgres.Options{}); err == nil || !strings.Contains(err.Error(), "--store") {
		t.Fatalf("empty url: %v", err)
	}
	if _, err := postgres.Open(ctx, "postgres://u:secret@127.0.0.1:bad/db", postgres.Options{}); err == nil ||
		strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad url: %v (the password must not appear)", err)
	}
	// Nothing listens on port 1 of loopback.
	_, err := postgres.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?sslmode=disable", postgres.Options{ConnectTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "cannot open audit store at postgres://127.0.0.1:1/db") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("unreachable: %v", err)
	}
}

// BenchmarkCommitParallel commits one intent (two events) per op from
// many goroutines through a Committer.
func BenchmarkCommitParallel(b *testing.B) {
	b.ReportAllocs()
	ctx := context.Background()
	s := open(b, freshURL(b))
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{storetest.NewTask("tsk_1")}}}); err != nil {
		b.Fatal(err)
	}
	c := store.NewCommitter(s, store.CommitterOptions{})
	defer c.Close(ctx)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Commit(ctx, storetest.IntentBatch("tsk_1")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "intents/s")
}

// TestMigration3FillsEffect rewinds a schema to version 2 (as an older
// airlock left it, with decision events but no effect column) and reopens
// it: migration 0003 fills the effect of existing events from their bodies.
func TestMigration3FillsEffect(t *testing.T) {
	u, _ := seeded(t, 3) // 3 allow decisions at seq 1, 3, 5
	exec(t, u, `ALTER TABLE audit_events DROP COLUMN effect`, `DROP TABLE approvals`, `DROP TABLE idempotency`,
		`DROP INDEX audit_events_task`, `DROP INDEX audit_events_caller`, `DROP INDEX audit_events_tool`,
		`DELETE FROM schema_migrations WHERE version >= 3`)
	storetest.CheckMigratedEffects(t, open(t, u))
}
