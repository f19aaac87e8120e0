// Package rowscan holds what the SQLite and PostgreSQL stores share: the
// column lists of their (identically shaped) tables, the scanning of one row
// into a store type, the stored time format, and the validation of a batch
// before any database work. Both database/sql rows and pgx rows satisfy
// Scanner and Rows.
package rowscan

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
)

// TimeFormat is fixed-width RFC 3339 in UTC, so stored times sort as text
// and keep nanoseconds.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Scanner is one row: *sql.Row, *sql.Rows, pgx.Row and pgx.Rows all are.
type Scanner interface {
	Scan(dest ...any) error
}

// Rows is a result set: *sql.Rows and pgx.Rows both are. The caller closes
// it.
type Rows interface {
	Scanner
	Next() bool
	Err() error
}

// Collect scans every row of rows with scan. It does not close rows.
func Collect[T any](rows Rows, what string, scan func(Scanner) (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
}

// One is what a lookup of one row returns: when err is noRows (the
// driver's "no rows" error) an error wrapping store.ErrNotFound that names
// what, on another error a failed read of what, else v.
func One[T any](v T, err, noRows error, what string) (T, error) {
	var zero T
	if errors.Is(err, noRows) {
		return zero, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return zero, fmt.Errorf("read %s: %w", what, err)
	}
	return v, nil
}

// Page checks a page size n (named name) for the operation op: it must be
// positive, and it is clamped to maxPage.
func Page(op, name string, n, maxPage int) (int, error) {
	if n <= 0 {
		return 0, fmt.Errorf("%s: %s is %d: it must be positive", op, name, n)
	}
	return min(n, maxPage), nil
}

// FmtTime is the stored form of t: nil (NULL) for the zero time, else
// TimeFormat in UTC.
func FmtTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(TimeFormat)
}

// ParseTime reads a stored time; NULL and "" are the zero time.
func ParseTime(s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q is not RFC 3339: %w", *s, err)
	}
	return t, nil
}

func parseTimes(what string, fs ...timeField) error {
	for _, f := range fs {
		t, err := ParseTime(f.src)
		if err != nil {
			return fmt.Errorf("read %s: %w", what, err)
		}
		*f.dst = t
	}
	return nil
}

type timeField struct {
	dst *time.Time
	src *string
}

// TaskColumns are the columns Task scans, in order.
const TaskColumns = `id, caller, purpose, sensitivity, labels, started_at, expires_at, ended_at, call_count`

// Task scans one row of TaskColumns.
func Task(r Scanner) (*store.Task, error) {
	var (
		t                       store.Task
		labels                  string
		started, expires, ended *string
	)
	if err := r.Scan(&t.ID, &t.Caller, &t.Purpose, &t.Sensitivity, &labels, &started, &expires, &ended, &t.CallCount); err != nil {
		return nil, err
	}
	if labels != "" && labels != "{}" {
		if err := json.Unmarshal([]byte(labels), &t.Labels); err != nil {
			return nil, fmt.Errorf("read task %q: labels are not a JSON object of strings: %w", t.ID, err)
		}
	}
	if err := parseTimes(fmt.Sprintf("task %q", t.ID), timeField{&t.StartedAt, started}, timeField{&t.ExpiresAt, expires}, timeField{&t.EndedAt, ended}); err != nil {
		return nil, err
	}
	return &t, nil
}

// TaskLabels is the stored form of a task's labels: a JSON object.
func TaskLabels(t *store.Task) (string, error) {
	if len(t.Labels) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(t.Labels)
	if err != nil {
		return "", fmt.Errorf("commit: task %s labels: %w", t.ID, err)
	}
	return string(b), nil
}

// IntentColumns are the columns Intent scans, in order.
const IntentColumns = `id, task_id, caller, tool, status, created, outcome`

