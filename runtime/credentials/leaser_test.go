package credentials_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

type env struct {
	dir    string
	st     *sqlite.Store
	reg    *credentials.Registry
	jwt    *credentials.JWT
	oauth  *fakeOAuth
	leaser *credentials.Leaser
}

func (e *env) set(f func(*fakeOAuth)) {
	e.oauth.mu.Lock()
	defer e.oauth.mu.Unlock()
	f(e.oauth)
}

func newEnv(t *testing.T, dir string, f *fakeOAuth) *env {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	j, err := credentials.NewJWT("ci-jwt", credentials.JWTOptions{Issuer: "airlock", Audience: "ci.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_TEST_STATIC", "static-dev-token-value")
	static, _ := credentials.NewStatic("dev", "", "AIRLOCK_TEST_STATIC")
	reg, err := credentials.NewRegistry(oauthSource(t, f, "repo:read", "repo:write"), j, static)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := credentials.LoadOrCreateSealer(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := credentials.NewLeaser(credentials.LeaserOptions{Registry: reg, Store: st, Sealer: sealer, Executor: "exec-1"})
	if err != nil {
		t.Fatal(err)
	}
	return &env{dir: dir, st: st, reg: reg, jwt: j, oauth: f, leaser: l}
}

func beginTask(t *testing.T, st store.Store, id string, exp time.Time) *store.Task {
	t.Helper()
	task := &store.Task{ID: id, Caller: "spiffe://airlock.local/agent/a", StartedAt: time.Now(), ExpiresAt: exp}
	if err := st.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{task}}}); err != nil {
		t.Fatal(err)
	}
	return task
}

var manifestCreds = []manifest.Credential{
	{Name: "github", Source: "gh", Scopes: []string{"repo:read", "admin"}, Inject: manifest.Inject{HTTP: &manifest.InjectHTTP{Host: "api.github.com", Header: "Authorization", Format: "Bearer {{token}}"}}},
	{Name: "ci", Source: "ci-jwt", Scopes: []string{"builds:write"}, Inject: manifest.Inject{Env: &manifest.InjectEnv{Name: "CI_TOKEN"}}},
	{Name: "dev", Source: "dev", Inject: manifest.Inject{File: &manifest.InjectFile{Path: "/secrets/dev"}}},
}

func callReq(task *store.Task) credentials.CallRequest {
	return credentials.CallRequest{TaskID: task.ID, IntentID: "int_1", Tool: "github.issue.create", ToolVersion: "1.0.0",
		Caller: task.Caller, NotAfter: task.ExpiresAt, Credentials: manifestCreds}
}

