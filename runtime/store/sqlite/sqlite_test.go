package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newTask(id string) *store.Task {
	now := time.Now()
	return &store.Task{ID: id, Caller: "spiffe://example.org/agent", Purpose: "triage", Sensitivity: "internal",
		Labels: map[string]string{"team": "sre", "env": "prod"}, StartedAt: now, ExpiresAt: now.Add(time.Hour)}
}

// intentBatch is what the executor commits per intent: a decision and an
// execution event, the intent outcome and one call on the task.
func intentBatch(taskID string) *store.Batch {
	intentID := ids.New("int")
	now := time.Now()
	return &store.Batch{
		Events: []*audit.Event{
			{ID: ids.New("evt"), Time: now, Type: audit.TypeDecision, Caller: "spiffe://example.org/agent", TaskID: taskID,
				IntentID: intentID, Tool: &audit.ToolRef{Name: "http.fetch", Version: "1.0.0"},
				Decision: &audit.Decision{Effect: "allow", Rules: []string{"allow-all"}}},
			{ID: ids.New("evt"), Time: now, Type: audit.TypeExecution, Caller: "spiffe://example.org/agent", TaskID: taskID,
				IntentID: intentID, Tool: &audit.ToolRef{Name: "http.fetch", Version: "1.0.0"}, Status: "ok", DurationUS: 812},
		},
		Intents:    []*store.Intent{{ID: intentID, TaskID: taskID, Caller: "spiffe://example.org/agent", Tool: "http.fetch", Status: "ok", Created: now, Outcome: []byte(`{"status":"OK"}`)}},
		CallCounts: map[string]int64{taskID: 1},
	}
}

