package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one embedded schema step.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

// loadMigrations reads the embedded migrations and checks that their
// versions run 1, 2, 3, ... without a gap.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("embedded migration %q: name must be NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: m[2], sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("embedded migrations: expected version %d, found %04d_%s.sql: versions must be contiguous from 1", i+1, m.version, m.name)
		}
	}
	return ms, nil
}

// SchemaVersion is the newest schema version this binary knows.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate brings the schema to the newest known version in one transaction
// and refuses a schema newer than this binary knows. A transaction-scoped
// advisory lock keyed by the current schema serializes executors that open
// the same database at the same time, so each migration is applied once.
func migrate(ctx context.Context, pool *pgxpool.Pool, where string) (int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return 0, err
	}
	known := 0
	if len(ms) > 0 {
		known = ms[len(ms)-1].version
	}
	fail := func(what string, err error) (int, error) {
		return 0, fmt.Errorf("cannot open audit store at %s: %s: %w", where, what, err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fail("begin migration", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('airlock.migrate.' || current_schema()))`); err != nil {
		return fail("lock for migration (check that the database has a schema on the search_path the role may create tables in)", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fail("create schema_migrations", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fail("read schema version", err)
	}
	if current > known {
		return 0, fmt.Errorf("cannot open audit store at %s: its schema version is %d but this airlock binary knows only versions up to %d: run the newer airlock that wrote it (downgrades are not supported)", where, current, known)
	}
	for _, m := range ms[current:] {
		// Simple protocol: a migration file holds several statements.
		if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fail(fmt.Sprintf("apply migration %04d_%s", m.version, m.name), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.name, time.Now().UTC().Format(timeFormat)); err != nil {
			return fail(fmt.Sprintf("record migration %04d_%s", m.version, m.name), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("commit migrations", err)
	}
	return known, nil
}
