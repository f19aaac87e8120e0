-- 0002_leases: credential leases. One row per credential issued to a call:
-- which task and tool it was for, which source issued it and when it
-- expires. revoked_at is set once the source has revoked it (or the lease
-- was otherwise settled); NULL means it may still be live at its source.
--
-- ref is what the source needs to revoke the lease, sealed by
-- runtime/credentials with AES-256-GCM under a key kept outside the
-- database. It is never the plaintext secret and never enters the audit log.

CREATE TABLE leases (
    id         TEXT PRIMARY KEY,
    task_id    TEXT NOT NULL,
    tool       TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL,
    credential TEXT NOT NULL DEFAULT '',
    issued_at  TEXT COLLATE "C",
    expires_at TEXT COLLATE "C" NOT NULL,
    revoked_at TEXT COLLATE "C",
    ref        BYTEA
);

-- Open leases only: the index shrinks as leases are revoked.
CREATE INDEX leases_open ON leases (task_id) WHERE revoked_at IS NULL;
