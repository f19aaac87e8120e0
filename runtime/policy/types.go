// Package policy decides intents with CEL: operator policy files plus each
// tool's own rules, compiled and type-checked once at load, evaluated under
// a cost limit and a deadline. Combination: deny > require_approval >
// allow > default deny. An evaluation error denies and names the rule.
package policy

import "time"

// Effect is the result of a rule or a decision.
type Effect string

// The effects, strongest first.
const (
	Deny            Effect = "deny"
	RequireApproval Effect = "require_approval"
	Allow           Effect = "allow"
)

// Input is everything a decision may look at. The `cel` struct tags on
// Caller, Task, Tool, Request and Approval are the field names policy
// expressions use (caller.spiffe_id, task.call_count, ...). It is built by the executor;
// nothing in it comes from the request body except Args and Request.Justification.
type Input struct {
	Caller   Caller
	Task     Task
	Tool     Tool
	Args     any // the validated JSON arguments, decoded
	Request  Request
	Approval *Approval // nil when there is none
}

// Caller is the authenticated peer.
type Caller struct {
	SpiffeID    string `cel:"spiffe_id"`
	TrustDomain string `cel:"trust_domain"`
	Path        string `cel:"path"`
}

// Task is the task the intent belongs to; zero when the call has none.
type Task struct {
	ID          string            `cel:"id"`
	Purpose     string            `cel:"purpose"`
	Sensitivity string            `cel:"sensitivity"`
	Labels      map[string]string `cel:"labels"`
	StartedAt   time.Time         `cel:"started_at"`
	ExpiresAt   time.Time         `cel:"expires_at"`
	CallCount   int64             `cel:"call_count"`
}

// Tool is the tool the intent names.
type Tool struct {
	Name         string            `cel:"name"`
	Version      string            `cel:"version"`
	Digest       string            `cel:"digest"`
	Risk         string            `cel:"risk"`
	Labels       map[string]string `cel:"labels"`
	Capabilities map[string]any    `cel:"capabilities"` // the manifest's capabilities, as JSON
}

// Request is the intent itself.
type Request struct {
	ID            string    `cel:"id"`
	Time          time.Time `cel:"time"`
	Justification string    `cel:"justification"`
}

// Approval is the state of a matching approval (approvals issue).
type Approval struct {
	State    string `cel:"state"`
	Approver string `cel:"approver"`
}

// Decision is the outcome of Decide.
type Decision struct {
	Effect Effect
	// Rules are the qualified names ("policy/rule", or "tool:name/rule")
	// of the rules that decided; empty for the default deny.
	Rules   []string
	Message string
}