// allBytes returns the whole database file and its WAL.
func allBytes(t *testing.T, dir string) []byte {
	t.Helper()
	var out []byte
	for _, n := range []string{"airlock.db", "airlock.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestLeaserIssueAndRevokeTask(t *testing.T) {
	f := newFakeOAuth(t, "repo:read", "repo:write")
	e := newEnv(t, t.TempDir(), f)
	task := beginTask(t, e.st, "tsk_1", time.Now().Add(30*time.Minute))

	issued, err := e.leaser.IssueCall(ctx, callReq(task))
	if err != nil {
		t.Fatal(err)
	}
	if len(issued) != 3 {
		t.Fatalf("%d issued", len(issued))
	}
	gh, ci, dev := issued[0], issued[1], issued[2]
	if gh.Name != "github" || gh.Source != "gh" || gh.Inject.HTTP == nil || strings.Join(gh.Scopes, " ") != "repo:read" || !f.isActive(gh.Value) {
		t.Fatalf("github: %+v", gh)
	}
	if ci.Inject.Env == nil || !e.jwt.Introspect(ci.Value).Active || dev.Value != "static-dev-token-value" {
		t.Fatalf("ci %+v dev %+v", ci, dev)
	}
	for _, is := range issued {
		if is.ExpiresAt.After(task.ExpiresAt) {
			t.Fatalf("lease %s outlives its task", is.LeaseID)
		}
		if strings.Contains(is.String(), is.Value) {
			t.Fatal("Issued.String shows the value")
		}
	}
	open, err := e.st.OpenLeases(ctx, task.ID)
	if err != nil || len(open) != 3 {
		t.Fatalf("open leases %d %v", len(open), err)
	}

	n, err := e.leaser.RevokeTask(ctx, task.ID, "task ended")
	if err != nil || n != 3 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if f.isActive(gh.Value) {
		t.Fatal("oauth2 token still active at its source")
	}
	if e.jwt.Introspect(ci.Value).Active {
		t.Fatal("jwt still active")
	}
	if open, _ := e.st.OpenLeases(ctx, task.ID); len(open) != 0 {
		t.Fatalf("%d leases still open", len(open))
	}
	if n, err := e.leaser.RevokeTask(ctx, task.ID, "again"); n != 0 || err != nil {
		t.Fatalf("second revoke: %d %v", n, err)
	}

	// The audit log has the issue and revoke events with lease ids and
	// names, and no value anywhere; neither has the database file.
	recs, err := e.st.AuditTail(ctx, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit: %d %v", len(recs), err)
	}
	for i, want := range []string{credentials.EventIssue, credentials.EventRevoke} {
		body := string(recs[i].Body)
		if !strings.Contains(body, `"type":"`+want+`"`) {
			t.Fatalf("record %d: %s", i, body)
		}
		for _, is := range issued {
			if !strings.Contains(body, is.LeaseID) {
				t.Fatalf("record %d lacks lease %s: %s", i, is.LeaseID, body)
			}
		}
	}
	db := allBytes(t, e.dir)
	for _, is := range issued {
		if bytes.Contains(db, []byte(is.Value)) {
			t.Fatalf("the database holds the value of %s", is.Name)
		}
	}
}

func TestLeaserAllOrNothing(t *testing.T) {
	f := newFakeOAuth(t, "repo:read", "repo:write")
	e := newEnv(t, t.TempDir(), f)
	task := beginTask(t, e.st, "tsk_1", time.Now().Add(30*time.Minute))
	req := callReq(task)
	// The third credential's source is not configured: the two issued
	// before it are revoked, nothing is recorded.
	req.Credentials = append(append([]manifest.Credential{}, manifestCreds[:2]...), manifest.Credential{Name: "x", Source: "missing"})
	if _, err := e.leaser.IssueCall(ctx, req); err == nil || !strings.Contains(err.Error(), `"missing" is not configured`) {
		t.Fatalf("err = %v", err)
	}
	grants, revoked := f.snapshot()
	if len(grants) != 1 || len(revoked) != 1 || revoked[0] != grants[0].Token {
		t.Fatalf("grants %v revoked %v", grants, revoked)
	}
	if open, _ := e.st.OpenLeases(ctx, task.ID); len(open) != 0 {
		t.Fatalf("%d leases recorded", len(open))
	}
	// A commit failure (no such task is fine, but a closed store is not)
	// also revokes.
	_ = e.st.Close()
	if _, err := e.leaser.IssueCall(ctx, callReq(task)); err == nil {
		t.Fatal("issued with a closed store")
	}
	grants, revoked = f.snapshot()
	if len(grants) != 2 || len(revoked) != 2 || revoked[1] != grants[1].Token {
		t.Fatalf("after commit failure: grants %d revoked %d", len(grants), len(revoked))
	}
}

func TestLeaserRevokeDueAfterRestart(t *testing.T) {
	f := newFakeOAuth(t, "repo:read", "repo:write")
	dir := t.TempDir()
	e := newEnv(t, dir, f)
	ended := beginTask(t, e.st, "tsk_ended", time.Now().Add(30*time.Minute))
	live := beginTask(t, e.st, "tsk_live", time.Now().Add(30*time.Minute))
	only := func(t *store.Task) credentials.CallRequest {
		r := callReq(t)
		r.Credentials = manifestCreds[:1]
		return r
	}
	a, err := e.leaser.IssueCall(ctx, only(ended))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.leaser.IssueCall(ctx, only(live))
	if err != nil {
		t.Fatal(err)
	}
	// The task ends, then the executor stops before revoking.
	ended.EndedAt = time.Now()
	if err := e.st.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{ended}}}); err != nil {
		t.Fatal(err)
	}
	_ = e.st.Close()

	// Restart: new store handle, new sources, same data directory and key.
	e2 := newEnv(t, dir, f)
	n, err := e2.leaser.RevokeDue(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RevokeDue: %d %v", n, err)
	}
	if f.isActive(a[0].Value) {
		t.Fatal("the ended task's token is still active after restart")
	}
	if !f.isActive(b[0].Value) {
		t.Fatal("the live task's token was revoked")
	}
	if open, _ := e2.st.OpenLeases(ctx, live.ID); len(open) != 1 {
		t.Fatalf("live task has %d open leases", len(open))
	}
}

func TestLeaserRevokeFailureRetried(t *testing.T) {
	f := newFakeOAuth(t, "repo:read", "repo:write")
	e := newEnv(t, t.TempDir(), f)
	task := beginTask(t, e.st, "tsk_1", time.Now().Add(30*time.Minute))
	issued, err := e.leaser.IssueCall(ctx, callReq(task))
	if err != nil {
		t.Fatal(err)
	}
	e.set(func(f *fakeOAuth) { f.failRevoke = true })
	n, err := e.leaser.RevokeTask(ctx, task.ID, "task ended")
	if n != 2 || err == nil || !strings.Contains(err.Error(), "revocation endpoint answered 503") {
		t.Fatalf("revoke with a failing source: %d %v", n, err)
	}
	open, _ := e.st.OpenLeases(ctx, task.ID)
	if len(open) != 1 || open[0].ID != issued[0].LeaseID {
		t.Fatalf("open after partial failure: %+v", open)
	}
	recs, _ := e.st.AuditTail(ctx, 1)
	if body := string(recs[0].Body); !strings.Contains(body, `"failed"`) || !strings.Contains(body, `"status":"error"`) {
		t.Fatalf("revoke event: %s", body)
	}
	// The task ends; the next RevokeDue retries and succeeds.
	task.EndedAt = time.Now()
	_ = e.st.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{task}}})
	e.set(func(f *fakeOAuth) { f.failRevoke = false })
	if n, err := e.leaser.RevokeDue(ctx); n != 1 || err != nil {
		t.Fatalf("retry: %d %v", n, err)
	}
	if f.isActive(issued[0].Value) {
		t.Fatal("token still active")
	}
}

