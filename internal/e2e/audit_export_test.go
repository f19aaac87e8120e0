package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// denyHTML denies html.to_text and allows everything else, so that the log
// holds both effects.
const denyHTML = `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: audit-export}
spec:
  match: {tools: ["*"]}
  rules:
    - name: no-html
      effect: deny
      when: 'tool.name == "html.to_text"'
      message: '"no html today"'
    - name: allow-rest
      effect: allow
      when: 'true'
`

// auditBody is what the filters look at in an event body.
type auditBody struct {
	Seq      int64  `json:"seq"`
	Caller   string `json:"caller"`
	TaskID   string `json:"task_id"`
	IntentID string `json:"intent_id"`
	Tool     *struct {
		Name string `json:"name"`
	} `json:"tool"`
	Decision *struct {
		Effect string `json:"effect"`
	} `json:"decision"`
}

func (b auditBody) matches(f client.AuditFilter) bool {
	tool, effect := "", ""
	if b.Tool != nil {
		tool = b.Tool.Name
	}
	if b.Decision != nil {
		effect = b.Decision.Effect
	}
	return (f.TaskID == "" || b.TaskID == f.TaskID) && (f.Caller == "" || b.Caller == f.Caller) &&
		(f.Tool == "" || tool == f.Tool) && (f.Effect == "" || effect == f.Effect)
}

func streamAll(t *testing.T, c *client.Client, f client.AuditFilter) []*airlockv1.AuditEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var evs []*airlockv1.AuditEvent
	if err := c.StreamAudit(ctx, f, func(ev *airlockv1.AuditEvent) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		t.Fatalf("stream audit %+v: %v", f, err)
	}
	return evs
}

func seqs(evs []*airlockv1.AuditEvent) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.GetSeq())
	}
	return out
}

