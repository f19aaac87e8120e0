package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/server"
	"github.com/airlock-dev/airlock/runtime/store/storetest"
)

// writeLeaseKey writes a fresh shared lease key (64 hex digits, 0600).
func writeLeaseKey(t *testing.T, dir string) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "lease.key")
	writeFile(t, p, hex.EncodeToString(key)+"\n")
	return p
}

// slowAPI is the resource server behind api.example.com for two
// executors: /v1/resource answers when Hydra says the bearer token is
// active; /v1/slow reports its token and then holds the request until the
// caller goes away, as a slow API would.
type slowAPI struct {
	srv  *httptest.Server
	slow chan string // the token of each /v1/slow request
	tokenLog
}

func newSlowAPI(t *testing.T, h *testenv.Hydra) *slowAPI {
	a := &slowAPI{slow: make(chan string, 4)}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.record(tok)
		if r.URL.Path == "/v1/slow" {
			a.slow <- tok
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Minute):
			}
			return
		}
		if active, _, err := h.Introspect(tok); err != nil || !active {
			http.Error(w, "token refused", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "granted")
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// Two executors on one PostgreSQL, one credential source (a real ORY
// Hydra) and one shared --lease-key-file. A task begun and used on A is
// ended on B: A refuses its next call at once, A's call in flight is
// canceled, and the OAuth 2.0 tokens A's calls were given are no longer
// active at Hydra. `airlock audit verify` verifies what both wrote.
func TestTaskEndedOnOneExecutorStopsTheOther(t *testing.T) {
	url := storetest.PostgresSchema(t)
	h := testenv.StartHydra(t)
	api := newSlowAPI(t, h)

	dir := t.TempDir()
	credFile := hydraCredentials(t, h, dir, "repo:read")
	opts := server.Options{
		ManifestsDir: fetchManifest(t, dir, "hydra", "[repo:read]"), PoliciesDir: testenv.Policy(t, "allow", testenv.AllowAll),
		CredentialsFile: credFile, Egress: loopbackEgress(t, api.srv), Store: url, LeaseKeyFile: writeLeaseKey(t, dir),
	}
	a := startInProcess(t, opts)
	b := startInProcess(t, opts)

	task := a.beginTask(t)
	if status, body := a.fetch(t, task); status != http.StatusOK || body != "granted" {
		t.Fatalf("before the end the API answered %d %q", status, body)
	}
	first := api.lastToken(t)

	// A call of the task in flight on A: the API holds it.
	inflight := make(chan result, 1)
	go func() {
		inflight <- runCLI(t, "", "call", "--socket", a.socket, "--task", task, "api.fetch", `{"url":"https://api.example.com/v1/slow"}`)
	}()
	var slowTok string
	select {
	case slowTok = <-api.slow:
	case <-time.After(time.Minute):
		t.Fatal("the call on A did not reach the API within a minute")
	}

	b.endTask(t, task)

	// At once: A refuses the task's next call.
	r := a.cli(t, "call", "--task", task, "api.fetch", `{"url":"https://api.example.com/v1/resource"}`)
	if o := parseOutcome(t, r); o.Status != "invalid" || o.Error.Code != "task_ended" {
		t.Fatalf("a call on A right after the end on B: exit %d %s", r.code, r.stdout)
	}
	// The call in flight on A was canceled, not left to run to its timeout.
	select {
	case r = <-inflight:
	case <-time.After(time.Minute):
		t.Fatal("the call in flight on A was not canceled within a minute")
	}
	if o := parseOutcome(t, r); o.Status != "failed" || o.Error.Code != "canceled" || !strings.Contains(o.Error.Message, "ended while the call was running") {
		t.Fatalf("the call in flight on A: exit %d %s", r.code, r.stdout)
	}
	// Both tokens A's calls got are revoked at Hydra.
	for name, tok := range map[string]string{"first call": first, "call in flight": slowTok} {
		if tok == "" {
			t.Fatalf("%s: the API saw no token", name)
		}
		if active, _, err := h.Introspect(tok); err != nil || active {
			t.Fatalf("the token of A's %s is active=%v at Hydra after the end on B (%v)", name, active, err)
		}
	}

	r = runCLI(t, "", "audit", "verify", "--store", url)
	if r.code != 0 || !strings.Contains(r.stdout, "audit chain ok") {
		t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "audit", "tail", "--store", url, "-n", "100")
	if n := strings.Count(r.stdout, `"type":"task.end"`); n != 1 {
		t.Fatalf("%d task.end events, want 1:\n%s", n, r.stdout)
	}
	for _, l := range []string{a.log.String(), b.log.String()} {
		if strings.Contains(l, first) || strings.Contains(l, slowTok) {
			t.Fatal("a daemon's log holds a token")
		}
	}
}

// The shared lease key is strict, and a PostgreSQL store with credential
// sources refuses to start without one (each executor must be able to
// revoke the leases of the others).
func TestServeLeaseKeyFile(t *testing.T) {
	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials.yaml")
	writeFile(t, credFile, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: ci-jwt, type: jwt, issuer: airlock-e2e, audience: api.example.com, ttl: 10m}
`)
	root := testenv.Root(t)
	serve := func(extra ...string) result {
		return runCLI(t, "", append([]string{"serve", "--socket", filepath.Join(dir, "s"), "--data", filepath.Join(dir, "data"),
			"--manifests", testenv.BundledManifests(t), "--policies", filepath.Join(root, "manifests", "policies"),
			"--credentials", credFile, "--log-format", "json"}, extra...)...)
	}
	// No PostgreSQL is reached: the flags are checked before the store opens.
	r := serve("--store", "postgres://airlock@127.0.0.1:1/airlock")
	if r.code == 0 || !strings.Contains(r.stderr, "--lease-key-file") {
		t.Fatalf("postgres store with credentials and no lease key: %d %s", r.code, r.stderr)
	}
	short := filepath.Join(dir, "short.key")
	writeFile(t, short, strings.Repeat("ab", 16)+"\n")
	r = serve("--lease-key-file", short)
	if r.code == 0 || !strings.Contains(r.stderr, short) || !strings.Contains(r.stderr, "33 bytes") {
		t.Fatalf("a 16-byte key: %d %s", r.code, r.stderr)
	}
	open := filepath.Join(dir, "open.key")
	writeFile(t, open, strings.Repeat("ab", 32))
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	r = serve("--lease-key-file", open)
	if r.code == 0 || !strings.Contains(r.stderr, open) || !strings.Contains(r.stderr, "chmod 600") {
		t.Fatalf("a world-readable key: %d %s", r.code, r.stderr)
	}
}

// Two executors on one PostgreSQL: a planner's Submit waits for an
// approval on A; an operator approves it through B; the Submit on A
// returns the intent's final outcome, and the intent ran exactly once.
func TestApprovalThroughOneExecutorReleasesTheOther(t *testing.T) {
	url := storetest.PostgresSchema(t)
	ca := devCA(t, "airlock.local")
	execSVID := devIssue(t, ca, "spiffe://airlock.local/executor")
	ann := devIssue(t, ca, "spiffe://airlock.local/human/ann")
	args := append([]string{"--store", url, "--policies", testenv.Policy(t, "approvals", testenv.WritesNeedApproval),
		"--approvers", "spiffe://airlock.local/human/*"}, mtlsFlags(execSVID, "spiffe://airlock.local/human/*")...)
	a := startDaemon(t, args...)
	b := startDaemon(t, args...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	planner := socketClient(t, a)
	opB := mtlsClient(t, listenAddr(t, b), ann)

	task, err := planner.BeginTask(ctx, client.TaskOptions{Purpose: "approval across executors"})
	if err != nil {
		t.Fatal(err)
	}
	done := submitWaiting(t, ctx, planner, task.GetId(), `{"path":"x.txt","content":"X"}`)
	// B sees the approval A recorded, and approves it.
	approved := approveFirstPending(t, ctx, opB, task.GetId(), "approved on B")
	var out *airlockv1.Outcome
	select {
	case out = <-done:
	case <-ctx.Done():
		t.Fatal("the Submit waiting on A did not return after the approval on B")
	}
	if out.GetStatus() != airlockv1.Status_STATUS_OK || out.GetApprovalId() != approved.GetId() {
		t.Fatalf("the Submit waiting on A: %v", out)
	}
	// Exactly one execution of the intent, in the chain both wrote.
	r := runCLI(t, "", "audit", "export", "--store", url)
	if r.code != 0 {
		t.Fatalf("audit export: %d %s", r.code, r.stderr)
	}
	execs := countExecutions(t, r.stdout, out.GetIntentId())
	if execs != 1 {
		t.Fatalf("intent %s executed %d times, want once", out.GetIntentId(), execs)
	}
	if r := runCLI(t, "", "audit", "verify", "--store", url); r.code != 0 {
		t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