func TestSealedRefs(t *testing.T) {
	dir := t.TempDir()
	s, err := credentials.LoadOrCreateSealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, credentials.KeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	sealed, err := s.Seal("lse_1", []byte("at_token_value"))
	if err != nil || bytes.Contains(sealed, []byte("at_token_value")) {
		t.Fatalf("sealed %q %v", sealed, err)
	}
	s2, err := credentials.LoadOrCreateSealer(dir) // same key, reloaded
	if err != nil {
		t.Fatal(err)
	}
	if ref, err := s2.Open("lse_1", sealed); err != nil || string(ref) != "at_token_value" {
		t.Fatalf("open: %q %v", ref, err)
	}
	if _, err := s2.Open("lse_2", sealed); err == nil {
		t.Fatal("a sealed ref opened for another lease")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := s2.Open("lse_1", sealed); err == nil {
		t.Fatal("a tampered ref opened")
	}
	other, _ := credentials.LoadOrCreateSealer(t.TempDir())
	sealed[len(sealed)-1] ^= 1
	if _, err := other.Open("lse_1", sealed); err == nil {
		t.Fatal("opened with another key")
	}
	_ = os.Chmod(filepath.Join(dir, credentials.KeyFileName), 0o644)
	if _, err := credentials.LoadOrCreateSealer(dir); err == nil {
		t.Fatal("world-readable key accepted")
	}
}

// TestLeaseRowHoldsNoValue reads the leases table directly.
func TestLeaseRowHoldsNoValue(t *testing.T) {
	f := newFakeOAuth(t, "repo:read", "repo:write")
	dir := t.TempDir()
	e := newEnv(t, dir, f)
	task := beginTask(t, e.st, "tsk_1", time.Now().Add(30*time.Minute))
	issued, err := e.leaser.IssueCall(ctx, callReq(task))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "airlock.db")+"?_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), `SELECT id, task_id, tool, source, credential, ref FROM leases`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, taskID, tool, source, cred string
		var ref []byte
		if err := rows.Scan(&id, &taskID, &tool, &source, &cred, &ref); err != nil {
			t.Fatal(err)
		}
		n++
		for _, is := range issued {
			if bytes.Contains(ref, []byte(is.Value)) {
				t.Fatalf("lease %s ref holds a value", id)
			}
		}
		if taskID != "tsk_1" || tool != "github.issue.create" {
			t.Fatalf("row %s %s %s", id, taskID, tool)
		}
	}
	if n != 3 {
		t.Fatalf("%d rows", n)
	}
}

// A lease whose revocation keeps failing backs off: the other due leases
// are revoked, and the next pass neither retries it at once nor writes
// another audit event for it.
func TestLeaserRevokeDueBacksOffFailingLeases(t *testing.T) {
	f := newFakeOAuth(t, "repo:read", "repo:write")
	e := newEnv(t, t.TempDir(), f)
	var tasks []*store.Task
	for _, id := range []string{"tsk_1", "tsk_2"} {
		task := beginTask(t, e.st, id, time.Now().Add(30*time.Minute))
		if _, err := e.leaser.IssueCall(ctx, callReq(task)); err != nil {
			t.Fatal(err)
		}
		task.EndedAt = time.Now()
		tasks = append(tasks, task)
	}
	if err := e.st.Commit(ctx, []*store.Batch{{Tasks: tasks}}); err != nil {
		t.Fatal(err)
	}
	e.set(func(f *fakeOAuth) { f.failRevoke = true })
	n, err := e.leaser.RevokeDue(ctx)
	if n != 4 || err == nil {
		t.Fatalf("first pass: revoked %d, err %v; want the 4 leases whose source works", n, err)
	}
	before, _ := e.st.AuditRecords(ctx, 0, 10000)
	if n, err := e.leaser.RevokeDue(ctx); n != 0 || err != nil {
		t.Fatalf("second pass: %d %v; want nothing (the failing leases back off)", n, err)
	}
	after, _ := e.st.AuditRecords(ctx, 0, 10000)
	if len(after) != len(before) {
		t.Fatalf("a pass with only backing-off leases wrote %d audit events", len(after)-len(before))
	}
	for _, task := range tasks {
		if open, _ := e.st.OpenLeases(ctx, task.ID); len(open) != 1 {
			t.Fatalf("task %s: %d open leases, want the failing one", task.ID, len(open))
		}
	}
}
