-- Daemon restarts that drop no call (issue #15): where each live call is,
-- so a restarted daemon can resume it at a safe point (README "Daemon
-- restarts that drop no call"). One row per call in progress, written by
-- its call task at each step change and deleted when the call ends. Never
-- a digit or a secret: a resumed call re-prompts its step.
--   flow: callback | inbound | assisted
--   step: confirm | pin | expiry | authorizing | closing (a credit card's
--         CVN2 step is stored as `expiry`: the keyed expiry was in memory
--         only, so both are asked again)
--   seq:  bumped on every write; a resume takes the row with a
--         compare-and-set on it, so two runs never both drive one call
CREATE TABLE call_points (
    order_id      TEXT PRIMARY KEY REFERENCES orders(id),
    node          TEXT NOT NULL,
    channel_id    TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    flow          TEXT NOT NULL,
    step          TEXT NOT NULL,
    step_failures BIGINT NOT NULL,
    tries_left    BIGINT NOT NULL,
    playback_seq  BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX call_points_node ON call_points (node);
