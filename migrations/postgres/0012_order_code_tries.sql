-- Wrong order codes keyed at the access number, per caller ID per
-- Asia/Shanghai calendar day (inbound.wrong_codes_per_day limits them, so a
-- spoofed caller ID cannot guess a phone's order code across calls). The
-- caller is the normalised phone number; no keyed code is stored.
CREATE TABLE order_code_tries (
    caller     TEXT NOT NULL,
    day        TEXT NOT NULL, -- YYYY-MM-DD in Asia/Shanghai
    count      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (caller, day)
);
