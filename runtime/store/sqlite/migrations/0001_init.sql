-- 0001_init: tasks, intent outcomes and the hash-chained audit log.
-- Times are TEXT in UTC, fixed-width RFC 3339 with nanoseconds
-- (2006-01-02T15:04:05.000000000Z), so they sort as text; NULL means unset.

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    caller      TEXT NOT NULL,
    purpose     TEXT NOT NULL DEFAULT '',
    sensitivity TEXT NOT NULL DEFAULT '',
    labels      TEXT NOT NULL DEFAULT '{}', -- JSON object of strings
    started_at  TEXT,
    expires_at  TEXT,
    ended_at    TEXT,
    call_count  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE intents (
    id      TEXT PRIMARY KEY,
    task_id TEXT NOT NULL DEFAULT '',
    caller  TEXT NOT NULL DEFAULT '',
    tool    TEXT NOT NULL DEFAULT '',
    status  TEXT NOT NULL DEFAULT '',
    created TEXT,
    outcome BLOB
) STRICT;

-- body is the exact canonical JSON that hash (hex SHA-256) covers; the other
-- columns are copies for querying and are not trusted by verification.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    id        TEXT NOT NULL,
    time      TEXT NOT NULL,
    type      TEXT NOT NULL,
    task_id   TEXT NOT NULL DEFAULT '',
    intent_id TEXT NOT NULL DEFAULT '',
    caller    TEXT NOT NULL DEFAULT '',
    tool      TEXT NOT NULL DEFAULT '',
    body      BLOB NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

-- No secondary indexes yet: every index is one more page written per
-- commit (the WAL appends whole pages). Add one with the query that needs it.
