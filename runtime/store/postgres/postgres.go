// Package postgres is the PostgreSQL implementation of store.Store (through
// github.com/jackc/pgx/v5). It keeps the same tasks, intent outcomes,
// credential leases and hash-chained audit log as the SQLite store, with the
// same semantics, in a database that several executors may share.
//
// Every Commit runs in one transaction that first locks the single row of
// audit_head (SELECT ... FOR UPDATE), reads the chain head from it, seals
// the batch's events onto it and writes the new head before committing. So
// writers, in this process or in other executors, take turns: the chain
// never forks, and the seq primary key would reject a fork anyway. The
// statements of a Commit are pipelined in one round trip (pgx.Batch). Pair
// the store with store.Committer to share each transaction among many
// concurrent intents.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/internal/rowscan"
)

// timeFormat is fixed-width RFC 3339 in UTC, so stored times sort as text
// (the time columns use the "C" collation) and keep nanoseconds.
const timeFormat = rowscan.TimeFormat

// MaxPage bounds the number of records one AuditRecords or AuditTail call
// returns, and the leases one OpenLeases or LeasesDue call returns; larger
// requests are clamped to it.
const MaxPage = store.MaxPage

// Options configures Open. The zero value is valid.
type Options struct {
	// MaxConns is the size of the connection pool. Default 8.
	MaxConns int32
	// ConnectTimeout bounds each new connection, including the first one
	// made by Open. Default 10s. A connect_timeout in the URL is overridden.
	ConnectTimeout time.Duration
	// Logger receives open and migration messages. The zero value logs
	// nothing, like zerolog.Nop().
	Logger zerolog.Logger
}

// Store is a store.Store in a PostgreSQL database (the tables live in the
// first schema of the connection's search_path; set search_path in the URL
// to keep several stores in one database). It is safe for concurrent use,
// and several Stores, in one or several processes, may share a database.
type Store struct {
	where string // host:port/database, without credentials, for messages
	log   zerolog.Logger
	pool  *pgxpool.Pool

	mu     sync.RWMutex // guards closed: Commit holds it shared, Close exclusively
	closed bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the PostgreSQL database at url (postgres://user@host:port/db?...,
// or a key=value connection string), applies pending schema migrations and
// refuses a schema newer than this binary knows.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if url == "" {
		return nil, errors.New("cannot open audit store: the PostgreSQL URL is empty: pass --store postgres://user@host:port/database")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors redact the password.
		return nil, fmt.Errorf("cannot open audit store: the PostgreSQL URL is not valid: %w: use postgres://user@host:port/database", err)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 8
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	where := fmt.Sprintf("postgres://%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	if sp := cfg.ConnConfig.RuntimeParams["search_path"]; sp != "" {
		where += "?search_path=" + sp
	}

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot open audit store at %s: %w: check the --store URL", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot open audit store at %s: %w: check that PostgreSQL is running there and the URL's user, password and database", where, err)
	}
	version, err := migrate(ctx, pool, where)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{where: where, log: opts.Logger, pool: pool}
	s.log.Info().Str("store", where).Int("schema_version", version).Msg("audit store open")
	return s, nil
}

// Where returns the database the store is connected to, as
// postgres://host:port/database, without credentials.
func (s *Store) Where() string { return s.where }

