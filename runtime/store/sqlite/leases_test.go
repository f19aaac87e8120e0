package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
)

func lease(id, task string, issued, expires time.Time) *store.Lease {
	return &store.Lease{ID: id, TaskID: task, Tool: "github.issue.create", Source: "github-app", Credential: "github",
		IssuedAt: issued, ExpiresAt: expires, Ref: []byte{1, 2, 3, id[len(id)-1]}}
}

func TestLeasesRoundTripAndRevoke(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s := open(t, path)
	now := time.Now().UTC().Truncate(time.Microsecond)
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
	// Reopen: the state is on disk.
	_ = s.Close()
	s = open(t, path)
	got, err = s.OpenLeases(ctx, "tsk_2")
	if err != nil || len(got) != 1 || got[0].ID != "lse_3" {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
}

func TestLeaseCommitErrorsRollBack(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "airlock.db"))
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

func TestLeasesDue(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "airlock.db"))
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
	var ids []string
	for _, l := range due {
		ids = append(ids, l.ID)
	}
	if strings.Join(ids, ",") != "lse_b,lse_c,lse_d,lse_e" {
		t.Fatalf("due = %v", ids)
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
