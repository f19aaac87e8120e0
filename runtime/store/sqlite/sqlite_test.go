package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
	"github.com/airlock-dev/airlock/runtime/store/storetest"
)

// TestConformance runs the store conformance suite on a fresh SQLite file
// per test.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "airlock.db"))
	})
}

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// tamper opens the database file with a raw *sql.DB, as an attacker with
// file access would.
func tamper(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("tamper %q: %v", q, err)
		}
	}
}

func seeded(t *testing.T, intents int) (string, []*store.Batch) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
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
	return path, bs
}

func verifyFile(t *testing.T, path string) audit.Report {
	t.Helper()
	s := open(t, path)
	return store.Verify(context.Background(), s)
}

func TestVerifyDetectsEdit(t *testing.T) {
	path, bs := seeded(t, 5) // 10 events
	id := bs[3].Events[1].ID // seq 6
	tamper(t, path, `UPDATE audit_events SET body = CAST(replace(body, '"status":"ok"', '"status":"failed"') AS BLOB) WHERE seq = 6`)
	rep := verifyFile(t, path)
	want := fmt.Sprintf("event 6 (%s) was edited: its hash does not match its body", id)
	if len(rep.Problems) != 1 || rep.Problems[0].Message != want {
		t.Fatalf("got:\n%s\nwant %q", rep, want)
	}
}

func TestVerifyDetectsDeletion(t *testing.T) {
	path, _ := seeded(t, 5)
	tamper(t, path, `DELETE FROM audit_events WHERE seq = 4`)
	rep := verifyFile(t, path)
	want := "event 4 is missing: events 3 and 5 are adjacent — it was deleted"
	if len(rep.Problems) != 1 || rep.Problems[0].Message != want || rep.Problems[0].Kind != audit.ProblemMissing {
		t.Fatalf("got:\n%s\nwant %q", rep, want)
	}
}

func TestVerifyDetectsReorder(t *testing.T) {
	path, bs := seeded(t, 5)
	// Swap the stored seq of events 3 and 4.
	tamper(t, path,
		`UPDATE audit_events SET seq = -1 WHERE seq = 3`,
		`UPDATE audit_events SET seq = 3 WHERE seq = 4`,
		`UPDATE audit_events SET seq = 4 WHERE seq = -1`)
	rep := verifyFile(t, path)
	id4 := bs[2].Events[1].ID // originally seq 4, now stored at 3
	if rep.OK() || rep.Problems[0].Seq != 3 || rep.Problems[0].Kind != audit.ProblemReordered ||
		!strings.Contains(rep.Problems[0].Message, "event 3 ("+id4+")") || !strings.Contains(rep.Problems[0].Message, "reordered") {
		t.Fatalf("swap not named at event 3:\n%s", rep)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	ctx := context.Background()
	path, bs := seeded(t, 3)
	last := bs[3].Events[1]
	s := open(t, path)
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

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "airlock.db")
	s := open(t, path)
	if err := s.Commit(context.Background(), []*store.Batch{{Tasks: []*store.Task{storetest.NewTask("tsk_1")}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

func TestUnwritablePath(t *testing.T) {
	base := t.TempDir()
	// A regular file where the data directory should be: unwritable even
	// for root.
	blocker := filepath.Join(base, "data")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(blocker, "airlock.db")
	_, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot open audit store at "+path) ||
		!strings.Contains(err.Error(), "check the --data directory") {
		t.Fatalf("err = %v", err)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		_, err := sqlite.Open(context.Background(), filepath.Join(ro, "airlock.db"), sqlite.Options{})
		if err == nil || !strings.Contains(err.Error(), "check the --data directory") {
			t.Fatalf("read-only dir: err = %v", err)
		}
	}
}

func TestBadOptionsAndFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := sqlite.Open(ctx, filepath.Join(dir, "a.db"), sqlite.Options{Synchronous: "off"}); err == nil ||
		!strings.Contains(err.Error(), `"off"`) {
		t.Fatalf("synchronous off accepted: %v", err)
	}
	s, err := sqlite.Open(ctx, filepath.Join(dir, "n.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(ctx, junk, sqlite.Options{}); err == nil || !strings.Contains(err.Error(), "cannot open audit store at "+junk) {
		t.Fatalf("junk file: %v", err)
	}
	if _, err := sqlite.Open(ctx, filepath.Join(dir, "x?.db"), sqlite.Options{}); err == nil {
		t.Fatal("path with ? accepted")
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path, _ := seeded(t, 1)
	next := sqlite.SchemaVersion() + 1
	tamper(t, path, fmt.Sprintf(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (%d, 'future', '2030-01-01T00:00:00.000000000Z')`, next))
	_, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	want := fmt.Sprintf("its schema version is %d but this airlock binary knows only versions up to %d", next, next-1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}

func TestMigrationsRecorded(t *testing.T) {
	path, _ := seeded(t, 0)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, max int
	if err := db.QueryRow(`SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != sqlite.SchemaVersion() || max != sqlite.SchemaVersion() || max < 1 {
		t.Fatalf("schema_migrations has %d rows, max %d; binary knows %d", n, max, sqlite.SchemaVersion())
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q %v", mode, err)
	}
	// Reopening does not re-apply migrations.
	s := open(t, path)
	_ = s.Close()
	if err := db.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != sqlite.SchemaVersion() {
		t.Fatalf("after reopen: %d rows (%v)", n, err)
	}
}

func benchStore(b *testing.B) *sqlite.Store {
	sync := os.Getenv("AIRLOCK_BENCH_SYNC") // "" (full) or "normal"
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "airlock.db"), sqlite.Options{Synchronous: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if err := s.Commit(context.Background(), []*store.Batch{{Tasks: []*store.Task{storetest.NewTask("tsk_1")}}}); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCommitSerial commits one intent (two events) per op from one
// goroutine through the Committer: one fsync per op.
func BenchmarkCommitSerial(b *testing.B) {
	b.ReportAllocs()
	s := benchStore(b)
	c := store.NewCommitter(s, store.CommitterOptions{})
	defer c.Close(context.Background())
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if err := c.Commit(ctx, storetest.IntentBatch("tsk_1")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "intents/s")
}

// BenchmarkCommitParallel commits one intent (two events) per op from about
// 64 goroutines through the Committer, which groups them.
func BenchmarkCommitParallel(b *testing.B) {
	b.ReportAllocs()
	s := benchStore(b)
	c := store.NewCommitter(s, store.CommitterOptions{})
	defer c.Close(context.Background())
	ctx := context.Background()
	procs := max(1, 64/runtime.GOMAXPROCS(0))
	b.SetParallelism(procs)
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

// TestMigration3FillsEffect rewinds a database to schema version 2 (as an
// older airlock left it, with decision events but no effect column) and
// reopens it: migration 0003 fills the effect of existing events from
// their bodies, so that AuditFiltered finds them.
func TestMigration3FillsEffect(t *testing.T) {
	path, _ := seeded(t, 3) // 3 allow decisions at seq 1, 3, 5
	tamper(t, path,
		`DROP INDEX audit_events_effect`, `DROP INDEX audit_events_task`, `DROP INDEX audit_events_caller`, `DROP INDEX audit_events_tool`,
		`ALTER TABLE audit_events DROP COLUMN effect`, `DROP TABLE approvals`, `DROP TABLE idempotency`,
		`DELETE FROM schema_migrations WHERE version >= 3`)
	storetest.CheckMigratedEffects(t, open(t, path))
}