// Head returns the seq and hash of the newest audit event (0 and
// audit.GenesisHash when there is none), read from the database.
func (s *Store) Head(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	if err := s.pool.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id`).Scan(&h.Seq, &h.Hash); err != nil {
		return audit.Head{}, fmt.Errorf("read audit head from %s: %w", s.where, err)
	}
	return h, nil
}

// queued is one statement of a Commit's pipeline: what it does, for error
// messages, and how its result is checked: by default it must succeed, and
// when one is set it must touch exactly one row; a statement with check
// returns rows that check reads instead.
type queued struct {
	what  string
	one   error // when not nil, the error if the row count is not 1
	check func(pgx.Row) error
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("commit to audit store %s: the store is closed", s.where)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit to audit store %s: %w", s.where, err)
	}
	if err := rowscan.Validate(batches); err != nil {
		return err
	}

	var sealed []*audit.Event
	defer func() {
		if err != nil {
			for _, ev := range sealed {
				ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
			}
		}
	}()

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin audit transaction on %s: %w", s.where, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()

	// The chain head lock: held until this transaction ends. It also
	// serializes the guards (approval changes, idempotency keys) of
	// executors that share the database.
	var seq int64
	var prev string
	if err = tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id FOR UPDATE`).Scan(&seq, &prev); err != nil {
		return fmt.Errorf("lock audit chain head on %s: %w", s.where, err)
	}
	headSeq := seq

	var (
		b    pgx.Batch
		what []queued
	)
	q := func(w queued, sql string, args ...any) {
		b.Queue(sql, args...)
		what = append(what, w)
	}
	now := time.Now().UTC()
	for bi, bt := range batches {
		for _, ev := range bt.Events {
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
			q(queued{what: fmt.Sprintf("insert audit event %d (%s)", ev.Seq, ev.ID)},
				`INSERT INTO audit_events (seq, id, time, type, task_id, intent_id, caller, tool, effect, body, prev_hash, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				ev.Seq, ev.ID, ev.Time.UTC().Format(timeFormat), ev.Type, ev.TaskID, ev.IntentID, ev.Caller,
				rowscan.EventTool(ev), rowscan.EventEffect(ev), body, ev.PrevHash, ev.Hash)
			seq, prev = ev.Seq, ev.Hash
		}
		for _, in := range bt.Intents {
			q(queued{what: "store intent " + in.ID},
				`INSERT INTO intents (id, task_id, caller, tool, status, created, outcome)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, caller = excluded.caller, tool = excluded.tool,
					status = excluded.status, created = excluded.created, outcome = excluded.outcome`,
				in.ID, in.TaskID, in.Caller, in.Tool, in.Status, fmtTime(in.Created), in.Outcome)
		}
		for _, t := range bt.Tasks {
			labels, err := rowscan.TaskLabels(t)
			if err != nil {
				return err
			}
			q(queued{what: "store task " + t.ID},
				`INSERT INTO tasks (id, caller, purpose, sensitivity, labels, started_at, expires_at, ended_at, call_count)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
				ON CONFLICT (id) DO UPDATE SET caller = excluded.caller, purpose = excluded.purpose,
					sensitivity = excluded.sensitivity, labels = excluded.labels, started_at = excluded.started_at,
					expires_at = excluded.expires_at, ended_at = excluded.ended_at`,
				t.ID, t.Caller, t.Purpose, t.Sensitivity, labels, fmtTime(t.StartedAt), fmtTime(t.ExpiresAt), fmtTime(t.EndedAt), t.CallCount)
		}
		for id, n := range bt.CallCounts {
			q(queued{what: "add call count to task " + id,
				one: fmt.Errorf("commit: add call count to task %s: no such task: store the task before counting its calls", id)},
				`UPDATE tasks SET call_count = call_count + $1 WHERE id = $2`, n, id)
		}
		for _, l := range bt.Leases {
			q(queued{what: "store lease " + l.ID},
				`INSERT INTO leases (id, task_id, tool, source, credential, issued_at, expires_at, revoked_at, ref)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
				ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, tool = excluded.tool, source = excluded.source,
					credential = excluded.credential, issued_at = excluded.issued_at, expires_at = excluded.expires_at,
					revoked_at = coalesce(leases.revoked_at, excluded.revoked_at), ref = excluded.ref`,
				l.ID, l.TaskID, l.Tool, l.Source, l.Credential, fmtTime(l.IssuedAt), fmtTime(l.ExpiresAt), fmtTime(l.RevokedAt), l.Ref)
		}
		for id, at := range bt.RevokedLeases {
			q(queued{what: "revoke lease " + id,
				one: fmt.Errorf("commit: revoke lease %s: no such lease: store the lease before revoking it", id)},
				`UPDATE leases SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2`, fmtTime(at), id)
		}
		for _, a := range bt.Approvals {
			args, err := rowscan.ApprovalArgs(a)
			if err != nil {
				return err
			}
			q(queued{what: "insert approval " + a.ID,
				one: fmt.Errorf("commit: insert approval %s: %w: the approval id is taken", a.ID, store.ErrConflict)},
				`INSERT INTO approvals (`+rowscan.ApprovalColumns+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
				ON CONFLICT (id) DO NOTHING`, args...)
		}
		for _, c := range bt.ApprovalChanges {
			set, args := rowscan.ChangeSet(c, pgPH, 1)
			where, wargs := rowscan.ChangeGuard(c, pgPH, 1+len(args))
			args = append(args, wargs...)
			// The outer SELECT reads the statement's snapshot, from before
			// the UPDATE: the state that made a guard fail.
			q(queued{what: fmt.Sprintf("change approval %s to %s", c.ID, c.To), check: func(r pgx.Row) error {
				var (
					n       int64
					current *string
				)
				if err := r.Scan(&n, &current); err != nil {
					return fmt.Errorf("commit: change approval %s to %s: %w", c.ID, c.To, err)
				}
				if n != 1 {
					return rowscan.ConflictError(c, current)
				}
				return nil
			}},
				`WITH u AS (UPDATE approvals SET `+set+` WHERE `+where+` RETURNING 1)
				SELECT (SELECT count(*) FROM u), (SELECT state FROM approvals WHERE id = $`+fmt.Sprint(len(args)+1)+`)`,
				append(args, c.ID)...)
		}
		for _, r := range bt.Idempotency {
			q(queued{what: fmt.Sprintf("insert idempotency key %q of %s", r.Key, r.Caller), check: func(row pgx.Row) error {
				var (
					n     int64
					taken *string
				)
				if err := row.Scan(&n, &taken); err != nil {
					return fmt.Errorf("commit: insert idempotency key %q of %s: %w", r.Key, r.Caller, err)
				}
				if n != 1 {
					bound := ""
					if taken != nil {
						bound = *taken
					}
					return fmt.Errorf("commit: idempotency key %q of %s: %w: it is bound to intent %q", r.Key, r.Caller, store.ErrConflict, bound)
				}
				return nil
			}},
				`WITH i AS (INSERT INTO idempotency (`+rowscan.IdempotencyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
					ON CONFLICT (caller, key) DO NOTHING RETURNING 1)
				SELECT (SELECT count(*) FROM i), (SELECT intent_id FROM idempotency WHERE caller = $1 AND key = $2)`,
				r.Caller, r.Key, r.IntentID, r.TaskID, r.Tool, r.ArgsSHA256, fmtTime(r.CreatedAt), r.Executor)
		}
	}
	if seq != headSeq {
		q(queued{what: "advance audit chain head"}, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id`, seq, prev)
	}
	if len(what) > 0 {
		if err = s.run(ctx, tx, &b, what); err != nil {
			return err
		}
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit audit transaction on %s: %w", s.where, err)
	}
	return nil
}

