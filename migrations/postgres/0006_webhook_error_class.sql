-- What merchants are told about a failed delivery: a coarse class
-- (domain::DeliveryErrorClass: http_status, timeout, connection_refused,
-- tls_error, blocked_address, internal). last_error keeps the detailed
-- reason for operators only.
ALTER TABLE webhook_outbox ADD COLUMN last_error_class TEXT;
