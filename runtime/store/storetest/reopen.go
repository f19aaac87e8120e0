package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
)

// Backend is what the reopen suite needs of a store implementation beyond
// store.Store: where a fresh store lives, a way to open it again, and raw
// SQL access to it, as an attacker with file or database access has.
type Backend struct {
	// Fresh returns the location (file path or URL) of a fresh, empty
	// store for t, removed when t ends.
	Fresh func(t *testing.T) string
	// Open opens (and migrates) the store at loc.
	Open func(ctx context.Context, loc string) (store.Store, error)
	// Exec runs statements on the store at loc with a raw connection,
	// bypassing the Store; it fails t on any error.
	Exec func(t *testing.T, loc string, stmts ...string)
	// QueryRow runs q on a raw connection and scans its one row into dest;
	// it fails t on any error.
	QueryRow func(t *testing.T, loc, q string, dest ...any)
	// SchemaVersion is the newest schema version the binary knows.
	SchemaVersion int
	// EditSeq6 is a statement that rewrites "status":"ok" to
	// "status":"failed" in the body of the event at seq 6, in place.
	EditSeq6 string
	// RewindTo2 are statements that take a schema back to version 2, as an
	// older airlock left it: no effect column, approvals or idempotency.
	RewindTo2 []string
}

// RunReopen runs the tests of a store across Close and Open: the chain
// continues, tampering between runs is found by store.Verify, a newer
// schema is refused and migrations are applied once.
func RunReopen(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"VerifyDetectsEdit", testVerifyDetectsEdit},
		{"VerifyDetectsDeletion", testVerifyDetectsDeletion},
		{"VerifyDetectsReorder", testVerifyDetectsReorder},
		{"ContinuesChain", testReopenContinuesChain},
		{"RefusesNewerSchema", testRefusesNewerSchema},
		{"MigrationsRecorded", testMigrationsRecorded},
		{"Migration3FillsEffect", testMigration3FillsEffect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

// open opens the store at loc and closes it when t ends.
func (b Backend) open(t *testing.T, loc string) store.Store {
	t.Helper()
	s, err := b.Open(context.Background(), loc)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// seeded commits a task and n intents (2n events) into a fresh store and
// closes it; it returns the store's location and the batches.
func (b Backend) seeded(t *testing.T, intents int) (string, []*store.Batch) {
	t.Helper()
	loc := b.Fresh(t)
	s, err := b.Open(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	bs := []*store.Batch{{Tasks: []*store.Task{NewTask("tsk_1")}}}
	for range intents {
		bs = append(bs, IntentBatch("tsk_1"))
	}
	if err := s.Commit(context.Background(), bs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return loc, bs
}

func (b Backend) verify(t *testing.T, loc string) audit.Report {
	t.Helper()
	return store.Verify(context.Background(), b.open(t, loc))
}

func testVerifyDetectsEdit(t *testing.T, b Backend) {
	loc, bs := b.seeded(t, 5) // 10 events
	id := bs[3].Events[1].ID  // seq 6
	b.Exec(t, loc, b.EditSeq6)
	rep := b.verify(t, loc)
	want := fmt.Sprintf("event 6 (%s) was edited: its hash does not match its body", id)
	if len(rep.Problems) != 1 || rep.Problems[0].Message != want {
		t.Fatalf("got:\n%s\nwant %q", rep, want)
	}
}

func testVerifyDetectsDeletion(t *testing.T, b Backend) {
	loc, _ := b.seeded(t, 5)
	b.Exec(t, loc, `DELETE FROM audit_events WHERE seq = 4`)
	rep := b.verify(t, loc)
	want := "event 4 is missing: events 3 and 5 are adjacent — it was deleted"
	if len(rep.Problems) != 1 || rep.Problems[0].Message != want || rep.Problems[0].Kind != audit.ProblemMissing {
		t.Fatalf("got:\n%s\nwant %q", rep, want)
	}
}

func testVerifyDetectsReorder(t *testing.T, b Backend) {
	loc, bs := b.seeded(t, 5)
	// Swap the stored seq of events 3 and 4.
	b.Exec(t, loc,
		`UPDATE audit_events SET seq = -1 WHERE seq = 3`,
		`UPDATE audit_events SET seq = 3 WHERE seq = 4`,
		`UPDATE audit_events SET seq = 4 WHERE seq = -1`)
	rep := b.verify(t, loc)
	id4 := bs[2].Events[1].ID // originally seq 4, now stored at 3
	if rep.OK() || rep.Problems[0].Seq != 3 || rep.Problems[0].Kind != audit.ProblemReordered ||
		!strings.Contains(rep.Problems[0].Message, "event 3 ("+id4+")") || !strings.Contains(rep.Problems[0].Message, "reordered") {
		t.Fatalf("swap not named at event 3:\n%s", rep)
	}
}

func testReopenContinuesChain(t *testing.T, b Backend) {
	ctx := context.Background()
	loc, bs := b.seeded(t, 3)
	last := bs[3].Events[1]
	s := b.open(t, loc)
	next := IntentBatch("tsk_1")
	if err := s.Commit(ctx, []*store.Batch{next}); err != nil {
		t.Fatal(err)
	}
	if next.Events[0].Seq != last.Seq+1 || next.Events[0].PrevHash != last.Hash {
		t.Fatalf("reopened chain: seq %d prev %s, want %d %s", next.Events[0].Seq, next.Events[0].PrevHash, last.Seq+1, last.Hash)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 8 {
		t.Fatalf("verify: %s", rep)
	}
	h, ok := s.(interface {
		Head(context.Context) (audit.Head, error)
	})
	if !ok {
		t.Fatalf("%T has no Head method", s)
	}
	head, err := h.Head(ctx)
	if err != nil || head.Seq != 8 || head.Hash != next.Events[1].Hash {
		t.Fatalf("head = %+v %v", head, err)
	}
}

func testRefusesNewerSchema(t *testing.T, b Backend) {
	loc, _ := b.seeded(t, 1)
	next := b.SchemaVersion + 1
	b.Exec(t, loc, fmt.Sprintf(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (%d, 'future', '2030-01-01T00:00:00.000000000Z')`, next))
	s, err := b.Open(context.Background(), loc)
	if err == nil {
		_ = s.Close()
	}
	want := fmt.Sprintf("its schema version is %d but this airlock binary knows only versions up to %d", next, next-1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}

func testMigrationsRecorded(t *testing.T, b Backend) {
	loc, _ := b.seeded(t, 0)
	var n, max int
	b.QueryRow(t, loc, `SELECT count(*), max(version) FROM schema_migrations`, &n, &max)
	if n != b.SchemaVersion || max != b.SchemaVersion || max < 5 {
		t.Fatalf("schema_migrations has %d rows, max %d; binary knows %d", n, max, b.SchemaVersion)
	}
	// Reopening does not re-apply migrations.
	if err := b.open(t, loc).Close(); err != nil {
		t.Fatal(err)
	}
	b.QueryRow(t, loc, `SELECT count(*) FROM schema_migrations`, &n)
	if n != b.SchemaVersion {
		t.Fatalf("after reopen: %d rows, want %d", n, b.SchemaVersion)
	}
}

// testMigration3FillsEffect rewinds a store to schema version 2 (as an
// older airlock left it, with decision events but no effect column) and
// reopens it: migration 0003 fills the effect of existing events from
// their bodies, so that AuditFiltered finds them.
func testMigration3FillsEffect(t *testing.T, b Backend) {
	ctx := context.Background()
	loc, _ := b.seeded(t, 3) // 3 allow decisions at seq 1, 3, 5 of 6 events
	b.Exec(t, loc, b.RewindTo2...)
	s := b.open(t, loc)
	recs, err := s.AuditFiltered(ctx, 0, store.AuditFilter{Effect: "allow"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != "[1 3 5]" {
		t.Fatalf("allow decisions after migration: %v, want [1 3 5]", seqs)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 6 {
		t.Fatalf("verify: %s", rep)
	}
}
