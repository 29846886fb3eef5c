-- voicepay schema, PostgreSQL flavour. Times are Unix milliseconds (BIGINT).
-- Card and ID numbers only ever appear sealed (*_enc), masked or as keyed
-- fingerprints (*_fp). No PIN, CVN2 or expiry is stored anywhere.

CREATE TABLE merchants (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    api_key_hash       TEXT NOT NULL UNIQUE,
    webhook_secret_enc TEXT NOT NULL,
    notify_url         TEXT,
    created_at         BIGINT NOT NULL
);

CREATE TABLE bindings (
    id          TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    phone       TEXT NOT NULL,
    card_enc    TEXT NOT NULL,
    card_masked TEXT NOT NULL,
    card_type   TEXT NOT NULL,
    card_fp     TEXT NOT NULL,
    id_enc      TEXT NOT NULL,
    id_masked   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (merchant_id, phone)
);

CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants(id),
    merchant_order_id TEXT NOT NULL,
    status            TEXT NOT NULL,
    mode              TEXT NOT NULL,
    amount            BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    description       TEXT,
    phone             TEXT NOT NULL,
    language          TEXT NOT NULL,
    notify_url        TEXT,
    card_enc          TEXT NOT NULL,
    card_masked       TEXT NOT NULL,
    card_type         TEXT NOT NULL,
    card_fp           TEXT NOT NULL,
    id_enc            TEXT NOT NULL,
    id_masked         TEXT NOT NULL,
    binding_id        TEXT,
    transfer_code     TEXT UNIQUE,
    result_code       TEXT,
    resp_code         TEXT,
    result_message    TEXT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT,
    claimed_by        TEXT,
    claim_until       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    UNIQUE (merchant_id, merchant_order_id)
);
CREATE INDEX orders_status_expires ON orders (status, expires_at);
CREATE INDEX orders_phone_status ON orders (phone, status);

-- Append-only audit trail of every transition; never a secret.
CREATE TABLE order_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders(id),
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    detail      TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);

CREATE TABLE call_attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders(id),
    attempt     BIGINT NOT NULL,
    channel_id  TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at    BIGINT,
    outcome     TEXT,
    cause       TEXT
);
CREATE INDEX call_attempts_order ON call_attempts (order_id, attempt);

CREATE TABLE idempotency_keys (
    merchant_id   TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status_code   BIGINT NOT NULL,
    response_body TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    merchant_id     TEXT NOT NULL REFERENCES merchants(id),
    order_id        TEXT NOT NULL REFERENCES orders(id),
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    notify_url      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
CREATE FUNCTION order_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'order_events is append-only';
END;
$$;
CREATE TRIGGER order_events_no_change BEFORE UPDATE OR DELETE ON order_events
FOR EACH ROW EXECUTE FUNCTION order_events_append_only();

-- The 'created' event is written by the database itself, in the same
-- statement as the order: no order can exist without its first event.
CREATE FUNCTION order_created_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_events (order_id, kind, from_status, to_status, detail, created_at)
    VALUES (NEW.id, 'created', NULL, NEW.status, NULL, NEW.created_at);
    RETURN NEW;
END;
$$;
CREATE TRIGGER orders_created_event AFTER INSERT ON orders
FOR EACH ROW EXECUTE FUNCTION order_created_event();
