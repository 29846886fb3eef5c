-- voicepay's own velocity limit on wrong secrets ([limits],
-- src/config/velocity.rs). From here on `pin_tries` counts every wrong
-- secret per card (PIN, or expiry and CVN2), never a try from a call whose
-- cardholder ID did not match. This table counts wrong secrets keyed on one
-- phone per Asia/Shanghai calendar day over every card, an ID mismatch
-- included (it answers as a wrong secret). The phone is its keyed
-- fingerprint; no phone number, card, PIN, expiry or CVN2 here.
CREATE TABLE phone_secret_tries (
    phone_fp   TEXT NOT NULL,
    day        TEXT NOT NULL, -- YYYY-MM-DD in Asia/Shanghai
    count      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (phone_fp, day)
);
-- The authorization (`{order id}:{attempt}`) behind each counted try, so an
-- answer settled twice counts once on the phone.
CREATE TABLE phone_secret_try_keys (
    auth_key   TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
