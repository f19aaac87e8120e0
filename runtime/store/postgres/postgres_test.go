package postgres_test

import (
	"context"
	"errors"
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
)

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
	s := open(t, freshURL(t))
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
	// Times round-trip to the nanosecond, like the SQLite store's.
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

	// Replace the task (end it; its CallCount field is ignored) and the intent.
	task.EndedAt = time.Now()
	task.CallCount = 99
	b1.Intents[0].Status = "failed"
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{task}, Intents: b1.Intents}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Task(ctx, task.ID); got == nil || !got.EndedAt.Equal(task.EndedAt) || got.CallCount != 2 {
		t.Fatalf("task not replaced, or its call count changed: %+v", got)
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
	if _, err := s.AuditTail(ctx, 0); err == nil {
		t.Fatal("tail 0 accepted")
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
	s := open(t, freshURL(t))
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}, intentBatch("tsk_1")}); err != nil {
		t.Fatal(err)
	}
	good, bad := intentBatch("tsk_1"), intentBatch("tsk_unknown")
	err := s.Commit(ctx, []*store.Batch{good, bad})
	if err == nil || !strings.Contains(err.Error(), "tsk_unknown") || !strings.Contains(err.Error(), "no such task") {
		t.Fatalf("call count on unknown task: err = %v", err)
	}
	if good.Events[0].Seq != 0 || good.Events[0].Hash != "" {
		t.Fatalf("failed commit left seq/hash on event: %+v", good.Events[0])
	}
	if _, err := s.Intent(ctx, good.Intents[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("intent of failed transaction was stored: %v", err)
	}
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
	// Invalid input fails before touching the database.
	for _, bs := range [][]*store.Batch{{nil}, {{Events: []*audit.Event{nil}}}, {{Intents: []*store.Intent{{}}}}, {{Tasks: []*store.Task{{}}}}} {
		if err := s.Commit(ctx, bs); err == nil {
			t.Fatalf("invalid batch accepted: %+v", bs)
		}
	}
}

