package executor

import (
	"context"
	"fmt"
	"maps"
	"strings"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/redact"
	"github.com/airlock-dev/airlock/sandbox"
)

// inject leases the tool's credentials for this call and injects them as
// its manifest says: http (the host attaches the value to requests for one
// host; the tool never sees it) or env (visible to the tool, never to the
// planner). Every value is registered with the call's redactor first. A
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
		}
	}
	sc.Env = env
	if len(injs) > 0 {
		b, err := t.egress.With(injs)
		if err != nil {
			return outcomeError("credential_unavailable", fmt.Sprintf("tool %s did not run: %v", t.m.Metadata.Name, err), "")
		}
		sc.Egress = redactingEgress{inner: b, red: c.red}
	}
	return nil
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

// underTask derives a call context that is canceled when the task ends.
func (e *Executor) underTask(ctx context.Context, taskID string) (context.Context, context.CancelFunc) {
	e.mu.Lock()
	sc, ok := e.taskCtx[taskID]
	if !ok {
		tctx, cancel := context.WithCancel(context.Background())
		sc = taskScope{ctx: tctx, cancel: cancel}
		e.taskCtx[taskID] = sc
	}
	e.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(sc.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// cancelTask cancels the calls in flight of a task that ended.
func (e *Executor) cancelTask(taskID string) {
	e.mu.Lock()
	sc, ok := e.taskCtx[taskID]
	delete(e.taskCtx, taskID)
	e.mu.Unlock()
	if ok {
		sc.cancel()
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
