// Package storetest is the conformance suite of store.Store: one set of
// tests that every implementation (SQLite, PostgreSQL) must pass, so that
// the two stores keep the same semantics. A store's own test calls Run with
// a function that opens a fresh, empty store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
)

// Caller is the SPIFFE ID the suite's tasks and intents belong to.
const Caller = "spiffe://example.org/agent"

// Run runs the conformance suite. open must return a fresh, empty store
// for each call and close it when t ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CommitAndReadBack", testCommitAndReadBack},
		{"CommitFailureRollsBackEverything", testCommitFailureRollsBack},
		{"InvalidBatchesRefused", testInvalidBatches},
		{"CommitCanceledContext", testCommitCanceled},
		{"LeasesRoundTripAndRevoke", testLeasesRoundTrip},
		{"LeaseCommitErrorsRollBack", testLeaseErrors},
		{"LeasesDue", testLeasesDue},
		{"ConcurrentCommitsFormOneChain", testConcurrentCommits},
		{"AuditFiltered", testAuditFiltered},
		{"ApprovalRoundTrip", testApprovalRoundTrip},
		{"ApprovalTransitions", testApprovalTransitions},
		{"ApprovalConflictCommitsNothing", testApprovalConflictCommitsNothing},
		{"ApprovalGuardUnderConcurrency", testApprovalConcurrency},
		{"ApprovalsFilter", testApprovalsFilter},
		{"ApprovalsDue", testApprovalsDue},
		{"Idempotency", testIdempotency},
		{"PurgeIdempotency", testPurgeIdempotency},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// NewTask returns an open task of Caller with labels, expiring in an hour.
func NewTask(id string) *store.Task {
	now := time.Now()
	return &store.Task{ID: id, Caller: Caller, Purpose: "triage", Sensitivity: "internal",
		Labels: map[string]string{"team": "sre", "env": "prod"}, StartedAt: now, ExpiresAt: now.Add(time.Hour)}
}

// IntentBatch is what the executor commits per intent: a decision and an
// execution event, the intent outcome and one call on the task.
func IntentBatch(taskID string) *store.Batch {
	intentID := ids.New("int")
	now := time.Now()
	return &store.Batch{
		Events: []*audit.Event{
			{ID: ids.New("evt"), Time: now, Type: audit.TypeDecision, Caller: Caller, TaskID: taskID,
				IntentID: intentID, Tool: &audit.ToolRef{Name: "http.fetch", Version: "1.0.0"},
				Decision: &audit.Decision{Effect: "allow", Rules: []string{"allow-all"}}},
			{ID: ids.New("evt"), Time: now, Type: audit.TypeExecution, Caller: Caller, TaskID: taskID,
				IntentID: intentID, Tool: &audit.ToolRef{Name: "http.fetch", Version: "1.0.0"}, Status: "ok", DurationUS: 812},
		},
		Intents:    []*store.Intent{{ID: intentID, TaskID: taskID, Caller: Caller, Tool: "http.fetch", Status: "ok", Created: now, Outcome: []byte(`{"status":"OK"}`)}},
		CallCounts: map[string]int64{taskID: 1},
	}
}

// Lease returns a lease of task with the given times.
func Lease(id, task string, issued, expires time.Time) *store.Lease {
	return &store.Lease{ID: id, TaskID: task, Tool: "github.issue.create", Source: "github-app", Credential: "github",
		IssuedAt: issued, ExpiresAt: expires, Ref: []byte{1, 2, 3, id[len(id)-1]}}
}

