// Package sqlite is the embedded SQLite implementation of store.Store
// (modernc.org/sqlite, pure Go). It keeps tasks, intent outcomes, credential
// leases, approvals, idempotency records and the hash-chained audit log in
// one file.
//
// Writes go through a single connection (SQLite has one writer anyway) in
// WAL mode with synchronous=FULL by default, so a returned Commit is on
// disk; reads use a separate pool of query-only connections that WAL lets
// run concurrently with the writer. Pair it with store.Committer to share
// each fsync among many concurrent intents.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/internal/rowscan"
)

// timeFormat is fixed-width RFC 3339 in UTC, so stored times sort as text.
const timeFormat = rowscan.TimeFormat

// MaxPage bounds the number of records one AuditRecords or AuditTail call
// returns; larger requests are clamped to it.
const MaxPage = store.MaxPage

// Options configures Open. The zero value is valid.
type Options struct {
	// Synchronous is the SQLite synchronous mode of the writer: "full"
	// (default: a commit survives power loss) or "normal" (in WAL mode a
	// commit survives a crash of the process but may be lost on power loss;
	// faster).
	Synchronous string
	// BusyTimeout is how long a connection waits for a lock held by another
	// process before failing. Default 5s.
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool. Default 4.
	ReadConns int
	// Logger receives open and migration messages. The zero value logs
	// nothing, like zerolog.Nop().
	Logger zerolog.Logger
}

