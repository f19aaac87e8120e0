package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/postgres"
	"github.com/airlock-dev/airlock/runtime/store/storetest"
)

// TestConformance runs the store conformance suite on a fresh schema per
// test.
func TestConformance(t *testing.T) {
	storetest.PostgresBaseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, storetest.PostgresSchema(t)) })
}

// TestReopen runs the shared reopen, tamper and migration tests on a
// fresh schema per test.
func TestReopen(t *testing.T) {
	storetest.PostgresBaseURL(t)
	storetest.RunReopen(t, storetest.Backend{
		Fresh: func(t *testing.T) string { return storetest.PostgresSchema(t) },
		Open: func(ctx context.Context, u string) (store.Store, error) {
			return postgres.Open(ctx, u, postgres.Options{})
		},
		Exec: exec,
		QueryRow: func(t *testing.T, u, q string, dest ...any) {
			t.Helper()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if err := conn.QueryRow(ctx, q).Scan(dest...); err != nil {
				t.Fatalf("query %q: %v", q, err)
			}
		},
		SchemaVersion: postgres.SchemaVersion(),
		EditSeq6:      `UPDATE audit_events SET body = convert_to(replace(convert_from(body, 'UTF8'), '"status":"ok"', '"status":"failed"'), 'UTF8') WHERE seq = 6`,
		RewindTo2: []string{
			`ALTER TABLE audit_events DROP COLUMN effect`, `DROP TABLE approvals`, `DROP TABLE idempotency`,
			`DROP INDEX audit_events_task`, `DROP INDEX audit_events_caller`, `DROP INDEX audit_events_tool`,
			`DELETE FROM schema_migrations WHERE version >= 3`,
		},
	})
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
	s := open(t, storetest.PostgresSchema(t))
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

// TestTwoStoresOneChain is two executors on one database: two Stores,
// opened at the same time (both migrate), 32 goroutines each committing
// intents directly and through a Committer. The result is one contiguous,
// valid chain with every event exactly once, and no lost call count.
func TestTwoStoresOneChain(t *testing.T) {
	ctx := context.Background()
	u := storetest.PostgresSchema(t)
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
	s := open(b, storetest.PostgresSchema(b))
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
