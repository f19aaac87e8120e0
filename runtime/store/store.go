// Package store is airlock's durable state behind one interface: tasks,
// intent outcomes and the audit chain. The embedded SQLite implementation
// is in store/sqlite; PostgreSQL arrives with the approvals issue.
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
	// Close flushes and closes the store.
	Close() error
}
