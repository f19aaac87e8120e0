package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

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

// TestReopen runs the shared reopen, tamper and migration tests on SQLite
// files.
func TestReopen(t *testing.T) {
	storetest.RunReopen(t, storetest.Backend{
		Fresh: func(t *testing.T) string { return filepath.Join(t.TempDir(), "airlock.db") },
		Open: func(ctx context.Context, path string) (store.Store, error) {
			return sqlite.Open(ctx, path, sqlite.Options{})
		},
		Exec: tamper,
		QueryRow: func(t *testing.T, path, q string, dest ...any) {
			t.Helper()
			db := rawDB(t, path)
			if err := db.QueryRow(q).Scan(dest...); err != nil {
				t.Fatalf("query %q: %v", q, err)
			}
		},
		SchemaVersion: sqlite.SchemaVersion(),
		EditSeq6:      `UPDATE audit_events SET body = CAST(replace(body, '"status":"ok"', '"status":"failed"') AS BLOB) WHERE seq = 6`,
		RewindTo2: []string{
			`DROP INDEX audit_events_effect`, `DROP INDEX audit_events_task`, `DROP INDEX audit_events_caller`, `DROP INDEX audit_events_tool`,
			`ALTER TABLE audit_events DROP COLUMN effect`, `DROP TABLE approvals`, `DROP TABLE idempotency`,
			`DELETE FROM schema_migrations WHERE version >= 3`,
		},
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

// rawDB opens the database file with a raw *sql.DB, as an attacker with
// file access would; it is closed when t ends.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// tamper runs statements on the database file with a raw *sql.DB.
func tamper(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db := rawDB(t, path)
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("tamper %q: %v", q, err)
		}
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

// TestJournalModeWAL checks the file is left in WAL mode, which the
// Committer's group commit and concurrent readers rely on.
func TestJournalModeWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "airlock.db")
	if err := open(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := rawDB(t, path).QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q %v", mode, err)
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