func TestCommitAndReadBack(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "airlock.db"))
	task := newTask("tsk_1")
	begin := &store.Batch{Tasks: []*store.Task{task}, Events: []*audit.Event{{Type: audit.TypeTaskBegin, TaskID: task.ID,
		Details: map[string]any{"purpose": task.Purpose}}}}
	b1, b2 := intentBatch(task.ID), intentBatch(task.ID)
	if err := s.Commit(ctx, []*store.Batch{begin, b1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, []*store.Batch{b2}); err != nil {
		t.Fatal(err)
	}
	// Seal filled in ids, time, seq and links.
	ev0 := begin.Events[0]
	if ev0.Seq != 1 || ev0.PrevHash != audit.GenesisHash || ev0.ID == "" || ev0.Time.IsZero() {
		t.Fatalf("first event not sealed: %+v", ev0)
	}
	if b1.Events[0].Seq != 2 || b1.Events[0].PrevHash != ev0.Hash || b2.Events[1].Seq != 5 {
		t.Fatalf("seqs/links wrong: %d %d", b1.Events[0].Seq, b2.Events[1].Seq)
	}

	got, err := s.Task(ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Caller != task.Caller || got.Purpose != task.Purpose || got.Sensitivity != task.Sensitivity ||
		got.Labels["team"] != "sre" || got.Labels["env"] != "prod" || len(got.Labels) != 2 ||
		!got.StartedAt.Equal(task.StartedAt) || !got.ExpiresAt.Equal(task.ExpiresAt) || !got.EndedAt.IsZero() || got.CallCount != 2 {
		t.Fatalf("task read back = %+v", got)
	}
	in, err := s.Intent(ctx, b1.Intents[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.TaskID != task.ID || in.Status != "ok" || in.Tool != "http.fetch" || string(in.Outcome) != `{"status":"OK"}` ||
		!in.Created.Equal(b1.Intents[0].Created) {
		t.Fatalf("intent read back = %+v", in)
	}

	// Replace the task (end it) and the intent.
	task.EndedAt = time.Now()
	task.CallCount = 2
	b1.Intents[0].Status = "failed"
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{task}, Intents: b1.Intents}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Task(ctx, task.ID); got == nil || !got.EndedAt.Equal(task.EndedAt) {
		t.Fatalf("task not replaced: %+v", got)
	}
	if in, _ := s.Intent(ctx, b1.Intents[0].ID); in == nil || in.Status != "failed" {
		t.Fatalf("intent not replaced: %+v", in)
	}

	if _, err := s.Task(ctx, "tsk_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing task: %v", err)
	}
	if _, err := s.Intent(ctx, "int_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing intent: %v", err)
	}

	recs, err := s.AuditRecords(ctx, 0, 100)
	if err != nil || len(recs) != 5 {
		t.Fatalf("records: %d %v", len(recs), err)
	}
	ev, err := audit.Decode(recs[1].Body)
	if err != nil || ev.ID != b1.Events[0].ID || ev.Decision.Effect != "allow" || recs[1].Hash != b1.Events[0].Hash {
		t.Fatalf("record 2 = %+v %v", ev, err)
	}
	page, err := s.AuditRecords(ctx, 3, 1)
	if err != nil || len(page) != 1 || page[0].Seq != 4 {
		t.Fatalf("page after 3: %+v %v", page, err)
	}
	tail, err := s.AuditTail(ctx, 2)
	if err != nil || len(tail) != 2 || tail[0].Seq != 4 || tail[1].Seq != 5 {
		t.Fatalf("tail: %+v %v", tail, err)
	}
	if _, err := s.AuditRecords(ctx, 0, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
	head, err := s.Head(ctx)
	if err != nil || head.Seq != 5 || head.Hash != b2.Events[1].Hash {
		t.Fatalf("head = %+v %v", head, err)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 5 || rep.Head != head {
		t.Fatalf("verify: %s", rep)
	}
}

func TestCommitFailureRollsBackEverything(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "airlock.db"))
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}, intentBatch("tsk_1")}); err != nil {
		t.Fatal(err)
	}
	good, bad := intentBatch("tsk_1"), intentBatch("tsk_unknown")
	err := s.Commit(ctx, []*store.Batch{good, bad})
	if err == nil || !strings.Contains(err.Error(), "tsk_unknown") {
		t.Fatalf("call count on unknown task: err = %v", err)
	}
	if good.Events[0].Seq != 0 || good.Events[0].Hash != "" {
		t.Fatalf("failed commit left seq/hash on event: %+v", good.Events[0])
	}
	if _, err := s.Intent(ctx, good.Intents[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("intent of failed transaction was stored: %v", err)
	}
	// The head cache was invalidated; the chain continues correctly.
	next := intentBatch("tsk_1")
	if err := s.Commit(ctx, []*store.Batch{next}); err != nil {
		t.Fatal(err)
	}
	if next.Events[0].Seq != 3 {
		t.Fatalf("seq after rollback = %d, want 3", next.Events[0].Seq)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 4 {
		t.Fatalf("verify: %s", rep)
	}
	if task, _ := s.Task(ctx, "tsk_1"); task.CallCount != 2 {
		t.Fatalf("call count = %d, want 2", task.CallCount)
	}
}

func TestCommitCanceledContext(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "airlock.db"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := intentBatch("tsk_1")
	b.CallCounts = nil
	if err := s.Commit(ctx, []*store.Batch{b}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if recs, err := s.AuditRecords(context.Background(), 0, 10); err != nil || len(recs) != 0 {
		t.Fatalf("canceled commit wrote %d records (%v)", len(recs), err)
	}
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
	bs := []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}}
	for range intents {
		bs = append(bs, intentBatch("tsk_1"))
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

func TestConcurrentCommitsFormOneChain(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "airlock.db"))
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}}); err != nil {
		t.Fatal(err)
	}
	c := store.NewCommitter(s, store.CommitterOptions{})
	const workers, per = 64, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for range workers {
		wg.Go(func() {
			for range per {
				if err := c.Commit(ctx, intentBatch("tsk_1")); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep := store.Verify(ctx, s)
	if !rep.OK() || rep.Count != 2*workers*per || rep.Head.Seq != 2*workers*per {
		t.Fatalf("chain after concurrent commits: %s", rep)
	}
	if task, _ := s.Task(ctx, "tsk_1"); task.CallCount != workers*per {
		t.Fatalf("call count = %d", task.CallCount)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	ctx := context.Background()
	path, bs := seeded(t, 3)
	last := bs[3].Events[1]
	s := open(t, path)
	next := intentBatch("tsk_1")
	if err := s.Commit(ctx, []*store.Batch{next}); err != nil {
		t.Fatal(err)
	}
	if next.Events[0].Seq != last.Seq+1 || next.Events[0].PrevHash != last.Hash {
		t.Fatalf("reopened chain: seq %d prev %s, want %d %s", next.Events[0].Seq, next.Events[0].PrevHash, last.Seq+1, last.Hash)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 8 {
		t.Fatalf("verify: %s", rep)
	}
}

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "airlock.db")
	s := open(t, path)
	if err := s.Commit(context.Background(), []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}}); err != nil {
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
	if err := s.Commit(context.Background(), []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}}); err != nil {
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
		if err := c.Commit(ctx, intentBatch("tsk_1")); err != nil {
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
			if err := c.Commit(ctx, intentBatch("tsk_1")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "intents/s")
}