// StreamAudit and `airlock audit export` select exactly the events that
// match each filter; follow delivers an event committed after the stream
// began; an export verifies offline and an edited export does not.
func TestAuditStreamAndExport(t *testing.T) {
	x := testenv.Start(t, testenv.Options{Manifests: testenv.BundledManifests(t), Policies: testenv.Policy(t, "p", denyHTML)})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "audit export"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "other"})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, submit(t, x, "json.query", `{"filter":".a","input":{"a":1}}`, client.WithTask(task.GetId())))
	wantOK(t, submit(t, x, "text.wc", `{"text":"a b c"}`, client.WithTask(task.GetId())))
	wantOK(t, submit(t, x, "json.query", `{"filter":".","input":2}`, client.WithTask(other.GetId())))
	wantStatus(t, submit(t, x, "html.to_text", `{"html":"<p>x</p>"}`, client.WithTask(task.GetId())), airlockv1.Status_STATUS_DENIED, "")
	wantOK(t, submit(t, x, "json.query", `{"filter":".","input":3}`))

	all := streamAll(t, x.Client, client.AuditFilter{})
	if len(all) < 7 {
		t.Fatalf("the log holds %d events", len(all))
	}
	bodies := map[int64]auditBody{}
	var caller string
	for i, ev := range all {
		var b auditBody
		if err := json.Unmarshal([]byte(ev.GetJson()), &b); err != nil {
			t.Fatalf("event %d: %v: %s", ev.GetSeq(), err, ev.GetJson())
		}
		if b.Seq != ev.GetSeq() || ev.GetSeq() != int64(i+1) || len(ev.GetHash()) != 64 {
			t.Fatalf("event %d: body seq %d, hash %q", ev.GetSeq(), b.Seq, ev.GetHash())
		}
		bodies[ev.GetSeq()] = b
		if b.Caller != "" {
			caller = b.Caller
		}
	}
	filters := []client.AuditFilter{
		{TaskID: task.GetId()},
		{TaskID: other.GetId()},
		{Tool: "json.query"},
		{Tool: "text.wc"},
		{Effect: "deny"},
		{Effect: "allow"},
		{Effect: "allow", TaskID: task.GetId(), Tool: "json.query"},
		{Caller: caller, Tool: "html.to_text"},
		{Caller: "spiffe://airlock.local/uid/4242424"},
		{Tool: "json.query", AfterSeq: 4},
	}
	for _, f := range filters {
		var want []int64
		for _, ev := range all {
			if ev.GetSeq() > f.AfterSeq && bodies[ev.GetSeq()].matches(f) {
				want = append(want, ev.GetSeq())
			}
		}
		if f.Caller != "spiffe://airlock.local/uid/4242424" && (len(want) == 0 || len(want) == len(all)) {
			t.Fatalf("filter %+v: %d of %d events match: the test data does not exercise it", f, len(want), len(all))
		}
		if got := seqs(streamAll(t, x.Client, f)); !slices.Equal(got, want) {
			t.Errorf("StreamAudit %+v: got seqs %v, want %v", f, got, want)
		}
		args := []string{"audit", "export", "--data", x.Data, "--after", fmt.Sprint(f.AfterSeq)}
		for flag, v := range map[string]string{"--task": f.TaskID, "--caller": f.Caller, "--tool": f.Tool, "--effect": f.Effect} {
			if v != "" {
				args = append(args, flag, v)
			}
		}
		r := runCLI(t, "", args...)
		if r.code != 0 {
			t.Fatalf("%v: %d %s", args, r.code, r.stderr)
		}
		var got []int64
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if l == "" {
				continue
			}
			var b auditBody
			if err := json.Unmarshal([]byte(l), &b); err != nil {
				t.Fatalf("export line %q: %v", l, err)
			}
			got = append(got, b.Seq)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v: got seqs %v, want %v", args, got, want)
		}
	}

	t.Run("bad filters are refused", func(t *testing.T) {
		err := x.Client.StreamAudit(ctx, client.AuditFilter{Effect: "maybe"}, func(*airlockv1.AuditEvent) error { return nil })
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "effect") {
			t.Fatalf("effect maybe: %v", err)
		}
		if r := runCLI(t, "", "audit", "export", "--data", x.Data, "--effect", "maybe"); r.code != 2 || !strings.Contains(r.stderr, "--effect") {
			t.Fatalf("export --effect maybe: %d %s", r.code, r.stderr)
		}
	})

	t.Run("follow delivers an event committed after the stream began", func(t *testing.T) {
		fctx, fcancel := context.WithTimeout(ctx, time.Minute)
		defer fcancel()
		// Start just before the last text.wc event: receiving it proves the
		// stream is up and past its first read before the new event exists.
		var last int64
		for _, ev := range all {
			if b := bodies[ev.GetSeq()]; b.Tool != nil && b.Tool.Name == "text.wc" {
				last = ev.GetSeq()
			}
		}
		got := make(chan auditBody, 4)
		errc := make(chan error, 1)
		go func() {
			errc <- x.Client.StreamAudit(fctx, client.AuditFilter{AfterSeq: last - 1, Tool: "text.wc", Follow: true}, func(ev *airlockv1.AuditEvent) error {
				var b auditBody
				if err := json.Unmarshal([]byte(ev.GetJson()), &b); err != nil {
					return err
				}
				got <- b
				return nil
			})
		}()
		next := func() auditBody {
			t.Helper()
			select {
			case b := <-got:
				if b.Tool == nil || b.Tool.Name != "text.wc" {
					t.Fatalf("follow sent an event of another tool: %+v", b)
				}
				return b
			case err := <-errc:
				t.Fatalf("follow ended: %v", err)
			case <-fctx.Done():
				t.Fatal("follow sent nothing within a minute")
			}
			return auditBody{}
		}
		if b := next(); b.Seq != last {
			t.Fatalf("follow began with event %d, want %d", b.Seq, last)
		}
		// json.query events must not be delivered; the new text.wc one must.
		wantOK(t, submit(t, x, "json.query", `{"filter":".","input":4}`))
		out := submit(t, x, "text.wc", `{"text":"late"}`)
		wantOK(t, out)
		if b := next(); b.IntentID != out.GetIntentId() || b.Seq <= all[len(all)-1].GetSeq() {
			t.Fatalf("follow delivered %+v, want the new intent %s", b, out.GetIntentId())
		}
		fcancel()
		if err := <-errc; status.Code(err) != codes.Canceled {
			t.Fatalf("follow ended with %v after the client went away", err)
		}
	})

	t.Run("an export is private and never follows a link", func(t *testing.T) {
		dir := t.TempDir()
		wide := filepath.Join(dir, "wide.jsonl")
		if err := os.WriteFile(wide, []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := runCLI(t, "", "audit", "export", "--data", x.Data, "--output", wide); r.code != 0 {
			t.Fatalf("export over a 0644 file: %d %s", r.code, r.stderr)
		}
		if fi, err := os.Stat(wide); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("an export over a 0644 file: %v %v", err, fi)
		}
		victim := filepath.Join(dir, "victim")
		if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "planted.jsonl")
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
		if r := runCLI(t, "", "audit", "export", "--data", x.Data, "--output", link); r.code == 0 || !strings.Contains(r.stderr, "symbolic link") {
			t.Fatalf("export through a symbolic link: %d %s", r.code, r.stderr)
		}
		if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
			t.Fatalf("the link's target was written: %q", b)
		}
	})

	t.Run("an export verifies offline, an edited one does not", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "export.jsonl")
		if r := runCLI(t, "", "audit", "export", "--data", x.Data, "--output", file); r.code != 0 {
			t.Fatalf("export: %d %s", r.code, r.stderr)
		}
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("export file: %v %v", err, fi)
		}
		r := runCLI(t, "", "audit", "verify", "--file", file)
		if r.code != 0 || !strings.Contains(r.stdout, "audit chain ok") {
			t.Fatalf("verify --file: %d %s %s", r.code, r.stdout, r.stderr)
		}
		b, _ := os.ReadFile(file)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		// Each line is the stored body, byte for byte, plus its hash.
		for i, l := range lines {
			if i < len(all) && l != strings.TrimSuffix(all[i].GetJson(), "}")+`,"hash":"`+all[i].GetHash()+`"}` {
				t.Fatalf("line %d is not the stored body plus its hash:\n%s\n%s", i+1, l, all[i].GetJson())
			}
		}
		edited := strings.Replace(string(b), `"input":2`, `"input":3`, 1)
		if edited == string(b) {
			edited = strings.Replace(string(b), `"status":"ok"`, `"status":"denied"`, 1)
		}
		if edited == string(b) {
			t.Fatal("nothing to edit in the export")
		}
		if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := runCLI(t, "", "audit", "verify", "--file", file); r.code != 1 || !strings.Contains(r.stdout, "BROKEN") {
			t.Fatalf("verify --file of an edited export: %d %s %s", r.code, r.stdout, r.stderr)
		}
		dropped := strings.Join(append(append([]string{}, lines[:2]...), lines[3:]...), "\n")
		if err := os.WriteFile(file, []byte(dropped), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := runCLI(t, "", "audit", "verify", "--file", file); r.code != 1 || !strings.Contains(r.stdout, "event 3 is missing") {
			t.Fatalf("verify --file without line 3: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("the executor's own uid verifies the chain", func(t *testing.T) {
		resp, err := x.Client.VerifyAudit(ctx)
		if err != nil || !resp.GetOk() || resp.GetEvents() < int64(len(all)) || len(resp.GetHead()) != 64 {
			t.Fatalf("VerifyAudit: %v %v", resp, err)
		}
	})
}

