-- Wrong PIN tries per card per Asia/Shanghai calendar day (DESIGN.md: three
-- in a day lock PIN payments for the card until the next day, respCode 67).
-- The card is its keyed fingerprint; no card number, PIN or PIN block here.
CREATE TABLE pin_tries (
    card_fp    TEXT NOT NULL,
    day        TEXT NOT NULL, -- YYYY-MM-DD in Asia/Shanghai
    count      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (card_fp, day)
);