// Store is a store.Store in one SQLite file. It is safe for concurrent use.
type Store struct {
	path string
	log  zerolog.Logger
	w    *sql.DB // exactly one connection: the writer
	r    *sql.DB // query-only pool

	insertEvent    *sql.Stmt
	upsertIntnt    *sql.Stmt
	upsertTask     *sql.Stmt
	addCount       *sql.Stmt
	upsertLease    *sql.Stmt
	revokeLease    *sql.Stmt
	insertApproval *sql.Stmt
	insertIdem     *sql.Stmt

	mu     sync.Mutex // serializes Commit and Close; guards head and closed
	closed bool
	head   struct {
		valid bool
		seq   int64
		hash  string
	}
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store at path, applies pending schema
// migrations and refuses a database whose schema is newer than this binary
// knows. The directory is created 0700 and the file 0600.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("cannot open audit store: path is empty: set the --data directory")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("cannot open audit store at %s: the path must not contain '?' or '#': choose another --data directory", path)
	}
	syncMode := "FULL"
	switch strings.ToLower(opts.Synchronous) {
	case "", "full":
	case "normal":
		syncMode = "NORMAL"
	default:
		return nil, fmt.Errorf("cannot open audit store at %s: synchronous mode %q is not \"full\" or \"normal\"", path, opts.Synchronous)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open audit store at %s: %w: check the --data directory", path, err)
	}
	path = abs
	if err := prepareFile(path, opts.Logger); err != nil {
		return nil, err
	}

	busy := fmt.Sprintf("_busy_timeout=%d", opts.BusyTimeout.Milliseconds())
	w, err := sql.Open("sqlite", path+"?_txlock=immediate&"+busy+"&_journal_mode=WAL&_synchronous="+syncMode+"&_foreign_keys=1")
	if err != nil {
		return nil, fmt.Errorf("cannot open audit store at %s: %w: check the --data directory", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{path: path, log: opts.Logger, w: w}
	fail := func(err error) (*Store, error) {
		s.closeAll()
		return nil, err
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(fmt.Errorf("cannot open audit store at %s: %w: check the --data directory and that the file is an airlock SQLite database", path, err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Errorf("cannot open audit store at %s: journal mode is %q, not WAL: put the --data directory on a local filesystem", path, mode))
	}
	version, err := migrate(ctx, w, path)
	if err != nil {
		return fail(err)
	}

	s.r, err = sql.Open("sqlite", path+"?"+busy+"&_query_only=1&_foreign_keys=1")
	if err != nil {
		return fail(fmt.Errorf("cannot open audit store at %s: read pool: %w", path, err))
	}
	s.r.SetMaxOpenConns(opts.ReadConns)
	s.r.SetMaxIdleConns(opts.ReadConns)
	if err := s.r.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("cannot open audit store at %s: read pool: %w", path, err))
	}

	for _, p := range []struct {
		dst  **sql.Stmt
		text string
	}{
		{&s.insertEvent, `INSERT INTO audit_events (seq, id, time, type, task_id, intent_id, caller, tool, effect, body, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.upsertIntnt, `INSERT INTO intents (id, task_id, caller, tool, status, created, outcome)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, caller = excluded.caller, tool = excluded.tool,
				status = excluded.status, created = excluded.created, outcome = excluded.outcome`},
		{&s.upsertTask, `INSERT INTO tasks (id, caller, purpose, sensitivity, labels, started_at, expires_at, ended_at, call_count)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET caller = excluded.caller, purpose = excluded.purpose,
				sensitivity = excluded.sensitivity, labels = excluded.labels, started_at = excluded.started_at,
				expires_at = excluded.expires_at, ended_at = excluded.ended_at`},
		{&s.addCount, `UPDATE tasks SET call_count = call_count + ? WHERE id = ?`},
		{&s.upsertLease, `INSERT INTO leases (id, task_id, tool, source, credential, issued_at, expires_at, revoked_at, ref)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, tool = excluded.tool, source = excluded.source,
				credential = excluded.credential, issued_at = excluded.issued_at, expires_at = excluded.expires_at,
				revoked_at = coalesce(leases.revoked_at, excluded.revoked_at), ref = excluded.ref`},
		{&s.revokeLease, `UPDATE leases SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`},
		{&s.insertApproval, `INSERT INTO approvals (` + rowscan.ApprovalColumns + `)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`},
		{&s.insertIdem, `INSERT INTO idempotency (` + rowscan.IdempotencyColumns + `)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (caller, key) DO NOTHING`},
	} {
		st, err := w.PrepareContext(ctx, p.text)
		if err != nil {
			return fail(fmt.Errorf("cannot open audit store at %s: prepare statement: %w", path, err))
		}
		*p.dst = st
	}
	s.log.Info().Str("path", path).Int("schema_version", version).Str("synchronous", strings.ToLower(syncMode)).Msg("audit store open")
	return s, nil
}

// prepareFile creates the directory (0700) and the database file (0600) so
// that SQLite's WAL and shared-memory files inherit the file's mode.
func prepareFile(path string, log zerolog.Logger) error {
	wrap := func(err error) error {
		return fmt.Errorf("cannot open audit store at %s: %w: check the --data directory", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return wrap(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return wrap(err)
	}
	fi, err := f.Stat()
	_ = f.Close()
	if err != nil {
		return wrap(err)
	}
	if !fi.Mode().IsRegular() {
		return wrap(errors.New("not a regular file"))
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return wrap(fmt.Errorf("restrict permissions to 0600: %w", err))
		}
		log.Warn().Str("path", path).Str("was", fi.Mode().Perm().String()).Msg("audit store file was readable by others: permissions set to 0600")
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Head returns the seq and hash of the newest audit event (0 and
// audit.GenesisHash when there is none), read from disk.
func (s *Store) Head(ctx context.Context) (audit.Head, error) {
	h := audit.Head{Hash: audit.GenesisHash}
	err := s.r.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return audit.Head{}, fmt.Errorf("read audit head from %s: %w", s.path, err)
	}
	return h, nil
}

// Commit applies the batches in one transaction, in order: for each batch,
// its events are sealed into the chain and inserted, then its intents and
// tasks are upserted, then its call counts are added, then its leases are
// upserted and its lease revocations applied, then its approvals are
// inserted, its approval changes applied and its idempotency records
// inserted. On success every event has Seq, PrevHash and Hash set. Events
// without an ID get one (ids.New("evt")) and events without a Time get the
// commit time. On failure nothing is written and the events' Seq, PrevHash
// and Hash are cleared. A taken approval id or idempotency key, or an
// approval change whose guard does not hold, fails the transaction with an
// error wrapping store.ErrConflict.
func (s *Store) Commit(ctx context.Context, batches []*store.Batch) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("commit to audit store %s: the store is closed", s.path)
	}
	if err := rowscan.Validate(batches); err != nil {
		return err
	}

	var sealed []*audit.Event
	defer func() {
		if err != nil {
			s.head.valid = false
			for _, ev := range sealed {
				ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
			}
		}
	}()

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin audit transaction on %s: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()

	if !s.head.valid {
		s.head.seq, s.head.hash = 0, audit.GenesisHash
		err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&s.head.seq, &s.head.hash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read audit chain head from %s: %w", s.path, err)
		}
		err = nil
		s.head.valid = true
	}
	seq, prev := s.head.seq, s.head.hash

	insertEvent := tx.StmtContext(ctx, s.insertEvent)
	upsertIntent := tx.StmtContext(ctx, s.upsertIntnt)
	upsertTask := tx.StmtContext(ctx, s.upsertTask)
	addCount := tx.StmtContext(ctx, s.addCount)
	upsertLease := tx.StmtContext(ctx, s.upsertLease)
	revokeLease := tx.StmtContext(ctx, s.revokeLease)
	insertApproval := tx.StmtContext(ctx, s.insertApproval)
	insertIdem := tx.StmtContext(ctx, s.insertIdem)
	now := time.Now().UTC()

	for bi, b := range batches {
		for _, ev := range b.Events {
			if ev.ID == "" {
				ev.ID = ids.New("evt")
			}
			if ev.Time.IsZero() {
				ev.Time = now
			}
			ev.Seq = seq + 1
			sealed = append(sealed, ev)
			body, err := audit.Seal(ev, prev)
			if err != nil {
				return fmt.Errorf("commit: batch %d: %w", bi, err)
			}
			if _, err := insertEvent.ExecContext(ctx, ev.Seq, ev.ID, ev.Time.UTC().Format(timeFormat), ev.Type,
				ev.TaskID, ev.IntentID, ev.Caller, rowscan.EventTool(ev), rowscan.EventEffect(ev), body, ev.PrevHash, ev.Hash); err != nil {
				return fmt.Errorf("commit: insert audit event %d (%s): %w", ev.Seq, ev.ID, err)
			}
			seq, prev = ev.Seq, ev.Hash
		}
		for _, in := range b.Intents {
			if _, err := upsertIntent.ExecContext(ctx, in.ID, in.TaskID, in.Caller, in.Tool, in.Status,
				fmtTime(in.Created), in.Outcome); err != nil {
				return fmt.Errorf("commit: store intent %s: %w", in.ID, err)
			}
		}
		for _, t := range b.Tasks {
			labels, err := rowscan.TaskLabels(t)
			if err != nil {
				return err
			}
			if _, err := upsertTask.ExecContext(ctx, t.ID, t.Caller, t.Purpose, t.Sensitivity, labels,
				fmtTime(t.StartedAt), fmtTime(t.ExpiresAt), fmtTime(t.EndedAt), t.CallCount); err != nil {
				return fmt.Errorf("commit: store task %s: %w", t.ID, err)
			}
		}
		for id, n := range b.CallCounts {
			res, err := addCount.ExecContext(ctx, n, id)
			if err != nil {
				return fmt.Errorf("commit: add call count to task %s: %w", id, err)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return fmt.Errorf("commit: add call count to task %s: no such task: store the task before counting its calls", id)
			}
		}
		for _, l := range b.Leases {
			if _, err := upsertLease.ExecContext(ctx, l.ID, l.TaskID, l.Tool, l.Source, l.Credential,
				fmtTime(l.IssuedAt), fmtTime(l.ExpiresAt), fmtTime(l.RevokedAt), l.Ref); err != nil {
				return fmt.Errorf("commit: store lease %s: %w", l.ID, err)
			}
		}
		for id, at := range b.RevokedLeases {
			res, err := revokeLease.ExecContext(ctx, fmtTime(at), id)
			if err != nil {
				return fmt.Errorf("commit: revoke lease %s: %w", id, err)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return fmt.Errorf("commit: revoke lease %s: no such lease: store the lease before revoking it", id)
			}
		}
		for _, a := range b.Approvals {
			args, err := rowscan.ApprovalArgs(a)
			if err != nil {
				return err
			}
			res, err := insertApproval.ExecContext(ctx, args...)
			if err != nil {
				return fmt.Errorf("commit: insert approval %s: %w", a.ID, err)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return fmt.Errorf("commit: insert approval %s: %w: the approval id is taken", a.ID, store.ErrConflict)
			}
		}
		for _, c := range b.ApprovalChanges {
			set, args := rowscan.ChangeSet(c, sqlitePH, 1)
			where, wargs := rowscan.ChangeGuard(c, sqlitePH, 1)
			res, err := tx.ExecContext(ctx, `UPDATE approvals SET `+set+` WHERE `+where, append(args, wargs...)...)
			if err != nil {
				return fmt.Errorf("commit: change approval %s to %s: %w", c.ID, c.To, err)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				var current *string
				if err := tx.QueryRowContext(ctx, `SELECT state FROM approvals WHERE id = ?`, c.ID).Scan(&current); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("commit: change approval %s to %s: %w: read its state: %w", c.ID, c.To, store.ErrConflict, err)
				}
				return rowscan.ConflictError(c, current)
			}
		}
		for _, r := range b.Idempotency {
			res, err := insertIdem.ExecContext(ctx, r.Caller, r.Key, r.IntentID, r.TaskID, r.Tool, r.ArgsSHA256, fmtTime(r.CreatedAt), r.Executor)
			if err != nil {
				return fmt.Errorf("commit: insert idempotency key %q of %s: %w", r.Key, r.Caller, err)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				var taken string
				_ = tx.QueryRowContext(ctx, `SELECT intent_id FROM idempotency WHERE caller = ? AND key = ?`, r.Caller, r.Key).Scan(&taken)
				return fmt.Errorf("commit: idempotency key %q of %s: %w: it is bound to intent %q", r.Key, r.Caller, store.ErrConflict, taken)
			}
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit audit transaction on %s: %w", s.path, err)
	}
	s.head.seq, s.head.hash = seq, prev
	return nil
}

func sqlitePH(int) string { return "?" }

// Task returns a task by id, or an error wrapping store.ErrNotFound.
func (s *Store) Task(ctx context.Context, id string) (*store.Task, error) {
	t, err := rowscan.Task(s.r.QueryRowContext(ctx, `SELECT `+rowscan.TaskColumns+` FROM tasks WHERE id = ?`, id))
	return rowscan.One(t, err, sql.ErrNoRows, fmt.Sprintf("task %q", id))
}

// Intent returns an intent by id, or an error wrapping store.ErrNotFound.
func (s *Store) Intent(ctx context.Context, id string) (*store.Intent, error) {
	in, err := rowscan.Intent(s.r.QueryRowContext(ctx, `SELECT `+rowscan.IntentColumns+` FROM intents WHERE id = ?`, id))
	return rowscan.One(in, err, sql.ErrNoRows, fmt.Sprintf("intent %q", id))
}

// AuditRecords returns up to limit records with Seq > after, in seq order.
// limit must be positive; it is clamped to MaxPage.
func (s *Store) AuditRecords(ctx context.Context, after int64, limit int) ([]store.Record, error) {
	limit, err := rowscan.Page("read audit records", "limit", limit, MaxPage)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+rowscan.RecordColumns+` FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit records after %d: %w", after, err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "audit records", rowscan.Record)
}

// AuditTail returns the last n records, in seq order. n must be positive;
// it is clamped to MaxPage.
func (s *Store) AuditTail(ctx context.Context, n int) ([]store.Record, error) {
	n, err := rowscan.Page("read audit tail", "n", n, MaxPage)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+rowscan.RecordColumns+` FROM audit_events ORDER BY seq DESC LIMIT ?`, n)
	if err != nil {
		return nil, fmt.Errorf("read audit tail: %w", err)
	}
	defer rows.Close()
	out, err := rowscan.Collect(rows, "audit tail", rowscan.Record)
	slices.Reverse(out)
	return out, err
}

// AuditFiltered returns up to limit records with Seq > after that match f
// (every non-empty field must equal the event's task id, caller, tool name
// or decision effect), in seq order. limit must be positive; it is clamped
// to MaxPage.
func (s *Store) AuditFiltered(ctx context.Context, after int64, f store.AuditFilter, limit int) ([]store.Record, error) {
	limit, err := rowscan.Page("read audit records", "limit", limit, MaxPage)
	if err != nil {
		return nil, err
	}
	where, args := rowscan.AuditWhere(f, sqlitePH, 2)
	rows, err := s.r.QueryContext(ctx, `SELECT `+rowscan.RecordColumns+` FROM audit_events WHERE seq > ?`+where+` ORDER BY seq LIMIT ?`,
		append(append([]any{after}, args...), limit)...)
	if err != nil {
		return nil, fmt.Errorf("read filtered audit records after %d: %w", after, err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "audit records", rowscan.Record)
}

// OpenLeases returns the leases of taskID that are not revoked, oldest
// first (at most MaxPage).
func (s *Store) OpenLeases(ctx context.Context, taskID string) ([]*store.Lease, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+rowscan.LeaseColumns+` FROM leases l
		WHERE l.task_id = ? AND l.revoked_at IS NULL ORDER BY l.issued_at, l.id LIMIT ?`, taskID, MaxPage)
	if err != nil {
		return nil, fmt.Errorf("read open leases of task %q: %w", taskID, err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "leases", rowscan.Lease)
}

// LeasesDue returns up to limit leases, oldest first, that are not revoked
// and are due for revocation at now: the lease or its task has expired, the
// task has ended, or the task is not in the store. limit must be positive;
// it is clamped to MaxPage.
func (s *Store) LeasesDue(ctx context.Context, now time.Time, limit int) ([]*store.Lease, error) {
	limit, err := rowscan.Page("read leases due", "limit", limit, MaxPage)
	if err != nil {
		return nil, err
	}
	at := now.UTC().Format(timeFormat)
	rows, err := s.r.QueryContext(ctx, `SELECT `+rowscan.LeaseColumns+` FROM leases l LEFT JOIN tasks t ON t.id = l.task_id
		WHERE l.revoked_at IS NULL
		  AND (l.expires_at <= ? OR t.id IS NULL OR t.ended_at IS NOT NULL OR (t.expires_at IS NOT NULL AND t.expires_at <= ?))
		ORDER BY l.issued_at, l.id LIMIT ?`, at, at, limit)
	if err != nil {
		return nil, fmt.Errorf("read leases due: %w", err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "leases", rowscan.Lease)
}

// Approval returns an approval by id, or an error wrapping
// store.ErrNotFound.
func (s *Store) Approval(ctx context.Context, id string) (*store.Approval, error) {
	a, err := rowscan.Approval(s.r.QueryRowContext(ctx, `SELECT `+rowscan.ApprovalColumns+` FROM approvals WHERE id = ?`, id))
	return rowscan.One(a, err, sql.ErrNoRows, fmt.Sprintf("approval %q", id))
}

// Approvals returns the approvals that match f, newest first (by creation
// time, then id). f.Limit defaults to store.DefaultApprovalsLimit and is
// clamped to store.MaxApprovalsLimit; an unknown state in f.States is an
// error.
func (s *Store) Approvals(ctx context.Context, f store.ApprovalFilter) ([]*store.Approval, error) {
	where, args, limit, err := rowscan.ApprovalWhere(f, sqlitePH, 1)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+rowscan.ApprovalColumns+` FROM approvals`+where+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("read approvals: %w", err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "approvals", rowscan.Approval)
}

// ApprovalsDue returns up to limit approvals, oldest first, that need an
// executor's attention at now: pending ones whose expiry is at or before
// now, approved ones (not yet claimed), and claimed ones whose claim is at
// least staleClaim old. limit must be positive (clamped to MaxPage) and
// staleClaim positive.
func (s *Store) ApprovalsDue(ctx context.Context, now time.Time, staleClaim time.Duration, limit int) ([]*store.Approval, error) {
	q, args, err := rowscan.ApprovalsDueQuery(now, staleClaim, limit, MaxPage, sqlitePH)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read approvals due: %w", err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "approvals due", rowscan.Approval)
}

// Idempotency returns the record of (caller, key), or an error wrapping
// store.ErrNotFound.
func (s *Store) Idempotency(ctx context.Context, caller, key string) (*store.IdempotencyRecord, error) {
	r, err := rowscan.Idempotency(s.r.QueryRowContext(ctx, `SELECT `+rowscan.IdempotencyColumns+` FROM idempotency WHERE caller = ? AND key = ?`, caller, key))
	return rowscan.One(r, err, sql.ErrNoRows, fmt.Sprintf("idempotency key %q of %s", key, caller))
}

// PurgeIdempotency deletes up to limit idempotency records created before
// before, oldest first, and returns how many it deleted. Records without a
// creation time are kept. limit must be positive; it is clamped to MaxPage.
func (s *Store) PurgeIdempotency(ctx context.Context, before time.Time, limit int) (int, error) {
	limit, err := rowscan.Page("purge idempotency records", "limit", limit, MaxPage)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("purge idempotency records in %s: the store is closed", s.path)
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM idempotency WHERE (caller, key) IN
		(SELECT caller, key FROM idempotency WHERE created_at < ? ORDER BY created_at LIMIT ?)`,
		before.UTC().Format(timeFormat), limit)
	if err != nil {
		return 0, fmt.Errorf("purge idempotency records in %s: %w", s.path, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge idempotency records in %s: count deleted rows: %w", s.path, err)
	}
	return int(n), nil
}

// Close closes the store. Commits in progress finish first.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeAll()
}

func (s *Store) closeAll() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.insertEvent, s.upsertIntnt, s.upsertTask, s.addCount, s.upsertLease, s.revokeLease, s.insertApproval, s.insertIdem} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close audit store %s: %w", s.path, err)
	}
	return nil
}

func fmtTime(t time.Time) any { return rowscan.FmtTime(t) }
