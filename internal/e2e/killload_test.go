package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/store/storetest"
)

// Shape of the load: conns connections, each used by perConn goroutines
// that submit one intent each, all at once.
const (
	loadConns   = 50
	loadPerConn = 20
	loadIntents = loadConns * loadPerConn
	// killAfter is how many outcomes reach clients before the executor is
	// killed.
	killAfter = loadIntents / 4
)

// restartableDaemon is `airlock serve` in a child process that can be
// killed and started again on the same data directory and socket.
type restartableDaemon struct {
	args   []string
	socket string
	data   string
	mu     sync.Mutex
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	done   chan error
}

func newRestartableDaemon(t *testing.T, extra ...string) *restartableDaemon {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "al")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	d := &restartableDaemon{socket: filepath.Join(sockDir, "s"), data: t.TempDir()}
	d.args = append([]string{"serve", "--socket", d.socket, "--data", d.data,
		"--manifests", testenv.BundledManifests(t), "--policies", filepath.Join(testenv.Root(t), "manifests", "policies"),
		"--log-format", "json", "--cache-dir", testenv.CacheDir()}, extra...)
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.cmd != nil {
			_ = d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
	})
	d.start(t)
	return d
}

// start runs the daemon and waits until it serves.
func (d *restartableDaemon) start(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	d.stderr = &testenv.SyncBuffer{}
	d.cmd = exec.Command(airlockBin, d.args...)
	d.cmd.Stderr = d.stderr
	d.done = make(chan error, 1)
	if err := d.cmd.Start(); err != nil {
		d.mu.Unlock()
		t.Fatal(err)
	}
	cmd, done, stderr := d.cmd, d.done, d.stderr
	go func() { done <- cmd.Wait() }()
	d.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(stderr.String(), "airlock is serving") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("airlock serve exited early: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("airlock serve did not start:\n%s", stderr.String())
		}
	}
}

// stop sends sig and waits for the process to exit.
func (d *restartableDaemon) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		t.Fatalf("airlock serve did not exit on %v", sig)
	}
	d.cmd = nil
}

// received is an outcome that reached a client.
type received struct {
	intent, event, status, code string
}

// auditedEvent is what the check reads of an exported audit event.
type auditedEvent struct {
	Type     string `json:"type"`
	IntentID string `json:"intent_id"`
	Status   string `json:"status"`
	Executor string `json:"executor"`
}

// checkAudited returns one problem per outcome that has no audit event
// with its id, or whose event names another intent or status.
func checkAudited(outs []received, events map[string]auditedEvent) []string {
	var problems []string
	for _, o := range outs {
		ev, ok := events[o.event]
		switch {
		case o.event == "":
			problems = append(problems, fmt.Sprintf("intent %s (%s) reached the client without an audit event id", o.intent, o.status))
		case !ok:
			problems = append(problems, fmt.Sprintf("intent %s (%s): its audit event %s is not in the store", o.intent, o.status, o.event))
		case ev.IntentID != o.intent || ev.Status != o.status:
			problems = append(problems, fmt.Sprintf("intent %s (%s): its audit event %s is of intent %s with status %s", o.intent, o.status, o.event, ev.IntentID, ev.Status))
		}
	}
	return problems
}

// Under 1,000 concurrent intents from 50 connections, `airlock serve` is
// killed (SIGKILL) once mid-run and started again on the same data and
// socket; clients retry what the kill cut off. At the end the audit chain
// verifies and every outcome that reached a client has its audit event,
// of its intent, with its status.
//
// Clients retry with plain resubmissions, or, in the idempotent variant,
// with the same idempotency key on every retry: an intent whose outcome was
// recorded before the kill is not run again, and one the kill cut off
// between its decision and its outcome is settled as interrupted by the
// restarted executor (the same --executor-id) at once; each reaches its
// client with its audit event.
func TestKillAndRestartUnderLoad(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { killLoad(t, "", false) })
	t.Run("postgres", func(t *testing.T) { killLoad(t, storetest.PostgresSchema(t), false) })
	t.Run("sqlite-idempotent", func(t *testing.T) { killLoad(t, "", true) })
}

