package storetest

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/ids"
)

// PostgresBaseURL returns AIRLOCK_POSTGRES_URL. Without it the test is skipped,
// except under CI=true, where a missing database is a failure: start one
// with scripts/postgres.sh start DIR.
func PostgresBaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("AIRLOCK_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AIRLOCK_POSTGRES_URL is not set and CI=true: start PostgreSQL with scripts/postgres.sh start DIR and export the URL it prints")
		}
		t.Skip("AIRLOCK_POSTGRES_URL is not set: start PostgreSQL with scripts/postgres.sh start DIR to run the PostgreSQL tests")
	}
	return u
}

// PostgresSchema creates a schema of its own for the test (dropped at cleanup)
// and returns a URL whose search_path is that schema.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := PostgresBaseURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to AIRLOCK_POSTGRES_URL: %v", err)
	}
	defer conn.Close(ctx)
	schema := "t_" + strings.ToLower(strings.ReplaceAll(ids.New("s"), "-", "_"))
	schema = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, schema)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("AIRLOCK_POSTGRES_URL must be a postgres:// URL (%v)", err)
	}
	qv := u.Query()
	qv.Set("search_path", schema)
	u.RawQuery = qv.Encode()
	return u.String()
}
