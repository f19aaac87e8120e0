package executor

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/redact"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/sandbox"
)

// inject leases the tool's credentials for this call and injects them as
// its manifest says: http (the host attaches the value to requests for one
// host; the tool never sees it), env (visible to the tool, never to the
// planner) or file (a read-only file of a per-call host directory mounted
// at sandbox.CredentialsGuestPath; removed by c.removeFiles when the call
// ends). Every value is registered with the call's redactor first. A
// non-nil result is the failure the call ends with: nothing runs without
// the credentials it declares.
func (c *call) inject(ctx context.Context, sc *sandbox.Call) *airlockv1.Error {
	t := c.tool
	issued, err := c.e.leaser.IssueCall(ctx, credentials.CallRequest{
		TaskID: c.task.ID, IntentID: c.out.IntentId, Tool: t.m.Metadata.Name, ToolVersion: t.m.Metadata.Version,
		Caller: c.caller.SpiffeID, NotAfter: c.task.ExpiresAt, Credentials: t.m.Spec.Capabilities.Credentials,
	})
	if err != nil {
		return outcomeError("credential_unavailable", fmt.Sprintf("tool %s did not run: its credentials could not be issued: %v", t.m.Metadata.Name, err), "")
	}
	c.red = redact.New()
	var injs []egress.Injection
	env := maps.Clone(sc.Env)
	for _, is := range issued {
		if err := c.red.Add(is.Name, []byte(is.Value)); err != nil {
			return outcomeError("credential_unavailable", fmt.Sprintf("tool %s did not run: credential %s cannot be redacted: %v", t.m.Metadata.Name, is.Name, err), "")
		}
		switch {
		case is.Inject.HTTP != nil:
			h := is.Inject.HTTP
			injs = append(injs, egress.Injection{CredentialName: is.Name, Host: h.Host, Header: h.Header,
				Value: strings.ReplaceAll(h.Format, "{{token}}", is.Value)})
		case is.Inject.Env != nil:
			if env == nil {
				env = map[string]string{}
			}
			env[is.Inject.Env.Name] = is.Value
		case is.Inject.File != nil:
			if err := c.writeFile(is.Inject.File.Path, is.Value); err != nil {
				return outcomeError("credential_unavailable", fmt.Sprintf("tool %s did not run: credential %s could not be written for the tool: %v", t.m.Metadata.Name, is.Name, err), "")
			}
		}
	}
	sc.Env = env
	if c.credDir != "" {
		sc.Mounts = append(sc.Mounts, sandbox.Mount{HostDir: c.credDir, GuestPath: sandbox.CredentialsGuestPath})
	}
	if len(injs) > 0 {
		b, err := t.egress.With(injs)
		if err != nil {
			return outcomeError("credential_unavailable", fmt.Sprintf("tool %s did not run: %v", t.m.Metadata.Name, err), "")
		}
		sc.Egress = redactingEgress{inner: b, red: c.red}
	}
	return nil
}

// credFileRe is a file-injected credential's name: one path component,
// not starting with a dot.
var credFileRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// checkCredFile says what is wrong with a file injection's path ("" if
// nothing); seen holds the paths of the tool's earlier file injections.
func checkCredFile(name string, seen map[string]bool) string {
	if !credFileRe.MatchString(name) {
		return fmt.Sprintf("file.path %q must be a plain file name (letters, digits, ., _ and -, not starting with a dot, at most 128): the guest reads %s/NAME", name, sandbox.CredentialsGuestPath)
	}
	if seen[name] {
		return fmt.Sprintf("file.path %q is used by another credential of the tool: give each its own name", name)
	}
	seen[name] = true
	return ""
}

// writeFile writes one file-injected credential into the call's private
// host directory (created 0700 on first use; the file is 0400).
func (c *call) writeFile(name, value string) error {
	if !credFileRe.MatchString(name) {
		return fmt.Errorf("file name %q is not allowed", name)
	}
	if c.credDir == "" {
		dir, err := os.MkdirTemp("", "airlock-cred-")
		if err != nil {
			return fmt.Errorf("creating the call's credentials directory: %w", err)
		}
		c.credDir = dir
	}
	f, err := os.OpenFile(filepath.Join(c.credDir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	_, werr := f.WriteString(value)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("writing %s: %w", name, werr)
	}
	return nil
}

// removeFiles deletes the call's file-injected credentials, if any. It is
// called when the call ends, whatever the outcome.
func (c *call) removeFiles() {
	if c.credDir == "" {
		return
	}
	if err := os.RemoveAll(c.credDir); err != nil {
		c.e.log.Error().Err(err).Str("intent", c.out.IntentId).Str("dir", c.credDir).Msg("removing a call's credential files failed: remove the directory by hand")
		return
	}
	c.credDir = ""
}

// redactingEgress hides the call's credentials in what a server sends
// back, before it enters guest memory: a server that echoes the token it
// was given (in a body, a header, an error page) does not hand it to the
// tool.
type redactingEgress struct {
	inner sandbox.Egress
	red   *redact.Redactor
}

var _ sandbox.Egress = redactingEgress{}

func (r redactingEgress) Do(ctx context.Context, req egress.Request) (*egress.Response, error) {
	resp, err := r.inner.Do(ctx, req)
	if resp != nil {
		resp.Body = r.red.Redact(resp.Body)
		for k, vs := range resp.Headers {
			for i, v := range vs {
				vs[i] = r.red.RedactString(v)
			}
			resp.Headers[k] = vs
		}
	}
	return resp, err
}

// underTask admits a call into its task: it derives a context that is
// canceled when the task ends, and counts the call so that ending the task
// waits for it before removing the workspace. It refuses (ok false) a task
// that has ended: the check and the registration happen under the lock
// endTask claims the end with.
func (e *Executor) underTask(ctx context.Context, t *store.Task) (context.Context, context.CancelFunc, bool) {
	e.mu.Lock()
	if !t.EndedAt.IsZero() {
		e.mu.Unlock()
		return nil, nil, false
	}
	sc, ok := e.taskCtx[t.ID]
	if !ok {
		tctx, cancel := context.WithCancel(context.Background())
		sc = &taskScope{ctx: tctx, cancel: cancel}
		e.taskCtx[t.ID] = sc
	}
	sc.calls.Add(1)
	e.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(sc.ctx, cancel)
	return ctx, func() { stop(); cancel(); sc.calls.Done() }, true
}

// drainWait bounds how long ending a task waits for its canceled calls.
const drainWait = 30 * time.Second

// cancelTask cancels the calls in flight of a task that ended and waits
// (bounded) until they are gone.
func (e *Executor) cancelTask(taskID string) {
	// Then the backend's per-task state goes (plugin processes that mount
	// the task's workspace).
	if te, ok := e.cfg.Backend.(sandbox.TaskEnder); ok {
		defer te.EndTask(taskID)
	}
	e.mu.Lock()
	sc, ok := e.taskCtx[taskID]
	delete(e.taskCtx, taskID)
	e.mu.Unlock()
	if !ok {
		return
	}
	sc.cancel()
	done := make(chan struct{})
	go func() { sc.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainWait):
		e.log.Warn().Str("task", taskID).Msg("calls of an ended task still running after 30s")
	}
}

// taskEnded reports whether the call's task has ended.
func (c *call) taskEnded() bool {
	if c.task == nil {
		return false
	}
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	return !c.task.EndedAt.IsZero()
}
