// Package client is the Go client of the airlock planner API.
//
//	c, err := client.Dial(ctx, ".airlock/airlock.sock")
//	task, err := c.BeginTask(ctx, client.TaskOptions{Purpose: "summarise a page"})
//	out, err := c.Submit(ctx, "html.to_text", `{"html":"<p>hi</p>"}`, client.WithTask(task.Id))
//	fmt.Println(client.StatusName(out.Status), out.Output)
//
// Over the network, with an X.509-SVID (SPIFFE mTLS):
//
//	src, err := identity.OpenSource(ctx, identity.SVIDConfig{WorkloadAPI: os.Getenv("SPIFFE_ENDPOINT_SOCKET")})
//	c, err := client.DialMTLS(ctx, "127.0.0.1:8443", client.MTLSOptions{Source: src})
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// Client talks to one executor. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	Tasks   airlockv1.TaskServiceClient
	Intents airlockv1.IntentServiceClient
	Tools   airlockv1.ToolServiceClient
}

// Dial connects to an executor's unix socket. The executor identifies the
// caller from the connection (the process's uid), so the client sends no
// credential. Extra gRPC dial options may be appended.
func Dial(ctx context.Context, socket string, opts ...grpc.DialOption) (*Client, error) {
	if socket == "" {
		return nil, fmt.Errorf("no socket path: pass the executor's socket (default .airlock/airlock.sock)")
	}
	target := socket
	if !strings.HasPrefix(target, "unix:") {
		target = "unix:" + socket
	}
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(80 << 20)),
	}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", socket, err)
	}
	return New(conn), nil
}

// MTLSOptions configure DialMTLS.
type MTLSOptions struct {
	// Source supplies the client's X.509-SVID and the trust bundles that
	// verify the server (identity.OpenSource: Workload API or files).
	// Required. The caller keeps ownership: Close does not close it.
	Source identity.Source
	// ServerID is the SPIFFE ID, or identity.Pattern, the server must
	// present. Empty: any ID in the trust domain of the client's own SVID.
	ServerID string
}

// DialMTLS connects to an executor's mTLS listener at addr (host:port).
// The executor identifies the caller by the SPIFFE ID of the client's
// SVID; the client accepts only a server whose SVID verifies against the
// bundle and matches o.ServerID. Extra gRPC dial options may be appended.
func DialMTLS(ctx context.Context, addr string, o MTLSOptions, opts ...grpc.DialOption) (*Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("no address: pass the executor's mTLS address, like 127.0.0.1:8443")
	}
	if o.Source == nil {
		return nil, fmt.Errorf("no SVID source: open one with identity.OpenSource (Workload API or SVID files)")
	}
	authorize, err := identity.ServerAuthorizer(o.Source, o.ServerID)
	if err != nil {
		return nil, err
	}
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(identity.ClientCredentials(o.Source, authorize)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(80 << 20)),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return New(conn), nil
}

