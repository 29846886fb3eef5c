-- Assisted payments (mode `assisted`, issue #16): the cardholder's and the
-- agent's channels of one order in a bridge voicepay owns, and the state of
-- the secret's capture the agent's desktop asks for. One row per order,
-- written by the node whose bridge holds the call; read by every node's API
-- (a capture request may land on any node). Never a secret in it.
--   capture: idle | requested (the API asked; the call has not begun it)
--            | running (the cardholder is keying) | cancelling (the API
--            asked to stop it)
CREATE TABLE assisted_calls (
    order_id           TEXT PRIMARY KEY REFERENCES orders(id),
    cardholder_channel TEXT,
    agent_channel      TEXT,
    capture            TEXT NOT NULL DEFAULT 'idle',
    captures           BIGINT NOT NULL DEFAULT 0,
    updated_at         BIGINT NOT NULL
);
