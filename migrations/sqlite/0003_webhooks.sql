-- Webhooks (src/notify): progress events on request, and a lease on each
-- outbox row so that several nodes never send the same event at once and a
-- crashed node's claim runs out.
ALTER TABLE orders ADD COLUMN notify_progress BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhook_outbox ADD COLUMN locked_by TEXT;
ALTER TABLE webhook_outbox ADD COLUMN locked_until BIGINT;
-- Start of the retry window (max_age_secs): creation, or the last redeliver.
ALTER TABLE webhook_outbox ADD COLUMN schedule_start BIGINT NOT NULL DEFAULT 0;
-- Attempts already made at schedule_start: the backoff counts from there, so
-- a redeliver starts the retry schedule over (30 s, 1 min, …).
ALTER TABLE webhook_outbox ADD COLUMN schedule_attempts_base BIGINT NOT NULL DEFAULT 0;
CREATE INDEX webhook_outbox_merchant ON webhook_outbox (merchant_id, status, created_at);
