package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// devExecutor starts an executor with the bundled tools under the shipped
// development policy.
func devExecutor(t *testing.T) *testenv.Executor {
	t.Helper()
	return testenv.Start(t, testenv.Options{
		Manifests: testenv.BundledManifests(t),
		Policies:  filepath.Join(testenv.Root(t), "manifests", "policies"),
	})
}

func submit(t *testing.T, x *testenv.Executor, tool, args string, opts ...client.SubmitOption) *airlockv1.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := x.Client.Submit(ctx, tool, args, opts...)
	if err != nil {
		t.Fatalf("submit %s: %v", tool, err)
	}
	return out
}

// wantStatus fails unless the outcome has the status and, when code is not
// empty, the error code.
func wantStatus(t *testing.T, out *airlockv1.Outcome, status airlockv1.Status, code string) {
	t.Helper()
	if out.GetStatus() != status || (code != "" && out.GetError().GetCode() != code) {
		t.Fatalf("outcome: got %v %q (%s), want %v %q", out.GetStatus(), out.GetError().GetCode(), out.GetError().GetMessage(), status, code)
	}
	if out.GetIntentId() == "" || out.GetAuditEventId() == "" {
		t.Fatalf("outcome lacks its ids: %v", out)
	}
}

func wantOK(t *testing.T, out *airlockv1.Outcome) map[string]any {
	t.Helper()
	wantStatus(t, out, airlockv1.Status_STATUS_OK, "")
	var v map[string]any
	if err := json.Unmarshal([]byte(out.GetOutput()), &v); err != nil {
		t.Fatalf("output is not a JSON object: %v: %q", err, out.GetOutput())
	}
	return v
}

// stillServes proves the executor still answers a good call.
func stillServes(t *testing.T, x *testenv.Executor) {
	t.Helper()
	v := wantOK(t, submit(t, x, "json.query", `{"filter":".a","input":{"a":7}}`))
	if got, _ := json.Marshal(v["results"]); string(got) != "[7]" {
		t.Fatalf("good call after a bad one returned %s", got)
	}
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

// outcome is the part of what `airlock call` and `airlock intent get`
// print that the tests read.
type outcome struct {
	IntentID   string `json:"intent_id"`
	Status     string `json:"status"`
	ApprovalID string `json:"approval_id"`
	Error      struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// parseOutcome reads the outcome a CLI run printed, failing the test when
// it printed none.
func parseOutcome(t *testing.T, r result) outcome {
	t.Helper()
	var o outcome
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
		t.Fatalf("not an outcome (%v): exit %d\n%s\n%s", err, r.code, r.stdout, r.stderr)
	}
	return o
}

// mtlsFlags are the `airlock serve` flags of an mTLS listener on a free
// loopback port, as the SVID exec, admitting the IDs that match allow.
func mtlsFlags(exec svidFiles, allow string) []string {
	return append([]string{"--listen", "127.0.0.1:0", "--allow-id-pattern", allow}, exec.flags()...)
}

// mtlsClient dials addr over mTLS as the SVID s.
func mtlsClient(t *testing.T, addr string, s svidFiles) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := identity.OpenSource(ctx, s.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	c, err := client.DialMTLS(context.Background(), addr, client.MTLSOptions{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// socketClient dials the daemon's unix socket as this process's uid.
func socketClient(t *testing.T, d *daemon) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, d.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// submitWaiting submits args to workspace.write in task, waiting up to a
// minute for an approval, and delivers the outcome on the channel.
func submitWaiting(t *testing.T, ctx context.Context, planner *client.Client, task, args string) <-chan *airlockv1.Outcome {
	done := make(chan *airlockv1.Outcome, 1)
	go func() {
		out, err := planner.Submit(ctx, "workspace.write", args, client.WithTask(task), client.WithApprovalWait(time.Minute))
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	return done
}

// approveFirstPending watches task's approvals through op and approves the
// first pending one with reason, failing the test when it sees none.
func approveFirstPending(t *testing.T, ctx context.Context, op *client.Client, task, reason string) *airlockv1.Approval {
	t.Helper()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var approved *airlockv1.Approval
	err := op.WatchApprovals(wctx, client.ApprovalFilter{TaskID: task}, func(a *airlockv1.Approval) error {
		if a.GetState() == airlockv1.ApprovalState_APPROVAL_STATE_PENDING {
			var err error
			if approved, err = op.Approve(ctx, a.GetId(), reason); err != nil {
				return err
			}
			stop()
		}
		return nil
	})
	if err != nil || approved == nil {
		t.Fatalf("approving the pending approval of task %s: approved %v: %v", task, approved, err)
	}
	return approved
}

// countExecutions counts the execution events of intent in JSON lines of
// audit events (`airlock audit tail` or `export`).
func countExecutions(t *testing.T, jsonl, intent string) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		var ev struct {
			Type     string `json:"type"`
			IntentID string `json:"intent_id"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if ev.Type == "execution" && ev.IntentID == intent {
			n++
		}
	}
	return n
}

// secretForms returns the forms in which a tool could smuggle secret out:
// raw, upper- and lower-case hex, URL-escaped, and base64 (standard and URL
// alphabets, padded or not) at each of the three alignments the secret can
// have inside a longer encoded string.
func secretForms(secret string) map[string]string {
	forms := map[string]string{
		"raw":         secret,
		"hex":         hex.EncodeToString([]byte(secret)),
		"HEX":         strings.ToUpper(hex.EncodeToString([]byte(secret))),
		"query":       url.QueryEscape(secret),
		"path":        url.PathEscape(secret),
		"json-escape": strings.Trim(mustJSON(secret), `"`),
	}
	for k := 0; k < 3; k++ {
		b := append(make([]byte, k), secret...)
		start := (k + 2) / 3 * 4
		end := len(b) / 3 * 4
		for name, enc := range map[string]*base64.Encoding{"std": base64.StdEncoding, "url": base64.URLEncoding} {
			forms[fmt.Sprintf("base64-%s-%d", name, k)] = enc.EncodeToString(b)[start:end]
		}
	}
	return forms
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// findSecret reports every form of secret that hay contains.
func findSecret(hay, secret string) []string {
	var found []string
	for name, form := range secretForms(secret) {
		if strings.Contains(hay, form) {
			found = append(found, name)
		}
	}
	sort.Strings(found)
	return found
}

// noSecretAtRest stops x and fails the test if the audit log, the store
// file, its WAL or the logs hold any form (secretForms) of a secret. It
// returns the audit log, one event body a line, and the logs.
func noSecretAtRest(t *testing.T, x *testenv.Executor, secrets ...string) (audit, logs string) {
	t.Helper()
	logs = x.Log.String()
	if err := x.Stop(); err != nil {
		t.Fatal(err)
	}
	// Read the files as the executor left them, before opening the store
	// again checkpoints the WAL into the file.
	path := filepath.Join(x.Data, "airlock.db")
	db, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wal, err := os.ReadFile(path + "-wal")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.AuditRecords(ctx, 0, 100000)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, r := range recs {
		all.Write(r.Body)
		all.WriteByte('\n')
	}
	audit = all.String()
	for _, s := range secrets {
		for name, hay := range map[string]string{"audit log": audit, "logs": logs, "store file": string(db), "store wal": string(wal)} {
			if f := findSecret(hay, s); len(f) > 0 {
				t.Errorf("the %s holds the credential %s as %v", name, s[:6]+"...", f)
			}
		}
	}
	return audit, logs
}
