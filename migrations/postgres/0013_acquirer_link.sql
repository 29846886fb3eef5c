-- The ISO 8583 acquirer link (issue 13): STAN counters, store-and-forward
-- reversals, refunds. Times are Unix milliseconds. No PAN, PIN block, CVN2,
-- expiry or ID number is stored here: a reversal names its order, whose card
-- stays sealed in orders.card_enc.

-- One row per Asia/Shanghai day (YYYY-MM-DD): the last STAN (F11) handed
-- out that day; nodes sharing the database take the next one with an
-- atomic upsert, so none is used twice in a day.
CREATE TABLE stan_counters (
    day  TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);

-- Reversal advices (0420, repeated as 0421) still to be acknowledged (0430),
-- one per original request, identified as F90 names it: MTI, STAN, F7
-- (MMDDhhmmss UTC) and F32. Leased to one node at a time
-- (locked_by/locked_until), as webhook_outbox.
CREATE TABLE pending_reversals (
    id               TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES orders(id),
    refund_id        TEXT,
    original_mti     TEXT NOT NULL,
    stan             TEXT NOT NULL,
    transmitted_at   TEXT NOT NULL,
    acquirer_id      TEXT NOT NULL,
    processing_code  TEXT NOT NULL,
    amount           BIGINT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_by        TEXT,
    locked_until     BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    acknowledged_at  BIGINT,
    UNIQUE (original_mti, stan, transmitted_at, acquirer_id)
);
CREATE INDEX pending_reversals_due ON pending_reversals (status, next_attempt_at);
CREATE INDEX pending_reversals_order ON pending_reversals (order_id);

-- Refunds of succeeded orders (full or partial, amounts in fen). The
-- request's STAN and F7 are recorded before it is sent, so an unknown
-- outcome can be reversed; RRN (F37), approval code (F38) and response code
-- (F39) come from the issuer's answer.
CREATE TABLE refunds (
    id               TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES orders(id),
    amount           BIGINT NOT NULL,
    status           TEXT NOT NULL,
    stan             TEXT,
    transmitted_at   TEXT,
    rrn              TEXT,
    approval_code    TEXT,
    resp_code        TEXT,
    idempotency_key  TEXT,
    created_at       BIGINT NOT NULL,
    decided_at       BIGINT,
    UNIQUE (order_id, idempotency_key)
);
CREATE INDEX refunds_order ON refunds (order_id, created_at);