// Intent scans one row of IntentColumns.
func Intent(r Scanner) (*store.Intent, error) {
	var (
		in      store.Intent
		created *string
	)
	if err := r.Scan(&in.ID, &in.TaskID, &in.Caller, &in.Tool, &in.Status, &created, &in.Outcome); err != nil {
		return nil, err
	}
	if err := parseTimes(fmt.Sprintf("intent %q", in.ID), timeField{&in.Created, created}); err != nil {
		return nil, err
	}
	return &in, nil
}

// LeaseColumns are the columns Lease scans, in order, qualified by the
// alias l.
const LeaseColumns = `l.id, l.task_id, l.tool, l.source, l.credential, l.issued_at, l.expires_at, l.revoked_at, l.ref`

// Lease scans one row of LeaseColumns.
func Lease(r Scanner) (*store.Lease, error) {
	var (
		l                        store.Lease
		issued, expires, revoked *string
	)
	if err := r.Scan(&l.ID, &l.TaskID, &l.Tool, &l.Source, &l.Credential, &issued, &expires, &revoked, &l.Ref); err != nil {
		return nil, fmt.Errorf("read lease: %w", err)
	}
	if err := parseTimes(fmt.Sprintf("lease %q", l.ID), timeField{&l.IssuedAt, issued}, timeField{&l.ExpiresAt, expires}, timeField{&l.RevokedAt, revoked}); err != nil {
		return nil, err
	}
	return &l, nil
}

// RecordColumns are the columns Record scans, in order.
const RecordColumns = `seq, hash, body`

// Record scans one row of RecordColumns.
func Record(r Scanner) (store.Record, error) {
	var rec store.Record
	if err := r.Scan(&rec.Seq, &rec.Hash, &rec.Body); err != nil {
		return store.Record{}, fmt.Errorf("read audit record: %w", err)
	}
	return rec, nil
}

// ApprovalColumns are the columns Approval scans, in order; ApprovalArgs
// gives the values of an insert in the same order.
const ApprovalColumns = `id, intent_id, task_id, caller, tool, tool_digest, args_sha256, arguments, justification, rules,
	message, risk, state, created_at, expires_at, decided_at, approver, reason, claimed_by, claimed_at, intent_status, idempotency_key`

// ApprovalArgs are the values of a's ApprovalColumns.
func ApprovalArgs(a *store.Approval) ([]any, error) {
	rules := a.Rules
	if rules == nil {
		rules = []string{}
	}
	rj, err := json.Marshal(rules)
	if err != nil {
		return nil, fmt.Errorf("commit: approval %s rules: %w", a.ID, err)
	}
	args := a.Arguments
	if args == nil {
		args = []byte{}
	}
	return []any{a.ID, a.IntentID, a.TaskID, a.Caller, a.Tool, a.ToolDigest, a.ArgsSHA256, args, a.Justification, string(rj),
		a.Message, a.Risk, string(a.State), FmtTime(a.CreatedAt), FmtTime(a.ExpiresAt), FmtTime(a.DecidedAt), a.Approver, a.Reason,
		a.ClaimedBy, FmtTime(a.ClaimedAt), a.IntentStatus, a.IdempotencyKey}, nil
}

// Approval scans one row of ApprovalColumns.
func Approval(r Scanner) (*store.Approval, error) {
	var (
		a                                  store.Approval
		rules, state                       string
		created, expires, decided, claimed *string
	)
	if err := r.Scan(&a.ID, &a.IntentID, &a.TaskID, &a.Caller, &a.Tool, &a.ToolDigest, &a.ArgsSHA256, &a.Arguments, &a.Justification, &rules,
		&a.Message, &a.Risk, &state, &created, &expires, &decided, &a.Approver, &a.Reason, &a.ClaimedBy, &claimed, &a.IntentStatus, &a.IdempotencyKey); err != nil {
		return nil, fmt.Errorf("read approval: %w", err)
	}
	a.State = store.ApprovalState(state)
	if rules != "" && rules != "[]" {
		if err := json.Unmarshal([]byte(rules), &a.Rules); err != nil {
			return nil, fmt.Errorf("read approval %q: rules are not a JSON array of strings: %w", a.ID, err)
		}
	}
	if err := parseTimes(fmt.Sprintf("approval %q", a.ID), timeField{&a.CreatedAt, created}, timeField{&a.ExpiresAt, expires},
		timeField{&a.DecidedAt, decided}, timeField{&a.ClaimedAt, claimed}); err != nil {
		return nil, err
	}
	return &a, nil
}

