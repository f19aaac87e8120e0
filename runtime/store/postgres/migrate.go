package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/airlock-dev/airlock/runtime/store/internal/migrations"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration = migrations.Migration

func loadMigrations() ([]migration, error) { return migrations.Load(migrationFS, "migrations") }

// SchemaVersion is the newest schema version this binary knows.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
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
		known = ms[len(ms)-1].Version
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
		if _, err := tx.Exec(ctx, m.SQL, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fail(fmt.Sprintf("apply migration %04d_%s", m.Version, m.Name), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.Version, m.Name, time.Now().UTC().Format(timeFormat)); err != nil {
			return fail(fmt.Sprintf("record migration %04d_%s", m.Version, m.Name), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("commit migrations", err)
	}
	return known, nil
}
