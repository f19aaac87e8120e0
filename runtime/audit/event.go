// Package audit defines the tamper-evident audit event and its hash chain.
//
// Every event carries the hash of the event before it. An event's hash is
// SHA-256 over the previous hash and the event's canonical JSON body (the
// event without its own hash), so editing, deleting or reordering any event
// breaks the chain at a place Verify names.
package audit

import (
	"time"
)

// Event types.
const (
	TypeDecision  = "decision"
	TypeExecution = "execution"
	TypeTaskBegin = "task.begin"
	TypeTaskEnd   = "task.end"
)

// Event is one audit record. It never holds a secret value: arguments are
// recorded by digest, credentials by name and lease id.
type Event struct {
	Seq        int64      `json:"seq"`
	ID         string     `json:"id"`
	Time       time.Time  `json:"time"`
	Type       string     `json:"type"`
	Executor   string     `json:"executor,omitempty"`
	Caller     string     `json:"caller,omitempty"`
	TaskID     string     `json:"task_id,omitempty"`
	IntentID   string     `json:"intent_id,omitempty"`
	Tool       *ToolRef   `json:"tool,omitempty"`
	ArgsSHA256 string     `json:"args_sha256,omitempty"`
	Decision   *Decision  `json:"decision,omitempty"`
	Status     string     `json:"status,omitempty"`
	Error      *ErrorInfo `json:"error,omitempty"`
	DurationUS int64      `json:"duration_us,omitempty"`
	// Details holds type-specific facts (task purpose, output size, ...).
	Details  map[string]any `json:"details,omitempty"`
	PrevHash string         `json:"prev_hash"`
	// Hash is not part of the hashed body.
	Hash string `json:"-"`
}

// ToolRef identifies the exact tool that was decided on or run.
type ToolRef struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// Decision is the policy decision recorded in a decision event.
type Decision struct {
	Effect  string   `json:"effect"`
	Rules   []string `json:"rules,omitempty"`
	Message string   `json:"message,omitempty"`
}

// ErrorInfo is the error of a failed or invalid call.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}