// IdempotencyColumns are the columns Idempotency scans, in order.
const IdempotencyColumns = `caller, key, intent_id, task_id, tool, args_sha256, created_at, executor`

// Idempotency scans one row of IdempotencyColumns.
func Idempotency(r Scanner) (*store.IdempotencyRecord, error) {
	var (
		rec     store.IdempotencyRecord
		created *string
	)
	if err := r.Scan(&rec.Caller, &rec.Key, &rec.IntentID, &rec.TaskID, &rec.Tool, &rec.ArgsSHA256, &created, &rec.Executor); err != nil {
		return nil, err
	}
	if err := parseTimes(fmt.Sprintf("idempotency record %q", rec.Key), timeField{&rec.CreatedAt, created}); err != nil {
		return nil, err
	}
	return &rec, nil
}

// EventTool is the tool name column of an audit event ("" without a tool).
func EventTool(ev *audit.Event) string {
	if ev.Tool == nil {
		return ""
	}
	return ev.Tool.Name
}

// EventEffect is the decision effect column of an audit event ("" when it
// carries no decision).
func EventEffect(ev *audit.Event) string {
	if ev.Decision == nil {
		return ""
	}
	return ev.Decision.Effect
}

// ValidState reports whether s is one of the approval states.
func ValidState(s store.ApprovalState) bool {
	switch s {
	case store.ApprovalPending, store.ApprovalApproved, store.ApprovalDenied, store.ApprovalExpired, store.ApprovalClaimed, store.ApprovalDone:
		return true
	}
	return false
}

// Terminal reports whether an approval in state s never changes again.
func Terminal(s store.ApprovalState) bool {
	return s == store.ApprovalDenied || s == store.ApprovalExpired || s == store.ApprovalDone
}

// Validate checks the batches before any database work, with the same
// rules and messages for both stores.
func Validate(batches []*store.Batch) error {
	for bi, b := range batches {
		if b == nil {
			return fmt.Errorf("commit: batch %d is nil", bi)
		}
		for ei, ev := range b.Events {
			if ev == nil {
				return fmt.Errorf("commit: batch %d event %d is nil", bi, ei)
			}
		}
		for ii, in := range b.Intents {
			if in == nil || in.ID == "" {
				return fmt.Errorf("commit: batch %d intent %d has no id", bi, ii)
			}
		}
		for ti, t := range b.Tasks {
			if t == nil || t.ID == "" {
				return fmt.Errorf("commit: batch %d task %d has no id", bi, ti)
			}
		}
		for li, l := range b.Leases {
			if l == nil || l.ID == "" || l.TaskID == "" || l.Source == "" || l.ExpiresAt.IsZero() {
				return fmt.Errorf("commit: batch %d lease %d needs an id, a task id, a source and an expiry", bi, li)
			}
		}
		for id, at := range b.RevokedLeases {
			if at.IsZero() {
				return fmt.Errorf("commit: revoke lease %s: the revocation time is zero", id)
			}
		}
		for ai, a := range b.Approvals {
			if a == nil || a.ID == "" || a.IntentID == "" || a.TaskID == "" || a.Caller == "" || a.Tool == "" || a.ArgsSHA256 == "" || a.ExpiresAt.IsZero() {
				return fmt.Errorf("commit: batch %d approval %d needs an id, an intent id, a task id, a caller, a tool, an args_sha256 and an expiry", bi, ai)
			}
			if !ValidState(a.State) {
				return fmt.Errorf("commit: approval %s: state %q is not one of pending, approved, denied, expired, claimed, done", a.ID, a.State)
			}
		}
		for ci, c := range b.ApprovalChanges {
			if c == nil || c.ID == "" || len(c.From) == 0 {
				return fmt.Errorf("commit: batch %d approval change %d needs an id and at least one From state", bi, ci)
			}
			if !ValidState(c.To) || c.To == store.ApprovalPending {
				return fmt.Errorf("commit: approval %s: cannot change to state %q: the target must be approved, denied, expired, claimed or done", c.ID, c.To)
			}
			for _, f := range c.From {
				if !ValidState(f) {
					return fmt.Errorf("commit: approval %s: From state %q is not an approval state", c.ID, f)
				}
				if Terminal(f) {
					return fmt.Errorf("commit: approval %s: From state %q is final: a denied, expired or done approval never changes", c.ID, f)
				}
			}
			if c.To == store.ApprovalClaimed && slices.Contains(c.From, store.ApprovalClaimed) && c.ClaimedBefore.IsZero() {
				return fmt.Errorf("commit: approval %s: re-claiming a claimed approval needs ClaimedBefore, or two executors could both take it", c.ID)
			}
			if c.At.IsZero() && c.To != store.ApprovalDone {
				return fmt.Errorf("commit: approval %s: the change to %s has no time (At)", c.ID, c.To)
			}
		}
		for ri, r := range b.Idempotency {
			if r == nil || r.Caller == "" || r.Key == "" || r.IntentID == "" {
				return fmt.Errorf("commit: batch %d idempotency record %d needs a caller, a key and an intent id", bi, ri)
			}
		}
	}
	return nil
}

