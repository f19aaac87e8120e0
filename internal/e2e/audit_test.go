package e2e

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// `airlock audit verify` names an edited, a deleted and a reordered event
// of a log the real executor wrote.
func TestAuditVerifyNamesTampering(t *testing.T) {
	cases := []struct {
		name, sql, want string
	}{
		{"edited", `UPDATE audit_events SET body = CAST(replace(body, '"status":"ok"', '"status":"denied"') AS BLOB) WHERE seq = 4`, "event 4 (evt_"},
		{"deleted", `DELETE FROM audit_events WHERE seq = 2`, "event 2 is missing"},
		{"reordered", `UPDATE audit_events SET seq = -1 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = -1`, "reordered"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := devExecutor(t)
			for i := 0; i < 3; i++ {
				wantOK(t, submit(t, x, "json.query", fmt.Sprintf(`{"filter":".","input":%d}`, i)))
			}
			if err := x.Stop(); err != nil {
				t.Fatal(err)
			}
			if r := runCLI(t, "", "audit", "verify", "--data", x.Data); r.code != 0 {
				t.Fatalf("verify before tampering: %d %s %s", r.code, r.stdout, r.stderr)
			}
			db, err := sql.Open("sqlite", filepath.Join(x.Data, "airlock.db"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(c.sql); err != nil {
				t.Fatal(err)
			}
			db.Close()
			r := runCLI(t, "", "audit", "verify", "--data", x.Data)
			if r.code != 1 || !strings.Contains(r.stdout, "BROKEN") || !strings.Contains(r.stdout, c.want) {
				t.Fatalf("verify after %s: exit %d\n%s%s", c.name, r.code, r.stdout, r.stderr)
			}
		})
	}
	// A missing store is a usage error, not an empty chain.
	if r := runCLI(t, "", "audit", "verify", "--data", filepath.Join(t.TempDir(), "nothing")); r.code != 2 || !strings.Contains(r.stderr, "no airlock store") {
		t.Fatalf("verify without a store: %d %s", r.code, r.stderr)
	}
}