func commit(t *testing.T, s store.Store, bs ...*store.Batch) {
	t.Helper()
	if err := s.Commit(context.Background(), bs); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func intentStored(t *testing.T, s store.Store, id string) bool {
	t.Helper()
	_, err := s.Intent(context.Background(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func testCommitAndReadBack(t *testing.T, s store.Store) {
	ctx := context.Background()
	task := NewTask("tsk_1")
	begin := &store.Batch{Tasks: []*store.Task{task}, Events: []*audit.Event{{Type: audit.TypeTaskBegin, TaskID: task.ID,
		Details: map[string]any{"purpose": task.Purpose}}}}
	b1, b2 := IntentBatch(task.ID), IntentBatch(task.ID)
	commit(t, s, begin, b1)
	commit(t, s, b2)
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
	// Times round-trip to the nanosecond.
	if got.Caller != task.Caller || got.Purpose != task.Purpose || got.Sensitivity != task.Sensitivity ||
		got.Labels["team"] != "sre" || got.Labels["env"] != "prod" || len(got.Labels) != 2 ||
		!got.StartedAt.Equal(task.StartedAt) || !got.ExpiresAt.Equal(task.ExpiresAt) || !got.EndedAt.IsZero() || got.CallCount != 2 {
		t.Fatalf("task read back = %+v", got)
	}
	in, err := s.Intent(ctx, b1.Intents[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.TaskID != task.ID || in.Caller != Caller || in.Status != "ok" || in.Tool != "http.fetch" || string(in.Outcome) != `{"status":"OK"}` ||
		!in.Created.Equal(b1.Intents[0].Created) {
		t.Fatalf("intent read back = %+v", in)
	}

	// Replace the task (end it; its CallCount field is ignored) and the intent.
	task.EndedAt = time.Now()
	task.CallCount = 99
	b1.Intents[0].Status = "failed"
	commit(t, s, &store.Batch{Tasks: []*store.Task{task}, Intents: b1.Intents})
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
	if err != nil || len(tail) != 2 || tail[0].Seq != 4 || tail[1].Seq != 5 || tail[1].Hash != b2.Events[1].Hash {
		t.Fatalf("tail: %+v %v", tail, err)
	}
	if _, err := s.AuditRecords(ctx, 0, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
	if _, err := s.AuditTail(ctx, 0); err == nil {
		t.Fatal("tail 0 accepted")
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 5 || rep.Head.Seq != 5 || rep.Head.Hash != b2.Events[1].Hash {
		t.Fatalf("verify: %s", rep)
	}
}

func testCommitFailureRollsBack(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, &store.Batch{Tasks: []*store.Task{NewTask("tsk_1")}}, IntentBatch("tsk_1"))
	good, bad := IntentBatch("tsk_1"), IntentBatch("tsk_unknown")
	err := s.Commit(ctx, []*store.Batch{good, bad})
	if err == nil || !strings.Contains(err.Error(), "tsk_unknown") || !strings.Contains(err.Error(), "no such task") {
		t.Fatalf("call count on unknown task: err = %v", err)
	}
	if good.Events[0].Seq != 0 || good.Events[0].Hash != "" {
		t.Fatalf("failed commit left seq/hash on event: %+v", good.Events[0])
	}
	if intentStored(t, s, good.Intents[0].ID) {
		t.Fatal("intent of failed transaction was stored")
	}
	// The chain continues correctly after the rollback.
	next := IntentBatch("tsk_1")
	commit(t, s, next)
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

func testInvalidBatches(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	okApproval := func() *store.Approval { return newApproval("apr_x", "tsk_1", now, now.Add(time.Hour)) }
	for name, bs := range map[string][]*store.Batch{
		"nil batch":         {nil},
		"nil event":         {{Events: []*audit.Event{nil}}},
		"intent without id": {{Intents: []*store.Intent{{}}}},
		"task without id":   {{Tasks: []*store.Task{{}}}},
		"approval without id": {{Approvals: []*store.Approval{func() *store.Approval {
			a := okApproval()
			a.ID = ""
			return a
		}()}}},
		"approval without args digest": {{Approvals: []*store.Approval{func() *store.Approval {
			a := okApproval()
			a.ArgsSHA256 = ""
			return a
		}()}}},
		"approval in unknown state": {{Approvals: []*store.Approval{func() *store.Approval {
			a := okApproval()
			a.State = "maybe"
			return a
		}()}}},
		"change to pending": {{ApprovalChanges: []*store.ApprovalChange{{ID: "apr_x", From: []store.ApprovalState{store.ApprovalApproved},
			To: store.ApprovalPending, At: now}}}},
		"change without from": {{ApprovalChanges: []*store.ApprovalChange{{ID: "apr_x", To: store.ApprovalApproved, At: now}}}},
		"reclaim without ClaimedBefore": {{ApprovalChanges: []*store.ApprovalChange{{ID: "apr_x",
			From: []store.ApprovalState{store.ApprovalClaimed}, To: store.ApprovalClaimed, At: now, ClaimedBy: "x"}}}},
		"idempotency without key": {{Idempotency: []*store.IdempotencyRecord{{Caller: Caller, IntentID: "int_1"}}}},
	} {
		ev := &audit.Event{Type: "test"}
		bs = append([]*store.Batch{{Events: []*audit.Event{ev}}}, bs...)
		err := s.Commit(ctx, bs)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: a malformed batch is not a conflict: %v", name, err)
		}
		if ev.Seq != 0 {
			t.Errorf("%s: event sealed", name)
		}
	}
	if recs, err := s.AuditTail(ctx, 10); err != nil || len(recs) != 0 {
		t.Fatalf("invalid batches wrote %d records (%v)", len(recs), err)
	}
}

func testCommitCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := IntentBatch("tsk_1")
	b.CallCounts = nil
	if err := s.Commit(ctx, []*store.Batch{b}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if recs, err := s.AuditRecords(context.Background(), 0, 10); err != nil || len(recs) != 0 {
		t.Fatalf("canceled commit wrote %d records (%v)", len(recs), err)
	}
}

func testLeasesRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	l1 := Lease("lse_1", "tsk_1", now, now.Add(5*time.Minute))
	l2 := Lease("lse_2", "tsk_1", now.Add(time.Second), now.Add(5*time.Minute))
	other := Lease("lse_3", "tsk_2", now, now.Add(5*time.Minute))
	commit(t, s, &store.Batch{Tasks: []*store.Task{NewTask("tsk_1"), NewTask("tsk_2")}, Leases: []*store.Lease{l2, l1, other},
		Events: []*audit.Event{{Type: "credential.issue", TaskID: "tsk_1", Details: map[string]any{"leases": []string{"lse_1", "lse_2"}}}}})
	got, err := s.OpenLeases(ctx, "tsk_1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "lse_1" || got[1].ID != "lse_2" {
		t.Fatalf("open leases: %+v", got)
	}
	g := got[0]
	if g.TaskID != "tsk_1" || g.Tool != l1.Tool || g.Source != l1.Source || g.Credential != l1.Credential ||
		!g.IssuedAt.Equal(l1.IssuedAt) || !g.ExpiresAt.Equal(l1.ExpiresAt) || !g.RevokedAt.IsZero() || !bytes.Equal(g.Ref, l1.Ref) {
		t.Fatalf("lease read back as %+v, wrote %+v", g, l1)
	}
	at := now.Add(time.Minute)
	commit(t, s, &store.Batch{RevokedLeases: map[string]time.Time{"lse_1": at}})
	// Revoking again keeps the first time; replacing the lease does not
	// clear it.
	commit(t, s, &store.Batch{RevokedLeases: map[string]time.Time{"lse_1": at.Add(time.Hour)}, Leases: []*store.Lease{l1}})
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
	if got, err = s.OpenLeases(ctx, "tsk_2"); err != nil || len(got) != 1 || got[0].ID != "lse_3" {
		t.Fatalf("other task: %+v %v", got, err)
	}
}

func testLeaseErrors(t *testing.T, s store.Store) {
	ctx := context.Background()
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

func testLeasesDue(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	live := NewTask("tsk_live")
	ended := NewTask("tsk_ended")
	ended.EndedAt = now.Add(-time.Second)
	expired := NewTask("tsk_expired")
	expired.ExpiresAt = now.Add(-time.Second)
	leases := []*store.Lease{
		Lease("lse_a", "tsk_live", now.Add(-3*time.Minute), now.Add(time.Minute)),       // not due
		Lease("lse_b", "tsk_live", now.Add(-2*time.Minute), now.Add(-time.Millisecond)), // lease expired
		Lease("lse_c", "tsk_ended", now.Add(-time.Minute), now.Add(time.Minute)),        // task ended
		Lease("lse_d", "tsk_expired", now, now.Add(time.Minute)),                        // task expired
		Lease("lse_e", "tsk_gone", now.Add(time.Second), now.Add(time.Minute)),          // task unknown
		Lease("lse_f", "tsk_ended", now.Add(-time.Minute), now.Add(time.Minute)),        // revoked already
	}
	commit(t, s, &store.Batch{Tasks: []*store.Task{live, ended, expired}, Leases: leases,
		RevokedLeases: map[string]time.Time{"lse_f": now}})
	due, err := s.LeasesDue(ctx, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := leaseIDs(due); got != "lse_b,lse_c,lse_d,lse_e" {
		t.Fatalf("due = %v", got)
	}
	if due, err = s.LeasesDue(ctx, now, 2); err != nil || len(due) != 2 || due[0].ID != "lse_b" {
		t.Fatalf("limited: %+v %v", due, err)
	}
	if _, err := s.LeasesDue(ctx, now, 0); err == nil {
		t.Fatal("zero limit accepted")
	}
	// Later, the live lease is due too.
	if due, err = s.LeasesDue(ctx, now.Add(2*time.Minute), 100); err != nil || len(due) != 5 {
		t.Fatalf("later: %d %v", len(due), err)
	}
}

func leaseIDs(ls []*store.Lease) string {
	var out []string
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return strings.Join(out, ",")
}

// testConcurrentCommits: goroutines commit intents directly and through a
// Committer at the same time; the result is one contiguous chain with
// every event once and no lost call count.
func testConcurrentCommits(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, &store.Batch{Tasks: []*store.Task{NewTask("tsk_1")}})
	c := store.NewCommitter(s, store.CommitterOptions{})
	const workers, per = 16, 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[int64]string{}
	)
	fail := make(chan error, workers*per)
	for w := range workers {
		wg.Go(func() {
			for k := range per {
				b := IntentBatch("tsk_1")
				var err error
				if (w+k)%2 == 0 {
					err = s.Commit(ctx, []*store.Batch{b})
				} else {
					err = c.Commit(ctx, b)
				}
				if err != nil {
					fail <- err
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
	wg.Wait()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(fail)
	for err := range fail {
		t.Fatal(err)
	}
	const events = 2 * workers * per
	rep := store.Verify(ctx, s)
	if !rep.OK() || rep.Count != events || rep.Head.Seq != events || len(seen) != events {
		t.Fatalf("chain after concurrent commits (%d distinct seqs): %s", len(seen), rep)
	}
	recs, err := s.AuditRecords(ctx, 0, events)
	if err != nil || len(recs) != events {
		t.Fatalf("records %d %v", len(recs), err)
	}
	for i, r := range recs {
		ev, err := audit.Decode(r.Body)
		if err != nil || r.Seq != int64(i+1) || seen[r.Seq] != ev.ID {
			t.Fatalf("record %d (seq %d) is %s, the committer was told %s (%v)", i, r.Seq, ev.ID, seen[r.Seq], err)
		}
	}
	if task, err := s.Task(ctx, "tsk_1"); err != nil || task.CallCount != workers*per {
		t.Fatalf("call count = %+v %v, want %d", task, err, workers*per)
	}
}

func testAuditFiltered(t *testing.T, s store.Store) {
	ctx := context.Background()
	ev := func(typ, task, caller, tool, effect string) *audit.Event {
		e := &audit.Event{Type: typ, TaskID: task, Caller: caller}
		if tool != "" {
			e.Tool = &audit.ToolRef{Name: tool}
		}
		if effect != "" {
			e.Decision = &audit.Decision{Effect: effect}
		}
		return e
	}
	const a, b = "spiffe://example.org/a", "spiffe://example.org/b"
	events := []*audit.Event{
		ev("task.begin", "tsk_1", a, "", ""),                               // 1
		ev(audit.TypeDecision, "tsk_1", a, "http.fetch", "allow"),          // 2
		ev(audit.TypeExecution, "tsk_1", a, "http.fetch", ""),              // 3
		ev(audit.TypeDecision, "tsk_2", b, "http.fetch", "deny"),           // 4
		ev(audit.TypeDecision, "tsk_2", b, "fs.write", "require_approval"), // 5
		ev(audit.TypeDecision, "tsk_1", a, "fs.write", "deny"),             // 6
		ev(audit.TypeExecution, "tsk_2", b, "fs.write", ""),                // 7
	}
	commit(t, s, &store.Batch{Events: events[:3]}, &store.Batch{Events: events[3:]})
	for _, tc := range []struct {
		f     store.AuditFilter
		after int64
		limit int
		want  []int64
	}{
		{store.AuditFilter{}, 0, 100, []int64{1, 2, 3, 4, 5, 6, 7}},
		{store.AuditFilter{TaskID: "tsk_1"}, 0, 100, []int64{1, 2, 3, 6}},
		{store.AuditFilter{Caller: b}, 0, 100, []int64{4, 5, 7}},
		{store.AuditFilter{Tool: "fs.write"}, 0, 100, []int64{5, 6, 7}},
		{store.AuditFilter{Effect: "deny"}, 0, 100, []int64{4, 6}},
		{store.AuditFilter{Effect: "require_approval"}, 0, 100, []int64{5}},
		{store.AuditFilter{TaskID: "tsk_1", Tool: "http.fetch", Effect: "allow", Caller: a}, 0, 100, []int64{2}},
		{store.AuditFilter{TaskID: "tsk_1", Caller: b}, 0, 100, nil},
		{store.AuditFilter{Tool: "fs.write"}, 5, 100, []int64{6, 7}},
		{store.AuditFilter{TaskID: "tsk_1"}, 0, 2, []int64{1, 2}},
		{store.AuditFilter{TaskID: "tsk_1"}, 2, 2, []int64{3, 6}},
		{store.AuditFilter{Effect: "allo"}, 0, 100, nil},
	} {
		recs, err := s.AuditFiltered(ctx, tc.after, tc.f, tc.limit)
		if err != nil {
			t.Fatalf("%+v: %v", tc.f, err)
		}
		var got []int64
		for _, r := range recs {
			got = append(got, r.Seq)
			if d, err := audit.Decode(r.Body); err != nil || d.Seq != r.Seq || r.Hash != events[r.Seq-1].Hash {
				t.Fatalf("record %d does not match its event (%v)", r.Seq, err)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("AuditFiltered(after %d, %+v, %d) = %v, want %v", tc.after, tc.f, tc.limit, got, tc.want)
		}
	}
	if _, err := s.AuditFiltered(ctx, 0, store.AuditFilter{}, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func newApproval(id, task string, created, expires time.Time) *store.Approval {
	return &store.Approval{ID: id, IntentID: "int_" + id, TaskID: task, Caller: Caller, Tool: "github.issue.create",
		ToolDigest: "sha256:abc", ArgsSHA256: "e3b0c442", Arguments: []byte(`{"title":"x"}`), Justification: "fix the bug",
		Rules: []string{"high-risk", "prod"}, Message: "needs a human", Risk: "high", State: store.ApprovalPending,
		CreatedAt: created, ExpiresAt: expires, IdempotencyKey: "k-" + id}
}

func change(id string, to store.ApprovalState, at time.Time, from ...store.ApprovalState) *store.ApprovalChange {
	return &store.ApprovalChange{ID: id, From: from, To: to, At: at}
}

func mustApproval(t *testing.T, s store.Store, id string) *store.Approval {
	t.Helper()
	a, err := s.Approval(context.Background(), id)
	if err != nil {
		t.Fatalf("approval %s: %v", id, err)
	}
	return a
}

func testApprovalRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	a := newApproval("apr_1", "tsk_1", now, now.Add(time.Hour))
	commit(t, s, &store.Batch{Approvals: []*store.Approval{a}, Events: []*audit.Event{{Type: "approval.request"}}})
	got := mustApproval(t, s, "apr_1")
	if got.ID != a.ID || got.IntentID != a.IntentID || got.TaskID != a.TaskID || got.Caller != a.Caller || got.Tool != a.Tool ||
		got.ToolDigest != a.ToolDigest || got.ArgsSHA256 != a.ArgsSHA256 || !bytes.Equal(got.Arguments, a.Arguments) ||
		got.Justification != a.Justification || !slices.Equal(got.Rules, a.Rules) || got.Message != a.Message || got.Risk != a.Risk ||
		got.State != store.ApprovalPending || !got.CreatedAt.Equal(a.CreatedAt) || !got.ExpiresAt.Equal(a.ExpiresAt) ||
		!got.DecidedAt.IsZero() || got.Approver != "" || got.ClaimedBy != "" || !got.ClaimedAt.IsZero() || got.IntentStatus != "" ||
		got.IdempotencyKey != a.IdempotencyKey {
		t.Fatalf("approval read back as\n%+v\nwrote\n%+v", got, a)
	}
	if _, err := s.Approval(ctx, "apr_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing approval: %v", err)
	}
	// A second insert of the id is a conflict and commits nothing.
	dup := newApproval("apr_1", "tsk_2", now, now.Add(time.Hour))
	ev := &audit.Event{Type: "approval.request"}
	err := s.Commit(ctx, []*store.Batch{{Approvals: []*store.Approval{dup}, Events: []*audit.Event{ev}}})
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "apr_1") {
		t.Fatalf("duplicate approval id: %v, want ErrConflict naming it", err)
	}
	if ev.Seq != 0 || mustApproval(t, s, "apr_1").TaskID != "tsk_1" {
		t.Fatal("a conflicting approval insert changed the store")
	}
	// No rules round-trip as none.
	b := newApproval("apr_2", "tsk_1", now, now.Add(time.Hour))
	b.Rules, b.Arguments = nil, nil
	commit(t, s, &store.Batch{Approvals: []*store.Approval{b}})
	if got := mustApproval(t, s, "apr_2"); len(got.Rules) != 0 || len(got.Arguments) != 0 {
		t.Fatalf("empty rules/arguments read back as %v %q", got.Rules, got.Arguments)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 1 {
		t.Fatalf("verify: %s", rep)
	}
}

func testApprovalTransitions(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	for _, id := range []string{"apr_ok", "apr_deny", "apr_exp"} {
		commit(t, s, &store.Batch{Approvals: []*store.Approval{newApproval(id, "tsk_1", now, now.Add(time.Hour))}})
	}
	decided := now.Add(time.Minute)
	approve := change("apr_ok", store.ApprovalApproved, decided, store.ApprovalPending)
	approve.Approver, approve.Reason = "spiffe://example.org/operator", "looks right"
	commit(t, s, &store.Batch{ApprovalChanges: []*store.ApprovalChange{approve}})
	got := mustApproval(t, s, "apr_ok")
	if got.State != store.ApprovalApproved || got.Approver != approve.Approver || got.Reason != "looks right" || !got.DecidedAt.Equal(decided) {
		t.Fatalf("approved: %+v", got)
	}
	// Approving twice: the second finds it approved, not pending.
	err := s.Commit(ctx, []*store.Batch{{ApprovalChanges: []*store.ApprovalChange{change("apr_ok", store.ApprovalApproved, decided, store.ApprovalPending)}}})
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "apr_ok") || !strings.Contains(err.Error(), "approved") {
		t.Fatalf("second approval: %v, want ErrConflict naming the approval and its state", err)
	}
	// Claim, then done.
	claim := change("apr_ok", store.ApprovalClaimed, decided.Add(time.Second), store.ApprovalApproved)
	claim.ClaimedBy = "exe_1"
	commit(t, s, &store.Batch{ApprovalChanges: []*store.ApprovalChange{claim}})
	if got := mustApproval(t, s, "apr_ok"); got.State != store.ApprovalClaimed || got.ClaimedBy != "exe_1" || !got.ClaimedAt.Equal(claim.At) ||
		got.Approver != approve.Approver {
		t.Fatalf("claimed: %+v", got)
	}
	// A second claim from approved fails; a re-claim of a fresh claim fails.
	claim2 := change("apr_ok", store.ApprovalClaimed, decided.Add(2*time.Second), store.ApprovalApproved)
	claim2.ClaimedBy = "exe_2"
	if err := s.Commit(ctx, []*store.Batch{{ApprovalChanges: []*store.ApprovalChange{claim2}}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second claim: %v", err)
	}
	claim2.From = []store.ApprovalState{store.ApprovalClaimed}
	claim2.ClaimedBefore = claim.At // the claim is not older than this
	if err := s.Commit(ctx, []*store.Batch{{ApprovalChanges: []*store.ApprovalChange{claim2}}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("re-claim of a fresh claim: %v", err)
	}
	// A stale claim can be taken over.
	claim2.ClaimedBefore = claim.At.Add(time.Nanosecond)
	commit(t, s, &store.Batch{ApprovalChanges: []*store.ApprovalChange{claim2}})
	if got := mustApproval(t, s, "apr_ok"); got.ClaimedBy != "exe_2" || !got.ClaimedAt.Equal(claim2.At) {
		t.Fatalf("re-claimed: %+v", got)
	}
	done := &store.ApprovalChange{ID: "apr_ok", From: []store.ApprovalState{store.ApprovalClaimed}, To: store.ApprovalDone, IntentStatus: "ok"}
	commit(t, s, &store.Batch{ApprovalChanges: []*store.ApprovalChange{done}})
	if got := mustApproval(t, s, "apr_ok"); got.State != store.ApprovalDone || got.IntentStatus != "ok" || got.ClaimedBy != "exe_2" {
		t.Fatalf("done: %+v", got)
	}

	// Denied and expired are final: no change from a live state matches,
	// and naming a final state in From is refused outright.
	deny := change("apr_deny", store.ApprovalDenied, decided, store.ApprovalPending)
	deny.Approver, deny.Reason = "spiffe://example.org/operator", "no"
	commit(t, s, &store.Batch{ApprovalChanges: []*store.ApprovalChange{deny, change("apr_exp", store.ApprovalExpired, decided, store.ApprovalPending)}})
	for id, state := range map[string]store.ApprovalState{"apr_deny": store.ApprovalDenied, "apr_exp": store.ApprovalExpired, "apr_ok": store.ApprovalDone} {
		err := s.Commit(ctx, []*store.Batch{{ApprovalChanges: []*store.ApprovalChange{
			change(id, store.ApprovalApproved, decided, store.ApprovalPending, store.ApprovalApproved, store.ApprovalClaimed)}}})
		if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), string(state)) {
			t.Fatalf("reviving %s approval %s: %v", state, id, err)
		}
		if err := s.Commit(ctx, []*store.Batch{{ApprovalChanges: []*store.ApprovalChange{
			change(id, store.ApprovalApproved, decided, state)}}}); err == nil || errors.Is(err, store.ErrConflict) {
			t.Fatalf("change from final state %s accepted or reported as a conflict: %v", state, err)
		}
		if got := mustApproval(t, s, id); got.State != state {
			t.Fatalf("%s revived to %s", id, got.State)
		}
	}
	if got := mustApproval(t, s, "apr_deny"); got.Approver != deny.Approver || got.Reason != "no" || !got.DecidedAt.Equal(decided) {
		t.Fatalf("denied: %+v", got)
	}
	// An unknown approval is a conflict and not found.
	err = s.Commit(ctx, []*store.Batch{{ApprovalChanges: []*store.ApprovalChange{change("apr_nope", store.ApprovalApproved, decided, store.ApprovalPending)}}})
	if !errors.Is(err, store.ErrConflict) || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown approval: %v", err)
	}
}

// testApprovalConflictCommitsNothing: a batch whose guard fails, next to
// batches that are fine, rolls back the whole transaction.
func testApprovalConflictCommitsNothing(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	commit(t, s, &store.Batch{Tasks: []*store.Task{NewTask("tsk_1")}, Approvals: []*store.Approval{
		newApproval("apr_1", "tsk_1", now, now.Add(time.Hour)), newApproval("apr_2", "tsk_1", now, now.Add(time.Hour))}})
	good := IntentBatch("tsk_1")
	good.ApprovalChanges = []*store.ApprovalChange{change("apr_1", store.ApprovalApproved, now, store.ApprovalPending)}
	good.Idempotency = []*store.IdempotencyRecord{{Caller: Caller, Key: "k1", IntentID: good.Intents[0].ID}}
	bad := IntentBatch("tsk_1")
	bad.ApprovalChanges = []*store.ApprovalChange{
		change("apr_2", store.ApprovalDenied, now, store.ApprovalPending),
		change("apr_1", store.ApprovalClaimed, now, store.ApprovalApproved), // apr_1 is pending before this transaction
	}
	bad.ApprovalChanges[1].ClaimedBy = "exe_1"
	bad.ApprovalChanges[0].To = store.ApprovalExpired
	err := s.Commit(ctx, []*store.Batch{bad, good})
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "apr_1") || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("err = %v, want ErrConflict naming apr_1 and its state", err)
	}
	for _, id := range []string{"apr_1", "apr_2"} {
		if got := mustApproval(t, s, id); got.State != store.ApprovalPending {
			t.Fatalf("%s is %s after a failed transaction", id, got.State)
		}
	}
	if intentStored(t, s, good.Intents[0].ID) || intentStored(t, s, bad.Intents[0].ID) || good.Events[0].Seq != 0 {
		t.Fatal("a batch of the failed transaction was committed")
	}
	if _, err := s.Idempotency(ctx, Caller, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("idempotency record of the failed transaction: %v", err)
	}
	if task, _ := s.Task(ctx, "tsk_1"); task.CallCount != 0 {
		t.Fatalf("call count %d after a failed transaction", task.CallCount)
	}
	// In order, in one transaction, the same changes hold.
	commit(t, s, good, &store.Batch{ApprovalChanges: []*store.ApprovalChange{
		{ID: "apr_1", From: []store.ApprovalState{store.ApprovalApproved}, To: store.ApprovalClaimed, At: now, ClaimedBy: "exe_1"}}})
	if got := mustApproval(t, s, "apr_1"); got.State != store.ApprovalClaimed {
		t.Fatalf("apr_1 is %s", got.State)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 2 {
		t.Fatalf("verify: %s", rep)
	}
}

// testApprovalConcurrency: many goroutines race to approve, then to claim,
// the same approval; exactly one of each wins, through a Committer too.
func testApprovalConcurrency(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	commit(t, s, &store.Batch{Approvals: []*store.Approval{newApproval("apr_1", "tsk_1", now, now.Add(time.Hour))}})
	c := store.NewCommitter(s, store.CommitterOptions{})
	defer c.Close(ctx)
	race := func(mk func(i int) *store.ApprovalChange) (winner int) {
		const n = 12
		var (
			wg   sync.WaitGroup
			wins atomic.Int32
			win  atomic.Int32
		)
		for i := range n {
			wg.Go(func() {
				b := &store.Batch{ApprovalChanges: []*store.ApprovalChange{mk(i)},
					Events: []*audit.Event{{Type: "approval.change", Details: map[string]any{"i": i}}}}
				var err error
				if i%2 == 0 {
					err = c.Commit(ctx, b)
				} else {
					err = s.Commit(ctx, []*store.Batch{b})
				}
				switch {
				case err == nil:
					wins.Add(1)
					win.Store(int32(i))
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("racer %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d racers won, want exactly 1", wins.Load())
		}
		return int(win.Load())
	}
	w := race(func(i int) *store.ApprovalChange {
		ch := change("apr_1", store.ApprovalApproved, now, store.ApprovalPending)
		ch.Approver = fmt.Sprintf("op_%d", i)
		return ch
	})
	if got := mustApproval(t, s, "apr_1"); got.Approver != fmt.Sprintf("op_%d", w) {
		t.Fatalf("approver %s, winner op_%d", got.Approver, w)
	}
	w = race(func(i int) *store.ApprovalChange {
		ch := change("apr_1", store.ApprovalClaimed, now, store.ApprovalApproved)
		ch.ClaimedBy = fmt.Sprintf("exe_%d", i)
		return ch
	})
	if got := mustApproval(t, s, "apr_1"); got.ClaimedBy != fmt.Sprintf("exe_%d", w) {
		t.Fatalf("claimed by %s, winner exe_%d", got.ClaimedBy, w)
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 2 {
		t.Fatalf("verify (one event per winner): %s", rep)
	}
}

func testApprovalsFilter(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	var as []*store.Approval
	for i := range 12 {
		task := "tsk_a"
		if i%3 == 0 {
			task = "tsk_b"
		}
		as = append(as, newApproval(fmt.Sprintf("apr_%02d", i), task, base.Add(time.Duration(i)*time.Minute), base.Add(2*time.Hour)))
	}
	as[4].State, as[5].State, as[9].State = store.ApprovalApproved, store.ApprovalDenied, store.ApprovalApproved
	commit(t, s, &store.Batch{Approvals: as})
	ids := func(f store.ApprovalFilter) string {
		t.Helper()
		got, err := s.Approvals(ctx, f)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		var out []string
		for _, a := range got {
			out = append(out, strings.TrimPrefix(a.ID, "apr_"))
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		f    store.ApprovalFilter
		want string
	}{
		{store.ApprovalFilter{}, "11,10,09,08,07,06,05,04,03,02,01,00"},
		{store.ApprovalFilter{Limit: 3}, "11,10,09"},
		{store.ApprovalFilter{States: []store.ApprovalState{store.ApprovalApproved}}, "09,04"},
		{store.ApprovalFilter{States: []store.ApprovalState{store.ApprovalApproved, store.ApprovalDenied}}, "09,05,04"},
		{store.ApprovalFilter{TaskID: "tsk_b"}, "09,06,03,00"},
		{store.ApprovalFilter{TaskID: "tsk_b", States: []store.ApprovalState{store.ApprovalPending}}, "06,03,00"},
		{store.ApprovalFilter{TaskID: "tsk_nope"}, ""},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("Approvals(%+v) = %s, want %s", tc.f, got, tc.want)
		}
	}
	if _, err := s.Approvals(ctx, store.ApprovalFilter{States: []store.ApprovalState{"bogus"}}); err == nil {
		t.Error("unknown state filter accepted")
	}
	if _, err := s.Approvals(ctx, store.ApprovalFilter{Limit: -1}); err == nil {
		t.Error("negative limit accepted")
	}
	// The default limit is 100, the maximum 1000.
	var many []*store.Approval
	for i := range store.MaxApprovalsLimit + 5 {
		many = append(many, newApproval(fmt.Sprintf("apr_m%04d", i), "tsk_m", base, base.Add(time.Hour)))
	}
	commit(t, s, &store.Batch{Approvals: many})
	for limit, want := range map[int]int{0: store.DefaultApprovalsLimit, 5000: store.MaxApprovalsLimit} {
		got, err := s.Approvals(ctx, store.ApprovalFilter{TaskID: "tsk_m", Limit: limit})
		if err != nil || len(got) != want {
			t.Errorf("limit %d: %d approvals (%v), want %d", limit, len(got), err, want)
		}
	}
}

func testApprovalsDue(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	const stale = time.Minute
	mk := func(id string, age time.Duration, expires time.Time, state store.ApprovalState, claimedAt time.Time) *store.Approval {
		a := newApproval(id, "tsk_1", now.Add(-age), expires)
		a.State = state
		if !claimedAt.IsZero() {
			a.ClaimedBy, a.ClaimedAt = "exe_1", claimedAt
		}
		return a
	}
	commit(t, s, &store.Batch{Approvals: []*store.Approval{
		mk("apr_a", 9*time.Minute, now.Add(time.Hour), store.ApprovalPending, time.Time{}),       // live pending: no
		mk("apr_b", 8*time.Minute, now.Add(-time.Second), store.ApprovalPending, time.Time{}),    // expired pending: due
		mk("apr_c", 7*time.Minute, now.Add(time.Hour), store.ApprovalApproved, time.Time{}),      // approved: due
		mk("apr_d", 6*time.Minute, now.Add(time.Hour), store.ApprovalClaimed, now.Add(-2*stale)), // stale claim: due
		mk("apr_e", 5*time.Minute, now.Add(time.Hour), store.ApprovalClaimed, now.Add(-stale/2)), // fresh claim: no
		mk("apr_f", 4*time.Minute, now.Add(-time.Hour), store.ApprovalDenied, time.Time{}),       // final: no
		mk("apr_g", 3*time.Minute, now.Add(-time.Hour), store.ApprovalExpired, time.Time{}),      // final: no
		mk("apr_h", 2*time.Minute, now.Add(-time.Hour), store.ApprovalDone, now.Add(-time.Hour)), // final: no
		mk("apr_i", 1*time.Minute, now, store.ApprovalPending, time.Time{}),                      // expires exactly now: due
	}})
	due, err := s.ApprovalsDue(ctx, now, stale, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range due {
		got = append(got, a.ID)
	}
	if strings.Join(got, ",") != "apr_b,apr_c,apr_d,apr_i" {
		t.Fatalf("due = %v, want apr_b,apr_c,apr_d,apr_i", got)
	}
	if due, err = s.ApprovalsDue(ctx, now, stale, 2); err != nil || len(due) != 2 || due[0].ID != "apr_b" {
		t.Fatalf("limited: %d %v", len(due), err)
	}
	if due, err = s.ApprovalsDue(ctx, now.Add(2*time.Hour), stale, 100); err != nil || len(due) != 6 {
		t.Fatalf("two hours later: %d due (%v), want 6", len(due), err)
	}
	if _, err := s.ApprovalsDue(ctx, now, stale, 0); err == nil {
		t.Fatal("zero limit accepted")
	}
	if _, err := s.ApprovalsDue(ctx, now, 0, 10); err == nil {
		t.Fatal("zero staleClaim accepted")
	}
}

func testIdempotency(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	rec := &store.IdempotencyRecord{Caller: Caller, Key: "order-42", IntentID: "int_1", TaskID: "tsk_1", Tool: "http.fetch",
		ArgsSHA256: "abcd", CreatedAt: now, Executor: "host-a/run_1"}
	commit(t, s, &store.Batch{Idempotency: []*store.IdempotencyRecord{rec}})
	got, err := s.Idempotency(ctx, Caller, "order-42")
	if err != nil {
		t.Fatal(err)
	}
	if *got != (store.IdempotencyRecord{Caller: Caller, Key: "order-42", IntentID: "int_1", TaskID: "tsk_1", Tool: "http.fetch",
		ArgsSHA256: "abcd", CreatedAt: got.CreatedAt, Executor: "host-a/run_1"}) || !got.CreatedAt.Equal(now) {
		t.Fatalf("read back %+v, wrote %+v", got, rec)
	}
	// The same key of the same caller is taken, and the batch commits
	// nothing; another caller's key of the same name is its own.
	b := IntentBatch("tsk_1")
	b.CallCounts = nil
	b.Idempotency = []*store.IdempotencyRecord{{Caller: Caller, Key: "order-42", IntentID: b.Intents[0].ID}}
	err = s.Commit(ctx, []*store.Batch{b})
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "order-42") || !strings.Contains(err.Error(), "int_1") {
		t.Fatalf("taken key: %v, want ErrConflict naming the key and its intent", err)
	}
	if intentStored(t, s, b.Intents[0].ID) || b.Events[0].Seq != 0 {
		t.Fatal("the batch with a taken key was committed")
	}
	if got, _ := s.Idempotency(ctx, Caller, "order-42"); got == nil || got.IntentID != "int_1" {
		t.Fatalf("the taken key was rebound: %+v", got)
	}
	commit(t, s, &store.Batch{Idempotency: []*store.IdempotencyRecord{{Caller: "spiffe://example.org/other", Key: "order-42", IntentID: "int_2"}}})
	if got, err := s.Idempotency(ctx, "spiffe://example.org/other", "order-42"); err != nil || got.IntentID != "int_2" || !got.CreatedAt.IsZero() {
		t.Fatalf("other caller: %+v %v", got, err)
	}
	// Two records with one key in one batch: the second conflicts.
	err = s.Commit(ctx, []*store.Batch{{Idempotency: []*store.IdempotencyRecord{
		{Caller: Caller, Key: "k2", IntentID: "int_3"}, {Caller: Caller, Key: "k2", IntentID: "int_4"}}}})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate key in one batch: %v", err)
	}
	for _, k := range []string{"k2", "nope"} {
		if _, err := s.Idempotency(ctx, Caller, k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("key %s: %v, want ErrNotFound", k, err)
		}
	}
}

// testPurgeIdempotency: records (outcome markers too) older than the
// cutoff go, oldest first and at most limit per call; newer ones, ones
// created exactly at the cutoff and ones without a creation time stay; a
// purged key can be taken again.
func testPurgeIdempotency(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := time.Now().UTC()
	rec := func(key, intent string, at time.Time) *store.IdempotencyRecord {
		return &store.IdempotencyRecord{Caller: Caller, Key: key, IntentID: intent, Tool: "http.fetch", ArgsSHA256: "abcd", CreatedAt: at}
	}
	recs := []*store.IdempotencyRecord{
		rec("k-3h", "int_1", base.Add(-3*time.Hour)),
		rec("outcome int_1", "int_1", base.Add(-150*time.Minute)), // the executor's outcome marker
		rec("k-2h", "int_2", base.Add(-2*time.Hour)),
		rec("k-1h", "int_3", base.Add(-time.Hour)),
		rec("k-now", "int_4", base),
		rec("k-undated", "int_5", time.Time{}),
	}
	commit(t, s, &store.Batch{Idempotency: recs})
	// Another caller's old record is purged alongside.
	commit(t, s, &store.Batch{Idempotency: []*store.IdempotencyRecord{{Caller: "spiffe://example.org/other", Key: "k-3h",
		IntentID: "int_6", CreatedAt: base.Add(-100 * time.Minute)}}})
	exists := func(caller, key string) bool {
		t.Helper()
		_, err := s.Idempotency(ctx, caller, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, limit := range []int{0, -1} {
		if n, err := s.PurgeIdempotency(ctx, base, limit); err == nil || n != 0 || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("limit %d: purged %d, err %v: want an error naming the limit", limit, n, err)
		}
	}
	if !exists(Caller, "k-3h") {
		t.Fatal("a refused purge deleted a record")
	}
	cutoff := base.Add(-90 * time.Minute)
	// Oldest first: the 3h-old record and the 150m-old marker.
	n, err := s.PurgeIdempotency(ctx, cutoff, 2)
	if err != nil || n != 2 {
		t.Fatalf("purge with limit 2: %d, %v; want 2", n, err)
	}
	if exists(Caller, "k-3h") || exists(Caller, "outcome int_1") || !exists(Caller, "k-2h") || !exists("spiffe://example.org/other", "k-3h") {
		t.Fatal("the limited purge did not delete exactly the two oldest records")
	}
	// The rest before the cutoff: the 2h-old record and the other caller's.
	if n, err := s.PurgeIdempotency(ctx, cutoff, 100); err != nil || n != 2 {
		t.Fatalf("second purge: %d, %v; want 2", n, err)
	}
	if n, err := s.PurgeIdempotency(ctx, cutoff, 100); err != nil || n != 0 {
		t.Fatalf("third purge: %d, %v; want 0", n, err)
	}
	if exists(Caller, "k-2h") || exists("spiffe://example.org/other", "k-3h") {
		t.Fatal("a record older than the cutoff survived")
	}
	for _, k := range []string{"k-1h", "k-now", "k-undated"} {
		if !exists(Caller, k) {
			t.Fatalf("record %s, newer than the cutoff or undated, was purged", k)
		}
	}
	// The cutoff is exclusive.
	if n, err := s.PurgeIdempotency(ctx, base.Add(-time.Hour), 100); err != nil || n != 0 || !exists(Caller, "k-1h") {
		t.Fatalf("purge before exactly k-1h's creation: %d, %v; want 0, kept", n, err)
	}
	// A purged key is free again: a new intent may take it.
	commit(t, s, &store.Batch{Idempotency: []*store.IdempotencyRecord{rec("k-3h", "int_7", base)}})
	if got, err := s.Idempotency(ctx, Caller, "k-3h"); err != nil || got.IntentID != "int_7" {
		t.Fatalf("re-taken key: %+v, %v; want intent int_7", got, err)
	}
	// A limit above MaxPage is clamped, not refused; undated records stay.
	if n, err := s.PurgeIdempotency(ctx, base.Add(time.Second), store.MaxPage+1); err != nil || n != 3 {
		t.Fatalf("purge of everything dated: %d, %v; want 3", n, err)
	}
	if !exists(Caller, "k-undated") || exists(Caller, "k-now") || exists(Caller, "k-1h") || exists(Caller, "k-3h") {
		t.Fatal("the purge of everything dated did not keep exactly the undated record")
	}
	// Many records, purged in pages of the limit.
	var many []*store.IdempotencyRecord
	for i := range 25 {
		many = append(many, rec(fmt.Sprintf("bulk-%02d", i), fmt.Sprintf("int_b%02d", i), base.Add(-time.Duration(25-i)*time.Minute)))
	}
	commit(t, s, &store.Batch{Idempotency: many})
	var pages []int
	for range 5 {
		n, err := s.PurgeIdempotency(ctx, base, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, n)
		if n == 0 {
			break
		}
	}
	if !slices.Equal(pages, []int{10, 10, 5, 0}) {
		t.Fatalf("purged pages %v, want [10 10 5 0]", pages)
	}
	if exists(Caller, "bulk-24") {
		t.Fatal("a bulk record survived")
	}
}