// ChangeSet is the SET clause of an approval change (after "state = ?"),
// with its values, in the order the placeholders appear; ph makes the n-th
// placeholder (1-based) of the dialect. It starts at placeholder start.
func ChangeSet(c *store.ApprovalChange, ph func(int) string, start int) (string, []any) {
	n := start
	next := func() string { p := ph(n); n++; return p }
	set := "state = " + next()
	args := []any{string(c.To)}
	switch c.To {
	case store.ApprovalApproved, store.ApprovalDenied, store.ApprovalExpired:
		set += ", decided_at = " + next() + ", approver = " + next() + ", reason = " + next()
		args = append(args, FmtTime(c.At), c.Approver, c.Reason)
	case store.ApprovalClaimed:
		set += ", claimed_by = " + next() + ", claimed_at = " + next()
		args = append(args, c.ClaimedBy, FmtTime(c.At))
	case store.ApprovalDone:
		set += ", intent_status = " + next()
		args = append(args, c.IntentStatus)
	}
	return set, args
}

// ChangeGuard is the WHERE clause of an approval change (id and allowed
// current states, and for a claimed approval its claim time when
// ClaimedBefore is set), with its values; placeholders continue at start.
func ChangeGuard(c *store.ApprovalChange, ph func(int) string, start int) (string, []any) {
	n := start
	next := func() string { p := ph(n); n++; return p }
	where := "id = " + next() + " AND state IN ("
	args := []any{c.ID}
	for i, f := range c.From {
		if i > 0 {
			where += ", "
		}
		where += next()
		args = append(args, string(f))
	}
	where += ")"
	if !c.ClaimedBefore.IsZero() {
		where += " AND (state <> 'claimed' OR claimed_at < " + next() + ")"
		args = append(args, FmtTime(c.ClaimedBefore))
	}
	return where, args
}

