-- The ISO 8583 acquirer link's request journal (issue 13): one row per
-- financial request (0200 purchase or refund), written *before* the request
-- is sent, so that after a timeout, a dropped link or a crash voicepay knows
-- what it may have sent and can reverse it. Times are Unix milliseconds. No
-- PAN, PIN block, CVN2, expiry or ID number: the request names its order,
-- whose card stays sealed in orders.card_enc.
--
-- status: `sent` (armed; written or about to be), `answered` (the 0210 came:
-- resp_code/approval_code/rrn hold F39/F38/F37), `reversing` (the outcome
-- was unknown, or an approval had to be undone: a pending_reversals row
-- names it, recorded in the same transaction). Moves are conditional:
-- sent -> answered | reversing, answered -> reversing; a 0210 arriving for
-- a `reversing` row changes nothing.
CREATE TABLE acquirer_requests (
    request_key      TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES orders(id),
    refund_id        TEXT,
    mti              TEXT NOT NULL,
    stan             TEXT NOT NULL,
    transmitted_at   TEXT NOT NULL,
    acquirer_id      TEXT NOT NULL,
    processing_code  TEXT NOT NULL,
    amount           BIGINT NOT NULL,
    status           TEXT NOT NULL,
    resp_code        TEXT,
    approval_code    TEXT,
    rrn              TEXT,
    created_at       BIGINT NOT NULL,
    answered_at      BIGINT,
    UNIQUE (mti, stan, transmitted_at, acquirer_id)
);
CREATE INDEX acquirer_requests_order ON acquirer_requests (order_id);
