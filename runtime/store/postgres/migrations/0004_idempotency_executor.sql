-- 0004_idempotency_executor: which executor run reserved an idempotency
-- key ('' for keys reserved before this migration). An intent whose key
-- is reserved but that has no outcome is settled as interrupted at once
-- when the run that reserved it is known to be gone (an executor with the
-- same --executor-id restarted), else only after its tool's timeout and a
-- margin.
ALTER TABLE idempotency ADD COLUMN executor TEXT NOT NULL DEFAULT '';