func killLoad(t *testing.T, storeURL string, idempotent bool) {
	var extra []string
	storeArgs := []string{"--store", storeURL}
	if storeURL != "" {
		extra = storeArgs
	}
	if idempotent {
		// Stable across the restart, so that the restarted executor knows
		// the reservations of its killed run have no executor any more.
		extra = append(extra, "--executor-id", "killload-1")
	}
	d := newRestartableDaemon(t, extra...)
	if storeURL == "" {
		storeArgs = []string{"--data", d.data}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	clients := make([]*client.Client, loadConns)
	for i := range clients {
		c, err := client.Dial(ctx, d.socket, grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 5 * time.Second,
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	tasks := make([]string, loadConns)
	for i, c := range clients {
		task, err := c.BeginTask(ctx, client.TaskOptions{Purpose: "kill and restart under load"})
		if err != nil {
			t.Fatal(err)
		}
		tasks[i] = task.GetId()
	}

	var (
		mu       sync.Mutex
		outs     []received
		failures []string
		done     atomic.Int64
		retries  atomic.Int64
		killed   = make(chan struct{})
	)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range loadIntents {
		conn := i % loadConns
		c, task := clients[conn], tasks[conn]
		var tool, args string
		opts := []client.SubmitOption{client.WithTask(task)}
		switch i % 8 {
		case 0:
			tool, args = "workspace.write", fmt.Sprintf(`{"path":"notes/%d.txt","content":"intent %d"}`, i, i)
		case 1:
			tool, args = "workspace.write", `{"path":"secrets/key","content":"denied by policy"}` // denied
		case 2:
			tool, args = "workspace.list", `{}`
		case 3:
			tool, args = "no.such.tool", `{}` // invalid
		default:
			tool, args = "json.query", fmt.Sprintf(`{"filter":".n","input":{"n":%d}}`, i)
			opts = nil
		}
		if idempotent {
			// Retries carry the same key: an intent whose outcome was
			// recorded before the kill is not run again.
			opts = append(opts, client.WithIdempotencyKey(fmt.Sprintf("killload-%d", i)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			pause, retried := 10*time.Millisecond, false
			for {
				cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
				out, err := c.Submit(cctx, tool, args, opts...)
				ccancel()
				if err == nil {
					mu.Lock()
					outs = append(outs, received{intent: out.GetIntentId(), event: out.GetAuditEventId(), status: out.GetStatus().Name(), code: out.GetError().GetCode()})
					mu.Unlock()
					if done.Add(1) == killAfter {
						close(killed)
					}
					return
				}
				// The kill cuts calls off (Unavailable); retry until the
				// executor is back.
				if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
					if !retried {
						retried = true
						retries.Add(1)
					}
					time.Sleep(pause)
					pause = min(2*pause, 200*time.Millisecond)
					continue
				}
				mu.Lock()
				failures = append(failures, fmt.Sprintf("intent %d (%s): %v", i, tool, err))
				mu.Unlock()
				return
			}
		}()
	}
	close(start)
	select {
	case <-killed:
	case <-ctx.Done():
		t.Fatalf("only %d of %d outcomes arrived before the deadline", done.Load(), loadIntents)
	}
	d.stop(t, syscall.SIGKILL)
	atKill := done.Load()
	d.start(t)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d intents failed without an outcome, e.g.:\n%s", len(failures), strings.Join(failures[:min(5, len(failures))], "\n"))
	}
	if len(outs) != loadIntents {
		t.Fatalf("%d outcomes, want %d", len(outs), loadIntents)
	}
	// The kill happened mid-run: outcomes came before and after it, and it
	// cut calls off.
	if atKill >= loadIntents || retries.Load() == 0 {
		t.Fatalf("the kill did not interrupt the run: %d outcomes before it, %d intents retried", atKill, retries.Load())
	}
	t.Logf("%d outcomes (%d before the kill), %d intents retried after connection errors", len(outs), atKill, retries.Load())
	byStatus := map[string]int{}
	for _, o := range outs {
		byStatus[o.status]++
	}
	t.Logf("outcomes by status: %v", byStatus)
	for _, s := range []airlockv1.Status{airlockv1.Status_STATUS_OK, airlockv1.Status_STATUS_DENIED, airlockv1.Status_STATUS_INVALID} {
		if byStatus[s.Name()] == 0 {
			t.Fatalf("no %s outcome: %v", s.Name(), byStatus)
		}
	}

	d.stop(t, syscall.SIGTERM)
	r := runCLI(t, "", append([]string{"audit", "verify"}, storeArgs...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "audit chain ok") {
		t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
	export := filepath.Join(t.TempDir(), "audit.jsonl")
	r = runCLI(t, "", append([]string{"audit", "export", "--output", export}, storeArgs...)...)
	if r.code != 0 {
		t.Fatalf("audit export: %d %s", r.code, r.stderr)
	}
	events := readExport(t, export)
	if problems := checkAudited(outs, events); len(problems) > 0 {
		t.Fatalf("%d outcomes lack their audit event, e.g.:\n%s", len(problems), strings.Join(problems[:min(5, len(problems))], "\n"))
	}

	if idempotent {
		// At most once: no intent has two execution events.
		ran := map[string]int{}
		for id, ev := range events {
			if ev.Type == "execution" {
				ran[ev.IntentID]++
			}
			// serve --executor-id names the executor in its audit events.
			if ev.Executor != "killload-1" {
				t.Fatalf("audit event %s (%s) names executor %q, want killload-1", id, ev.Type, ev.Executor)
			}
		}
		for id, n := range ran {
			if n > 1 {
				t.Fatalf("intent %s has %d execution events: it ran more than once", id, n)
			}
		}
		interrupted := 0
		for _, o := range outs {
			if o.code == "interrupted" {
				interrupted++
			}
		}
		t.Logf("%d intents the kill cut off were settled as interrupted", interrupted)
	}

	// Negative controls: the check finds one missing event and one event
	// that names another status.
	victim := outs[len(outs)/2]
	missing := make(map[string]auditedEvent, len(events))
	for id, ev := range events {
		if id != victim.event {
			missing[id] = ev
		}
	}
	if p := checkAudited(outs, missing); len(p) != 1 || !strings.Contains(p[0], victim.event) {
		t.Fatalf("with event %s removed the check reports %q", victim.event, p)
	}
	altered := events[victim.event]
	altered.Status = "STATUS_SOMETHING_ELSE"
	missing[victim.event] = altered
	if p := checkAudited(outs, missing); len(p) != 1 || !strings.Contains(p[0], "STATUS_SOMETHING_ELSE") {
		t.Fatalf("with event %s altered the check reports %q", victim.event, p)
	}
}

// readExport reads an `airlock audit export` file into events by id.
func readExport(t *testing.T, path string) map[string]auditedEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	events := map[string]auditedEvent{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			ID string `json:"id"`
			auditedEvent
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		events[ev.ID] = ev.auditedEvent
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}
