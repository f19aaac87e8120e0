// Command sqlitequery is the sqlite.query native tool: read-only SQL over a
// SQLite database file in the task workspace.
//
//	{"database": "data.db", "query": "SELECT name FROM t WHERE id = ?", "params": [1]}
//	-> {"columns": ["name"], "rows": [["ada"]], "truncated": false}
//
// The database is opened read-only and query_only
// (file:...?mode=ro&_pragma=query_only(1)), with ATTACH disabled, so a
// query can neither write nor reach another file; the path must stay in
// the workspace, symbolic links included. Rows and result bytes are
// capped: past a cap the result says truncated. It is a native tool
// (tools/sdk/plugin) because SQLite's engine is a native library: build it
// with `make plugins` (build/plugins/sqlitequery).
package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"modernc.org/sqlite"

	"github.com/airlock-dev/airlock/tools/sdk"
	"github.com/airlock-dev/airlock/tools/sdk/plugin"
)

// Bounds of one query.
const (
	DefaultMaxRows = 1000
	MaxRows        = 10000
	// MaxResultBytes bounds the JSON of the rows, under the manifest's
	// 1MiB output limit.
	MaxResultBytes = 512 << 10
	MaxQueryBytes  = 64 << 10
	MaxParams      = 256
	// sqliteLimitAttached is SQLITE_LIMIT_ATTACHED.
	sqliteLimitAttached = 7
)

// In is the tool's input.
type In struct {
	// Database is the database file, relative to the workspace.
	Database string `json:"database"`
	// Query is one SQL statement that reads.
	Query string `json:"query"`
	// Params are the values of the query's ? placeholders.
	Params []any `json:"params,omitempty"`
	// MaxRows caps the rows returned (default 1000, at most 10000).
	MaxRows int `json:"max_rows,omitempty"`
}

// Out is the tool's result.
type Out struct {
	Columns   []string `json:"columns"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
}

func main() { plugin.Main(query) }

func query(ctx context.Context, in In) (Out, error) {
	ws := plugin.Workspace(ctx)
	if ws == "" {
		return Out{}, sdk.Errorf("no_workspace", "the call has no workspace: run it in a task, with the workspace granted in the manifest")
	}
	if strings.TrimSpace(in.Query) == "" || len(in.Query) > MaxQueryBytes {
		return Out{}, sdk.Errorf("invalid_query", "query must be one SQL statement of 1 to %d bytes", MaxQueryBytes)
	}
	if len(in.Params) > MaxParams {
		return Out{}, sdk.Errorf("invalid_params", "%d params, over the %d allowed", len(in.Params), MaxParams)
	}
	maxRows := in.MaxRows
	switch {
	case maxRows == 0:
		maxRows = DefaultMaxRows
	case maxRows < 0 || maxRows > MaxRows:
		return Out{}, sdk.Errorf("invalid_max_rows", "max_rows %d: give 1 to %d", maxRows, MaxRows)
	}
	path, err := confine(ws, in.Database)
	if err != nil {
		return Out{}, err
	}
	params, err := convertParams(in.Params)
	if err != nil {
		return Out{}, err
	}

	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&_pragma=query_only(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return Out{}, sdk.Errorf("open_failed", "open %s: %w", in.Database, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return Out{}, sdk.Errorf("open_failed", "open %s: %w", in.Database, err)
	}
	defer conn.Close()
	// No ATTACH: a query reads this database and no other file.
	if _, err := sqlite.Limit(conn, sqliteLimitAttached, 0); err != nil {
		return Out{}, sdk.Errorf("internal", "limit ATTACH: %w", err)
	}
	rows, err := conn.QueryContext(ctx, in.Query, params...)
	if err != nil {
		return Out{}, sdk.Errorf("query_failed", "%s", sqlMessage(err))
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return Out{}, sdk.Errorf("query_failed", "%s", sqlMessage(err))
	}
	out := Out{Columns: cols, Rows: [][]any{}}
	size := 0
	for rows.Next() {
		if len(out.Rows) == maxRows {
			out.Truncated = true
			break
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return Out{}, sdk.Errorf("query_failed", "%s", sqlMessage(err))
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			row[i] = jsonValue(v)
		}
		b, err := json.Marshal(row)
		if err != nil {
			return Out{}, sdk.Errorf("internal", "encode a row: %w", err)
		}
		if size+len(b) > MaxResultBytes {
			out.Truncated = true
			break
		}
		size += len(b) + 1
		out.Rows = append(out.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return Out{}, sdk.Errorf("query_failed", "%s", sqlMessage(err))
	}
	return out, nil
}

// confine resolves rel inside the workspace ws, refusing a path that
// leaves it (.., absolute, or through a symbolic link) and anything but a
// regular file.
func confine(ws, rel string) (string, error) {
	switch {
	case rel == "":
		return "", sdk.Errorf("invalid_path", "database is empty: give a path relative to the workspace, like \"data.db\"")
	case strings.ContainsRune(rel, 0) || strings.ContainsRune(rel, '\\'):
		return "", sdk.Errorf("invalid_path", "database %q contains a NUL byte or a backslash", rel)
	case strings.HasPrefix(rel, "/"):
		return "", sdk.Errorf("invalid_path", "database %q is absolute: give a path relative to the workspace", rel)
	}
	for _, e := range strings.Split(rel, "/") {
		if e == ".." {
			return "", sdk.Errorf("invalid_path", "database %q contains \"..\": paths must stay inside the workspace", rel)
		}
	}
	root, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return "", sdk.Errorf("no_workspace", "the workspace is not usable: %w", err)
	}
	p, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", sdk.Errorf("not_found", "database %s does not exist in the workspace", rel)
		}
		return "", sdk.Errorf("invalid_path", "database %s: %w", rel, err)
	}
	if p != root && !strings.HasPrefix(p, root+string(filepath.Separator)) {
		return "", sdk.Errorf("invalid_path", "database %s leads outside the workspace through a symbolic link", rel)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", sdk.Errorf("invalid_path", "database %s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return "", sdk.Errorf("invalid_path", "database %s is not a regular file", rel)
	}
	return p, nil
}

// convertParams turns JSON values into SQL arguments.
func convertParams(ps []any) ([]any, error) {
	out := make([]any, len(ps))
	for i, p := range ps {
		switch v := p.(type) {
		case nil, string, bool:
			out[i] = v
		case json.Number:
			if n, err := v.Int64(); err == nil {
				out[i] = n
			} else if f, err := v.Float64(); err == nil {
				out[i] = f
			} else {
				return nil, sdk.Errorf("invalid_params", "params[%d] %s is not a number SQLite can hold", i, v)
			}
		default:
			return nil, sdk.Errorf("invalid_params", "params[%d] is an array or object: give a string, number, boolean or null", i)
		}
	}
	return out, nil
}

// jsonValue turns a scanned SQLite value into JSON: text stays a string, a
// blob becomes {"base64": ...}, a non-finite float a string.
func jsonValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return map[string]string{"base64": base64.StdEncoding.EncodeToString(x)}
	case string:
		if !utf8.ValidString(x) {
			return map[string]string{"base64": base64.StdEncoding.EncodeToString([]byte(x))}
		}
		return x
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Sprint(x)
		}
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		return x
	}
}

// sqlMessage is SQLite's message without the driver's prefix.
func sqlMessage(err error) string {
	msg := err.Error()
	if len(msg) > 1024 {
		msg = msg[:1024] + "..."
	}
	return msg
}