func pgPH(n int) string { return "$" + strconv.Itoa(n) }

// run sends the pipeline and checks each statement's result in order.
func (s *Store) run(ctx context.Context, tx pgx.Tx, b *pgx.Batch, what []queued) (err error) {
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("commit to audit store %s: %w", s.where, cerr)
		}
	}()
	for _, w := range what {
		if w.check != nil {
			if err := w.check(br.QueryRow()); err != nil {
				return err
			}
			continue
		}
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("commit: %s: %w", w.what, err)
		}
		if w.one != nil && tag.RowsAffected() != 1 {
			return w.one
		}
	}
	return nil
}

// Task returns a task by id, or an error wrapping store.ErrNotFound.
func (s *Store) Task(ctx context.Context, id string) (*store.Task, error) {
	t, err := rowscan.Task(s.pool.QueryRow(ctx, `SELECT `+rowscan.TaskColumns+` FROM tasks WHERE id = $1`, id))
	return rowscan.One(t, err, pgx.ErrNoRows, fmt.Sprintf("task %q", id))
}

// Intent returns an intent by id, or an error wrapping store.ErrNotFound.
func (s *Store) Intent(ctx context.Context, id string) (*store.Intent, error) {
	in, err := rowscan.Intent(s.pool.QueryRow(ctx, `SELECT `+rowscan.IntentColumns+` FROM intents WHERE id = $1`, id))
	return rowscan.One(in, err, pgx.ErrNoRows, fmt.Sprintf("intent %q", id))
}

