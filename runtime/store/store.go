// Package store is airlock's durable state behind one interface: tasks,
// intent outcomes, credential leases, approvals, idempotency records and
// the audit chain. The embedded SQLite implementation is in store/sqlite,
// the PostgreSQL one in store/postgres; store/storetest is the conformance
// suite both pass.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/airlock-dev/airlock/runtime/audit"
)

// ErrNotFound is returned when a task or intent does not exist.
var ErrNotFound = errors.New("not found")

// Task is a unit of agent work that calls belong to.
type Task struct {
	ID          string
	Caller      string // SPIFFE ID of the caller that began it
	Purpose     string
	Sensitivity string
	Labels      map[string]string
	StartedAt   time.Time
	ExpiresAt   time.Time
	EndedAt     time.Time // zero while the task is open
	CallCount   int64
}

// Intent is the stored outcome of one submitted intent.
type Intent struct {
	ID      string
	TaskID  string
	Caller  string
	Tool    string
	Status  string
	Created time.Time
	// Outcome is the outcome message, serialized by the caller (binary protobuf).
	Outcome []byte
}

// Batch is one atomic unit of state change with its audit events: either
// all of it commits, or none of it does.
type Batch struct {
	// Events are sealed into the hash chain in order: Append sets Seq,
	// PrevHash and Hash on each.
	Events []*audit.Event
	// Intents are inserted or replaced by ID.
	Intents []*Intent
	// Tasks are inserted or replaced by ID. Replacing keeps the stored call
	// count: only CallCounts changes it, so concurrent intents never lose one.
	Tasks []*Task
	// CallCounts adds to the call count of the named tasks.
	CallCounts map[string]int64
	// Leases are inserted or replaced by ID. Replacing never clears a
	// stored RevokedAt: only RevokedLeases sets it.
	Leases []*Lease
	// RevokedLeases marks the named leases revoked at the given time. A
	// lease already revoked keeps its first revocation time; an unknown
	// lease id fails the commit.
	RevokedLeases map[string]time.Time
	// Approvals are inserted; an existing id fails the commit.
	Approvals []*Approval
	// ApprovalChanges move approvals from one state to another. Each is a
	// guard: when the stored state is not one of From, the whole batch
	// fails with an error that wraps ErrConflict and nothing of it commits.
	ApprovalChanges []*ApprovalChange
	// Idempotency records are inserted; a record whose (Caller, Key) exists
	// fails the whole batch with an error wrapping ErrConflict.
	Idempotency []*IdempotencyRecord
}

// Guarded reports whether the batch carries guards that can fail with
// ErrConflict (approval changes or idempotency records). The Committer
// commits a guarded batch in a transaction of its own, so that its conflict
// never fails another caller's batch.
func (b *Batch) Guarded() bool {
	return len(b.ApprovalChanges) > 0 || len(b.Idempotency) > 0 || len(b.Approvals) > 0
}

// ErrConflict is wrapped by Commit when a guard of a batch fails: an
// approval was not in an expected state, or an idempotency key or approval
// id is taken.
var ErrConflict = errors.New("conflict with the stored state")

// ApprovalState is the state of an approval.
type ApprovalState string

// Approval states. Pending moves to approved, denied or expired, never back;
// approved moves to claimed when an executor takes the intent to run it,
// and claimed to done when its outcome is stored. A denied or expired
// approval never changes again.
const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalDenied   ApprovalState = "denied"
	ApprovalExpired  ApprovalState = "expired"
	ApprovalClaimed  ApprovalState = "claimed"
	ApprovalDone     ApprovalState = "done"
)

// Approval is a pending or decided human approval of one intent, bound to
// the exact task, caller, tool, tool digest and arguments.
type Approval struct {
	ID         string
	IntentID   string
	TaskID     string
	Caller     string // SPIFFE ID of the requester
	Tool       string
	ToolDigest string
	ArgsSHA256 string
	// Arguments is the canonical JSON of the arguments (never a secret:
	// planners send data only); the approved intent runs with exactly these.
	Arguments     []byte
	Justification string
	Rules         []string // the rules that asked for approval
	Message       string
	Risk          string
	State         ApprovalState
	CreatedAt     time.Time
	ExpiresAt     time.Time
	DecidedAt     time.Time // zero while pending
	Approver      string    // SPIFFE ID of the operator who decided
	Reason        string
	ClaimedBy     string // executor id that took the approved intent to run
	ClaimedAt     time.Time
	// IntentStatus is the status of the intent's final outcome ("" before).
	IntentStatus string
	// IdempotencyKey of the submission that created it ("" none).
	IdempotencyKey string
}

// ApprovalChange is a guarded state change of one approval. Only the
// fields that the target state needs are written: Approver, Reason and At
// (decided_at) for approved, denied and expired; ClaimedBy and At
// (claimed_at) for claimed; IntentStatus for done.
//
// Commit refuses (with an error that is not ErrConflict) a change whose
// From is empty or holds a final state (denied, expired, done), whose To is
// pending or unknown, whose At is zero (except for done), or that re-claims
// a claimed approval without ClaimedBefore.
type ApprovalChange struct {
	ID           string
	From         []ApprovalState
	To           ApprovalState
	At           time.Time
	Approver     string
	Reason       string
	ClaimedBy    string
	IntentStatus string
	// ClaimedBefore, when set, narrows the guard: an approval whose stored
	// state is claimed matches From only if its claimed_at is before this
	// time. Re-claiming a stale claim (From claimed, To claimed) requires
	// it, so that of two executors taking over the same stale claim only
	// one succeeds.
	ClaimedBefore time.Time
}

