-- The authorization (by its idempotency key) behind each counted wrong PIN,
-- so an answer settled twice (recovery on two nodes, or recovery and the
-- live call) counts once. No card, PIN or PIN block: only the key
-- `{order id}:{attempt}`.
CREATE TABLE pin_try_keys (
    auth_key   TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