// AuditRecords returns up to limit records with Seq > after, in seq order.
// limit must be positive; it is clamped to MaxPage.
func (s *Store) AuditRecords(ctx context.Context, after int64, limit int) ([]store.Record, error) {
	limit, err := rowscan.Page("read audit records", "limit", limit, MaxPage)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+rowscan.RecordColumns+` FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
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
	rows, err := s.pool.Query(ctx, `SELECT `+rowscan.RecordColumns+` FROM audit_events ORDER BY seq DESC LIMIT $1`, n)
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
	where, args := rowscan.AuditWhere(f, pgPH, 2)
	rows, err := s.pool.Query(ctx, `SELECT `+rowscan.RecordColumns+` FROM audit_events WHERE seq > $1`+where+
		` ORDER BY seq LIMIT `+pgPH(len(args)+2), append(append([]any{after}, args...), limit)...)
	if err != nil {
		return nil, fmt.Errorf("read filtered audit records after %d: %w", after, err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "audit records", rowscan.Record)
}

// OpenLeases returns the leases of taskID that are not revoked, oldest
// first (at most MaxPage).
func (s *Store) OpenLeases(ctx context.Context, taskID string) ([]*store.Lease, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rowscan.LeaseColumns+` FROM leases l
		WHERE l.task_id = $1 AND l.revoked_at IS NULL ORDER BY l.issued_at NULLS FIRST, l.id COLLATE "C" LIMIT $2`, taskID, MaxPage)
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
	rows, err := s.pool.Query(ctx, `SELECT `+rowscan.LeaseColumns+` FROM leases l LEFT JOIN tasks t ON t.id = l.task_id
		WHERE l.revoked_at IS NULL
		  AND (l.expires_at <= $1 OR t.id IS NULL OR t.ended_at IS NOT NULL OR (t.expires_at IS NOT NULL AND t.expires_at <= $1))
		ORDER BY l.issued_at NULLS FIRST, l.id COLLATE "C" LIMIT $2`, at, limit)
	if err != nil {
		return nil, fmt.Errorf("read leases due: %w", err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "leases", rowscan.Lease)
}

// Approval returns an approval by id, or an error wrapping
// store.ErrNotFound.
func (s *Store) Approval(ctx context.Context, id string) (*store.Approval, error) {
	a, err := rowscan.Approval(s.pool.QueryRow(ctx, `SELECT `+rowscan.ApprovalColumns+` FROM approvals WHERE id = $1`, id))
	return rowscan.One(a, err, pgx.ErrNoRows, fmt.Sprintf("approval %q", id))
}

// Approvals returns the approvals that match f, newest first (by creation
// time, then id). f.Limit defaults to store.DefaultApprovalsLimit and is
// clamped to store.MaxApprovalsLimit; an unknown state in f.States is an
// error.
func (s *Store) Approvals(ctx context.Context, f store.ApprovalFilter) ([]*store.Approval, error) {
	where, args, limit, err := rowscan.ApprovalWhere(f, pgPH, 1)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+rowscan.ApprovalColumns+` FROM approvals`+where+
		` ORDER BY created_at DESC NULLS LAST, id COLLATE "C" DESC LIMIT `+pgPH(len(args)+1), append(args, limit)...)
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
	q, args, err := rowscan.ApprovalsDueQuery(now, staleClaim, limit, MaxPage, pgPH)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read approvals due: %w", err)
	}
	defer rows.Close()
	return rowscan.Collect(rows, "approvals due", rowscan.Approval)
}

// Idempotency returns the record of (caller, key), or an error wrapping
// store.ErrNotFound.
func (s *Store) Idempotency(ctx context.Context, caller, key string) (*store.IdempotencyRecord, error) {
	r, err := rowscan.Idempotency(s.pool.QueryRow(ctx, `SELECT `+rowscan.IdempotencyColumns+` FROM idempotency WHERE caller = $1 AND key = $2`, caller, key))
	return rowscan.One(r, err, pgx.ErrNoRows, fmt.Sprintf("idempotency key %q of %s", key, caller))
}

// PurgeIdempotency deletes up to limit idempotency records created before
// before, oldest first, and returns how many it deleted. Records without a
// creation time are kept. Rows another transaction holds (a concurrent
// purge by another executor) are skipped, not waited for. limit must be
// positive; it is clamped to MaxPage.
func (s *Store) PurgeIdempotency(ctx context.Context, before time.Time, limit int) (int, error) {
	limit, err := rowscan.Page("purge idempotency records", "limit", limit, MaxPage)
	if err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("purge idempotency records in %s: the store is closed", s.where)
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE (caller, key) IN
		(SELECT caller, key FROM idempotency WHERE created_at < $1
		 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		before.UTC().Format(timeFormat), limit)
	if err != nil {
		return 0, fmt.Errorf("purge idempotency records in %s: %w", s.where, err)
	}
	return int(tag.RowsAffected()), nil
}

// Close closes the store's connections. Commits in progress finish first.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.pool.Close()
	return nil
}

func fmtTime(t time.Time) any { return rowscan.FmtTime(t) }
