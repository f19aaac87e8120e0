-- 0001_init: tasks, intent outcomes and the hash-chained audit log.
-- Times are TEXT in UTC, fixed-width RFC 3339 with nanoseconds
-- (2006-01-02T15:04:05.000000000Z) in the "C" collation, so they sort as
-- text and round-trip to the nanosecond like the SQLite store's; NULL means
-- unset.

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    caller      TEXT NOT NULL,
    purpose     TEXT NOT NULL DEFAULT '',
    sensitivity TEXT NOT NULL DEFAULT '',
    labels      TEXT NOT NULL DEFAULT '{}', -- JSON object of strings
    started_at  TEXT COLLATE "C",
    expires_at  TEXT COLLATE "C",
    ended_at    TEXT COLLATE "C",
    call_count  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE intents (
    id      TEXT PRIMARY KEY,
    task_id TEXT NOT NULL DEFAULT '',
    caller  TEXT NOT NULL DEFAULT '',
    tool    TEXT NOT NULL DEFAULT '',
    status  TEXT NOT NULL DEFAULT '',
    created TEXT COLLATE "C",
    outcome BYTEA
);

-- body is the exact canonical JSON that hash (hex SHA-256) covers; the other
-- columns are copies for querying and are not trusted by verification.
CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    id        TEXT NOT NULL,
    time      TEXT COLLATE "C" NOT NULL,
    type      TEXT NOT NULL,
    task_id   TEXT NOT NULL DEFAULT '',
    intent_id TEXT NOT NULL DEFAULT '',
    caller    TEXT NOT NULL DEFAULT '',
    tool      TEXT NOT NULL DEFAULT '',
    body      BYTEA NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- The chain head: exactly one row. Every Commit locks it (SELECT ... FOR
-- UPDATE) before sealing, so several executors sharing this database append
-- to one chain in turn and never fork it; the seq primary key above is the
-- second line of defence. It is a cache of the newest event, not trusted by
-- verification.
CREATE TABLE audit_head (
    id   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (TRUE, 0, '0000000000000000000000000000000000000000000000000000000000000000');
