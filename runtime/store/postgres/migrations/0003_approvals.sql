-- 0003_approvals: human approvals, idempotency keys, and the columns and
-- indexes that filter the audit log.
--
-- approvals: one row per intent that policy sent for approval, bound to the
-- exact task, caller, tool, tool digest and canonical arguments (whose
-- SHA-256 is args_sha256). state moves pending -> approved | denied |
-- expired, approved -> claimed -> done; denied, expired and done are final.
-- rules is a JSON array of the rule names that asked for approval.
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    intent_id       TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    caller          TEXT NOT NULL,
    tool            TEXT NOT NULL,
    tool_digest     TEXT NOT NULL DEFAULT '',
    args_sha256     TEXT NOT NULL,
    arguments       BYTEA NOT NULL,
    justification   TEXT NOT NULL DEFAULT '',
    rules           TEXT NOT NULL DEFAULT '[]',
    message         TEXT NOT NULL DEFAULT '',
    risk            TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL,
    created_at      TEXT COLLATE "C",
    expires_at      TEXT COLLATE "C" NOT NULL,
    decided_at      TEXT COLLATE "C",
    approver        TEXT NOT NULL DEFAULT '',
    reason          TEXT NOT NULL DEFAULT '',
    claimed_by      TEXT NOT NULL DEFAULT '',
    claimed_at      TEXT COLLATE "C",
    intent_status   TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT NOT NULL DEFAULT ''
);

CREATE INDEX approvals_state ON approvals (state, created_at);
CREATE INDEX approvals_task ON approvals (task_id, created_at);
CREATE INDEX approvals_expires ON approvals (expires_at) WHERE state = 'pending';

-- idempotency: a caller's idempotency key, bound to the first intent
-- submitted with it.
CREATE TABLE idempotency (
    caller      TEXT NOT NULL,
    key         TEXT NOT NULL,
    intent_id   TEXT NOT NULL,
    task_id     TEXT NOT NULL DEFAULT '',
    tool        TEXT NOT NULL DEFAULT '',
    args_sha256 TEXT NOT NULL DEFAULT '',
    created_at  TEXT COLLATE "C",
    PRIMARY KEY (caller, key)
);

-- The decision effect of decision events, a copy of body's
-- decision.effect written at append time (filled here for existing rows),
-- like the other copied columns not trusted by verification. One index per
-- filter of AuditFiltered, each ending in seq so that a filtered page is
-- a range scan in chain order.
ALTER TABLE audit_events ADD COLUMN effect TEXT NOT NULL DEFAULT '';
UPDATE audit_events SET effect = coalesce(convert_from(body, 'UTF8')::jsonb #>> '{decision,effect}', '')
    WHERE type = 'decision';
CREATE INDEX audit_events_task ON audit_events (task_id, seq);
CREATE INDEX audit_events_caller ON audit_events (caller, seq);
CREATE INDEX audit_events_tool ON audit_events (tool, seq);
CREATE INDEX audit_events_effect ON audit_events (effect, seq) WHERE effect <> '';