// Only --auditors may read the audit log: the uid on the socket is refused
// when it is not one of them, and an mTLS identity that is one reads it.
func TestAuditReadersAreAuditorsOnly(t *testing.T) {
	ca := devCA(t, "airlock.local")
	exec := devIssue(t, ca, "spiffe://airlock.local/executor")
	auditor := devIssue(t, ca, "spiffe://airlock.local/ops/alice")
	agent := devIssue(t, ca, "spiffe://airlock.local/agent/a")
	d := startDaemon(t, append([]string{"--policies", testenv.Policy(t, "p", testenv.AllowAll),
		"--auditors", "spiffe://airlock.local/ops/*"}, mtlsFlags(exec, "spiffe://airlock.local/*/*")...)...)
	addr := listenAddr(t, d)
	if r := d.call(t, "call", "json.query", `{"filter":".","input":1}`); r.code != 0 {
		t.Fatalf("call: %d %s %s", r.code, r.stdout, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	local := socketClient(t, d)
	err := local.StreamAudit(ctx, client.AuditFilter{}, func(*airlockv1.AuditEvent) error { return nil })
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "--auditors") {
		t.Fatalf("the uid on the socket streamed the audit log: %v", err)
	}
	if _, err := local.VerifyAudit(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the uid on the socket verified the audit log: %v", err)
	}

	err = mtlsClient(t, addr, agent).StreamAudit(ctx, client.AuditFilter{}, func(*airlockv1.AuditEvent) error { return nil })
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("agent/a streamed the audit log: %v", err)
	}
	alice := mtlsClient(t, addr, auditor)
	n := 0
	if err := alice.StreamAudit(ctx, client.AuditFilter{Tool: "json.query"}, func(ev *airlockv1.AuditEvent) error {
		n++
		return nil
	}); err != nil || n == 0 {
		t.Fatalf("the auditor streamed %d events: %v", n, err)
	}
	if resp, err := alice.VerifyAudit(ctx); err != nil || !resp.GetOk() {
		t.Fatalf("the auditor's VerifyAudit: %v %v", resp, err)
	}
}