// New wraps an existing connection.
func New(conn *grpc.ClientConn) *Client {
	return &Client{
		conn:    conn,
		Tasks:   airlockv1.NewTaskServiceClient(conn),
		Intents: airlockv1.NewIntentServiceClient(conn),
		Tools:   airlockv1.NewToolServiceClient(conn),
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// TaskOptions describe a task to begin.
type TaskOptions struct {
	Purpose     string
	Sensitivity string
	TTL         time.Duration // 0: the executor's default
	Labels      map[string]string
}

// BeginTask begins a task owned by this client's identity.
func (c *Client) BeginTask(ctx context.Context, o TaskOptions) (*airlockv1.Task, error) {
	req := &airlockv1.BeginTaskRequest{Purpose: o.Purpose, Sensitivity: o.Sensitivity, Labels: o.Labels}
	if o.TTL > 0 {
		req.Ttl = durationpb.New(o.TTL)
	}
	resp, err := c.Tasks.BeginTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetTask(), nil
}

// EndTask ends a task.
func (c *Client) EndTask(ctx context.Context, taskID, reason string) (*airlockv1.Task, error) {
	resp, err := c.Tasks.EndTask(ctx, &airlockv1.EndTaskRequest{TaskId: taskID, Reason: reason})
	if err != nil {
		return nil, err
	}
	return resp.GetTask(), nil
}

// SubmitOption sets an optional field of an intent.
type SubmitOption func(*airlockv1.SubmitRequest)

// WithTask names the task the intent belongs to.
func WithTask(id string) SubmitOption { return func(r *airlockv1.SubmitRequest) { r.TaskId = id } }

// WithJustification says why the planner wants this call.
func WithJustification(s string) SubmitOption {
	return func(r *airlockv1.SubmitRequest) { r.Justification = s }
}

// Submit submits one intent: the tool name and its arguments as JSON text,
// exactly as a model emitted them. Domain results (denied, invalid, ...)
// are in the outcome; an error means the request was not taken.
func (c *Client) Submit(ctx context.Context, tool, argsJSON string, opts ...SubmitOption) (*airlockv1.Outcome, error) {
	req := &airlockv1.SubmitRequest{Tool: tool, Arguments: argsJSON}
	for _, o := range opts {
		o(req)
	}
	return c.Intents.Submit(ctx, req)
}

// ListTools lists the executor's tools.
func (c *Client) ListTools(ctx context.Context) ([]*airlockv1.Tool, error) {
	resp, err := c.Tools.ListTools(ctx, &airlockv1.ListToolsRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetTools(), nil
}

// StatusName is the lowercase name of a status: ok, denied,
// pending_approval, invalid, failed, timeout.
func StatusName(s airlockv1.Status) string { return s.Name() }

// EffectName is the lowercase name of an effect: allow, deny, require_approval.
func EffectName(e airlockv1.Effect) string { return e.Name() }

// OutcomeJSON renders an outcome as the JSON document `airlock call`
// prints: lowercase status and effect, output embedded as JSON.
func OutcomeJSON(o *airlockv1.Outcome) ([]byte, error) {
	type errJSON struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	}
	type decisionJSON struct {
		Effect  string   `json:"effect"`
		Rules   []string `json:"rules"`
		Message string   `json:"message,omitempty"`
	}
	doc := struct {
		IntentID     string          `json:"intent_id"`
		Status       string          `json:"status"`
		Tool         string          `json:"tool,omitempty"`
		TaskID       string          `json:"task_id,omitempty"`
		Output       json.RawMessage `json:"output,omitempty"`
		Error        *errJSON        `json:"error,omitempty"`
		Decision     *decisionJSON   `json:"decision,omitempty"`
		DurationMS   float64         `json:"duration_ms"`
		AuditEventID string          `json:"audit_event_id,omitempty"`
		ApprovalID   string          `json:"approval_id,omitempty"`
	}{
		IntentID: o.GetIntentId(), Status: StatusName(o.GetStatus()), Tool: o.GetTool(), TaskID: o.GetTaskId(),
		AuditEventID: o.GetAuditEventId(), ApprovalID: o.GetApprovalId(),
	}
	if out := o.GetOutput(); out != "" {
		if json.Valid([]byte(out)) {
			doc.Output = json.RawMessage(out)
		} else {
			b, _ := json.Marshal(out)
			doc.Output = b
		}
	}
	if e := o.GetError(); e != nil {
		doc.Error = &errJSON{Code: e.GetCode(), Message: e.GetMessage(), Field: e.GetField()}
	}
	if d := o.GetDecision(); d != nil {
		rules := d.GetRules()
		if rules == nil {
			rules = []string{}
		}
		doc.Decision = &decisionJSON{Effect: EffectName(d.GetEffect()), Rules: rules, Message: d.GetMessage()}
	}
	if d := o.GetDuration(); d != nil {
		doc.DurationMS = float64(d.AsDuration().Microseconds()) / 1000
	}
	return json.MarshalIndent(doc, "", "  ")
}
