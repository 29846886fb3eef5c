-- One name per thing: the column holds the one-time code a call presents
-- for an order, the transfer code (transfer mode) or the order code the
-- caller keys (inbound mode), so it is the call code, not a transfer code.
ALTER TABLE orders RENAME COLUMN transfer_code TO call_code;
