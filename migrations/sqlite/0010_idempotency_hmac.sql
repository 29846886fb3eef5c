-- Idempotency fingerprints become keyed (HMAC-SHA256 under a key derived
-- from the key file) over the canonical request, instead of a plain SHA-256
-- of the raw body. An old print cannot be recomputed (the raw bytes are
-- gone) and, being an unkeyed hash of a body with the card and ID numbers
-- in it, is offline-guessable: it is deleted, not kept beside a new one.
-- The entries live 24 h at most anyway; a retry of a request made before
-- the upgrade finds no key and is caught by merchant_order_id instead
-- (409 duplicate_order), so no order is ever made twice.
DELETE FROM idempotency_keys;
