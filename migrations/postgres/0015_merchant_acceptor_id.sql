-- The merchant's card acceptor identification code (ISO 8583 F42, ans15:
-- 1-15 printable ASCII characters, checked by voicepay before it is stored),
-- assigned by the acquirer and sent with the merchant's purchases and
-- refunds. NULL: none configured (F42 is left out).
ALTER TABLE merchants ADD COLUMN acceptor_id TEXT;