// ConflictError is the error of a failed approval change: it names the
// approval and its current state ("" when it does not exist) and wraps
// store.ErrConflict (and store.ErrNotFound when the approval does not
// exist).
func ConflictError(c *store.ApprovalChange, current *string) error {
	if current == nil {
		return fmt.Errorf("commit: change approval %s to %s: %w: %w: no such approval", c.ID, c.To, store.ErrConflict, store.ErrNotFound)
	}
	from := make([]string, len(c.From))
	for i, f := range c.From {
		from[i] = string(f)
	}
	if !c.ClaimedBefore.IsZero() && store.ApprovalState(*current) == store.ApprovalClaimed && slices.Contains(c.From, store.ApprovalClaimed) {
		return fmt.Errorf("commit: change approval %s to %s: %w: it is claimed, and its claim is not older than %s",
			c.ID, c.To, store.ErrConflict, c.ClaimedBefore.UTC().Format(time.RFC3339Nano))
	}
	return fmt.Errorf("commit: change approval %s to %s: %w: it is %s, not %v", c.ID, c.To, store.ErrConflict, *current, from)
}

// AuditWhere is the extra WHERE terms (" AND ...", or "" for an empty
// filter) of AuditFiltered, with their values; placeholders start at start.
// An effect filter repeats the partial index's predicate (effect <> ”) so
// that both databases may use that index.
func AuditWhere(f store.AuditFilter, ph func(int) string, start int) (string, []any) {
	n := start
	var (
		where string
		args  []any
	)
	add := func(col, v string) {
		if v == "" {
			return
		}
		where += " AND " + col + " = " + ph(n)
		n++
		args = append(args, v)
	}
	add("task_id", f.TaskID)
	add("caller", f.Caller)
	add("tool", f.Tool)
	add("effect", f.Effect)
	if f.Effect != "" {
		where += " AND effect <> ''"
	}
	return where, args
}

// ApprovalWhere is the WHERE clause (" WHERE ...", or "") of Approvals with
// its values, and the effective limit; placeholders start at start, and the
// limit's placeholder is the next one.
func ApprovalWhere(f store.ApprovalFilter, ph func(int) string, start int) (string, []any, int, error) {
	limit := f.Limit
	switch {
	case limit < 0:
		return "", nil, 0, fmt.Errorf("read approvals: limit is %d: it must not be negative", limit)
	case limit == 0:
		limit = store.DefaultApprovalsLimit
	case limit > store.MaxApprovalsLimit:
		limit = store.MaxApprovalsLimit
	}
	n := start
	var (
		terms []string
		args  []any
	)
	if len(f.States) > 0 {
		in := ""
		for i, st := range f.States {
			if !ValidState(st) {
				return "", nil, 0, fmt.Errorf("read approvals: state filter %q is not one of pending, approved, denied, expired, claimed, done", st)
			}
			if i > 0 {
				in += ", "
			}
			in += ph(n)
			n++
			args = append(args, string(st))
		}
		terms = append(terms, "state IN ("+in+")")
	}
	if f.TaskID != "" {
		terms = append(terms, "task_id = "+ph(n))
		args = append(args, f.TaskID)
	}
	if len(terms) == 0 {
		return "", args, limit, nil
	}
	where := " WHERE " + terms[0]
	for _, t := range terms[1:] {
		where += " AND " + t
	}
	return where, args, limit, nil
}

// ApprovalsDueQuery is the query of ApprovalsDue and its values. limit must
// be positive (it is clamped to maxPage) and staleClaim positive.
func ApprovalsDueQuery(now time.Time, staleClaim time.Duration, limit, maxPage int, ph func(int) string) (string, []any, error) {
	limit, err := Page("read approvals due", "limit", limit, maxPage)
	if err != nil {
		return "", nil, err
	}
	if staleClaim <= 0 {
		return "", nil, fmt.Errorf("read approvals due: staleClaim is %s: it must be positive, or every claim would look stale", staleClaim)
	}
	q := `SELECT ` + ApprovalColumns + ` FROM approvals
		WHERE (state = 'pending' AND expires_at <= ` + ph(1) + `)
		   OR state = 'approved'
		   OR (state = 'claimed' AND (claimed_at IS NULL OR claimed_at <= ` + ph(2) + `))
		ORDER BY created_at, id LIMIT ` + ph(3)
	return q, []any{now.UTC().Format(TimeFormat), now.Add(-staleClaim).UTC().Format(TimeFormat), limit}, nil
}
