package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

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

// migrate brings the database at path to the newest known schema in one
// IMMEDIATE transaction, and refuses a database whose schema is newer than
// this binary knows.
func migrate(ctx context.Context, db *sql.DB, path string) (int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return 0, err
	}
	known := 0
	if len(ms) > 0 {
		known = ms[len(ms)-1].Version
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("cannot open audit store at %s: begin migration: %w", path, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	) STRICT`); err != nil {
		return 0, fmt.Errorf("cannot open audit store at %s: create schema_migrations: %w", path, err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return 0, fmt.Errorf("cannot open audit store at %s: read schema version: %w", path, err)
	}
	if current > known {
		return 0, fmt.Errorf("cannot open audit store at %s: its schema version is %d but this airlock binary knows only versions up to %d: run the newer airlock that wrote it (downgrades are not supported)", path, current, known)
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return 0, fmt.Errorf("cannot open audit store at %s: apply migration %04d_%s: %w", path, m.Version, m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, time.Now().UTC().Format(timeFormat)); err != nil {
			return 0, fmt.Errorf("cannot open audit store at %s: record migration %04d_%s: %w", path, m.Version, m.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("cannot open audit store at %s: commit migrations: %w", path, err)
	}
	return known, nil
}