func TestCommitCanceledContext(t *testing.T) {
	s := open(t, freshURL(t))
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
	if err := stores[0].Commit(ctx, []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}}); err != nil {
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
					b := intentBatch("tsk_1")
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

func lease(id, task string, issued, expires time.Time) *store.Lease {
	return &store.Lease{ID: id, TaskID: task, Tool: "github.issue.create", Source: "github-app", Credential: "github",
		IssuedAt: issued, ExpiresAt: expires, Ref: []byte{1, 2, 3, id[len(id)-1]}}
}

func TestLeasesRoundTripAndRevoke(t *testing.T) {
	ctx := context.Background()
	u := freshURL(t)
	s := open(t, u)
	now := time.Now().UTC()
	task := newTask("tsk_1")
	l1 := lease("lse_1", "tsk_1", now, now.Add(5*time.Minute))
	l2 := lease("lse_2", "tsk_1", now.Add(time.Second), now.Add(5*time.Minute))
	other := lease("lse_3", "tsk_2", now, now.Add(5*time.Minute))
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{task, newTask("tsk_2")}, Leases: []*store.Lease{l2, l1, other},
		Events: []*audit.Event{{Type: "credential.issue", TaskID: "tsk_1", Details: map[string]any{"leases": []string{"lse_1", "lse_2"}}}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.OpenLeases(ctx, "tsk_1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "lse_1" || got[1].ID != "lse_2" {
		t.Fatalf("open leases: %+v", got)
	}
	g := got[0]
	if g.TaskID != "tsk_1" || g.Tool != l1.Tool || g.Source != l1.Source || g.Credential != l1.Credential ||
		!g.IssuedAt.Equal(l1.IssuedAt) || !g.ExpiresAt.Equal(l1.ExpiresAt) || !g.RevokedAt.IsZero() || string(g.Ref) != string(l1.Ref) {
		t.Fatalf("lease read back as %+v, wrote %+v", g, l1)
	}
	at := now.Add(time.Minute)
	if err := s.Commit(ctx, []*store.Batch{{RevokedLeases: map[string]time.Time{"lse_1": at}}}); err != nil {
		t.Fatal(err)
	}
	// Revoking again keeps the first time; replacing the lease does not
	// clear it.
	if err := s.Commit(ctx, []*store.Batch{{RevokedLeases: map[string]time.Time{"lse_1": at.Add(time.Hour)}, Leases: []*store.Lease{l1}}}); err != nil {
		t.Fatal(err)
	}
	got, err = s.OpenLeases(ctx, "tsk_1")
	if err != nil || len(got) != 1 || got[0].ID != "lse_2" {
		t.Fatalf("after revoke: %+v %v", got, err)
	}
	due, err := s.LeasesDue(ctx, now.Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range due {
		if l.ID == "lse_1" {
			t.Fatal("a revoked lease is due")
		}
	}
	// Reopen: the state is in the database, and another Store sees it.
	_ = s.Close()
	s = open(t, u)
	got, err = s.OpenLeases(ctx, "tsk_2")
	if err != nil || len(got) != 1 || got[0].ID != "lse_3" {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	var revokedAt string
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT revoked_at FROM leases WHERE id = 'lse_1'`).Scan(&revokedAt); err != nil {
		t.Fatal(err)
	}
	if r, _ := time.Parse(time.RFC3339Nano, revokedAt); !r.Equal(at) {
		t.Fatalf("revoked_at = %s, want the first revocation %s", revokedAt, at)
	}
}

func TestLeaseCommitErrorsRollBack(t *testing.T) {
	ctx := context.Background()
	s := open(t, freshURL(t))
	now := time.Now()
	ev := &audit.Event{Type: "credential.revoke"}
	err := s.Commit(ctx, []*store.Batch{{Events: []*audit.Event{ev}, RevokedLeases: map[string]time.Time{"lse_nope": now}}})
	if err == nil || !strings.Contains(err.Error(), "no such lease") {
		t.Fatalf("revoking an unknown lease: %v", err)
	}
	if ev.Seq != 0 {
		t.Fatal("event kept its seq after a failed commit")
	}
	if tail, _ := s.AuditTail(ctx, 10); len(tail) != 0 {
		t.Fatalf("failed commit wrote %d events", len(tail))
	}
	if h, err := s.Head(ctx); err != nil || h.Seq != 0 || h.Hash != audit.GenesisHash {
		t.Fatalf("head after failed commit: %+v %v", h, err)
	}
	for _, bad := range []*store.Lease{
		{ID: "", TaskID: "t", Source: "s", ExpiresAt: now},
		{ID: "l", TaskID: "", Source: "s", ExpiresAt: now},
		{ID: "l", TaskID: "t", Source: "", ExpiresAt: now},
		{ID: "l", TaskID: "t", Source: "s"},
	} {
		if err := s.Commit(ctx, []*store.Batch{{Leases: []*store.Lease{bad}}}); err == nil {
			t.Fatalf("lease %+v accepted", bad)
		}
	}
	if err := s.Commit(ctx, []*store.Batch{{RevokedLeases: map[string]time.Time{"x": {}}}}); err == nil {
		t.Fatal("zero revocation time accepted")
	}
}

func TestLeasesDue(t *testing.T) {
	ctx := context.Background()
	s := open(t, freshURL(t))
	now := time.Now().UTC()
	live := newTask("tsk_live")
	ended := newTask("tsk_ended")
	ended.EndedAt = now.Add(-time.Second)
	expired := newTask("tsk_expired")
	expired.ExpiresAt = now.Add(-time.Second)
	leases := []*store.Lease{
		lease("lse_a", "tsk_live", now.Add(-3*time.Minute), now.Add(time.Minute)),       // not due
		lease("lse_b", "tsk_live", now.Add(-2*time.Minute), now.Add(-time.Millisecond)), // lease expired
		lease("lse_c", "tsk_ended", now.Add(-time.Minute), now.Add(time.Minute)),        // task ended
		lease("lse_d", "tsk_expired", now, now.Add(time.Minute)),                        // task expired
		lease("lse_e", "tsk_gone", now.Add(time.Second), now.Add(time.Minute)),          // task unknown
		lease("lse_f", "tsk_ended", now.Add(-time.Minute), now.Add(time.Minute)),        // revoked already
	}
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{live, ended, expired}, Leases: leases,
		RevokedLeases: map[string]time.Time{"lse_f": now}}}); err != nil {
		t.Fatal(err)
	}
	due, err := s.LeasesDue(ctx, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range due {
		got = append(got, l.ID)
	}
	if strings.Join(got, ",") != "lse_b,lse_c,lse_d,lse_e" {
		t.Fatalf("due = %v", got)
	}
	if due, err = s.LeasesDue(ctx, now, 2); err != nil || len(due) != 2 || due[0].ID != "lse_b" {
		t.Fatalf("limited: %+v %v", due, err)
	}
	if _, err := s.LeasesDue(ctx, now, 0); err == nil {
		t.Fatal("zero limit accepted")
	}
	if due, err = s.LeasesDue(ctx, now.Add(2*time.Minute), 100); err != nil || len(due) != 5 {
		t.Fatalf("later: %d %v", len(due), err)
	}
}

// BenchmarkCommitParallel commits one intent (two events) per op from
// many goroutines through a Committer.
func BenchmarkCommitParallel(b *testing.B) {
	b.ReportAllocs()
	ctx := context.Background()
	s := open(b, freshURL(b))
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{newTask("tsk_1")}}}); err != nil {
		b.Fatal(err)
	}
	c := store.NewCommitter(s, store.CommitterOptions{})
	defer c.Close(ctx)
	b.SetParallelism(16)
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