// ApprovalFilter selects approvals. Empty fields match everything.
type ApprovalFilter struct {
	// States matches approvals in any of these states; an unknown state is
	// an error.
	States []ApprovalState
	TaskID string
	// Limit bounds the result: 0 means DefaultApprovalsLimit, larger than
	// MaxApprovalsLimit means MaxApprovalsLimit, negative is an error.
	Limit int
}

// MaxPage bounds what one call of a Store reads or deletes (records,
// leases, idempotency records); larger limits are clamped to it.
const MaxPage = 10000

// Bounds of ApprovalFilter.Limit.
const (
	DefaultApprovalsLimit = 100
	MaxApprovalsLimit     = 1000
)

// IdempotencyRecord binds a caller's idempotency key to the first intent
// submitted with it and to exactly what that intent was.
type IdempotencyRecord struct {
	Caller     string
	Key        string
	IntentID   string
	TaskID     string
	Tool       string
	ArgsSHA256 string
	CreatedAt  time.Time
	// Executor names the executor run that reserved the key
	// ("<executor id>/<run id>"; "" for records written before it was
	// kept). The executor uses it to tell an intent whose executor is
	// gone from one still running.
	Executor string
}

// AuditFilter selects audit records; empty fields match everything.
type AuditFilter struct {
	TaskID string
	Caller string
	Tool   string
	Effect string // decision effect: allow, deny, require_approval
}

// Lease is one credential issued to one call of a task. It never holds the
// credential's value.
type Lease struct {
	ID         string
	TaskID     string
	Tool       string
	Source     string // name of the credential source that issued it
	Credential string // name of the credential in the tool's manifest
	IssuedAt   time.Time
	ExpiresAt  time.Time // never later than the task's expiry
	RevokedAt  time.Time // zero while the lease may be live at its source
	// Ref is what the source needs to revoke the lease, sealed (encrypted
	// and authenticated) by the credentials package. The store treats it as
	// opaque bytes.
	Ref []byte
}

// Record is an audit event as stored: the exact hashed body and hash. It is
// an alias of audit.Record so that records read from a Store feed
// audit.Verify directly (audit cannot import store: store imports audit).
type Record = audit.Record

// Store is airlock's durable state. Implementations are safe for
// concurrent use.
type Store interface {
	// Commit applies the batches in one transaction, in order.
	Commit(ctx context.Context, batches []*Batch) error
	// Task returns a task by id, or ErrNotFound.
	Task(ctx context.Context, id string) (*Task, error)
	// Intent returns an intent by id, or ErrNotFound.
	Intent(ctx context.Context, id string) (*Intent, error)
	// AuditRecords returns up to limit records with Seq > after, in order.
	AuditRecords(ctx context.Context, after int64, limit int) ([]Record, error)
	// AuditTail returns the last n records, in order.
	AuditTail(ctx context.Context, n int) ([]Record, error)
	// OpenLeases returns the leases of taskID that are not revoked, oldest
	// first.
	OpenLeases(ctx context.Context, taskID string) ([]*Lease, error)
	// LeasesDue returns up to limit leases, oldest first, that are not
	// revoked and are due for revocation at now: the lease or its task has
	// expired, the task has ended, or the task is unknown.
	LeasesDue(ctx context.Context, now time.Time, limit int) ([]*Lease, error)
	// Approval returns an approval by id, or ErrNotFound.
	Approval(ctx context.Context, id string) (*Approval, error)
	// Approvals returns the approvals that match f, newest first.
	Approvals(ctx context.Context, f ApprovalFilter) ([]*Approval, error)
	// ApprovalsDue returns up to limit approvals that need an executor's
	// attention at now: pending ones past their expiry, approved ones not
	// yet claimed, and claimed ones whose claim is older than staleClaim
	// (their executor died mid-run), oldest first.
	ApprovalsDue(ctx context.Context, now time.Time, staleClaim time.Duration, limit int) ([]*Approval, error)
	// Idempotency returns the record of (caller, key), or ErrNotFound.
	Idempotency(ctx context.Context, caller, key string) (*IdempotencyRecord, error)
	// PurgeIdempotency deletes up to limit idempotency records (the
	// executor's outcome markers included) whose CreatedAt is before
	// before, oldest first, and returns how many it deleted. Records
	// without a CreatedAt are never purged. limit must be positive; it is
	// clamped to MaxPage.
	PurgeIdempotency(ctx context.Context, before time.Time, limit int) (int, error)
	// AuditFiltered returns up to limit records with Seq > after that
	// match f, in order.
	AuditFiltered(ctx context.Context, after int64, f AuditFilter, limit int) ([]Record, error)
	// Close flushes and closes the store.
	Close() error
}
