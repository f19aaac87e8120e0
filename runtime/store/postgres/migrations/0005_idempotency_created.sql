-- 0005_idempotency_created: idempotency records expire. The executor
-- deletes the records (and outcome markers) older than its
-- --idempotency-ttl, oldest first and in small batches, through this
-- index; records without a created_at are never purged.
CREATE INDEX idempotency_created ON idempotency (created_at);
