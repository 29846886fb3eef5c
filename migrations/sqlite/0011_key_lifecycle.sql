-- Key lifecycle (`voicepay merchant rotate-key | revoke-key | disable |
-- enable | rotate-webhook-secret`).
--
-- key_revoked_at: the current API key (api_key_hash) no longer authenticates
-- (Unix ms); cleared by the next rotate-key.
-- prev_api_key_hash / prev_api_key_until: the key a rotate-key replaced,
-- still accepted until prev_api_key_until (Unix ms) when an overlap was asked.
-- disabled_at: every API call of the merchant is refused with 403
-- merchant_disabled, no call is started for its orders and no webhook sent.
-- prev_webhook_secret_enc / prev_webhook_secret_until: the webhook secret a
-- rotation replaced (sealed); webhooks carry a second v1= signature made with
-- it until prev_webhook_secret_until (Unix ms).
ALTER TABLE merchants ADD COLUMN key_revoked_at BIGINT;
ALTER TABLE merchants ADD COLUMN prev_api_key_hash TEXT;
ALTER TABLE merchants ADD COLUMN prev_api_key_until BIGINT;
ALTER TABLE merchants ADD COLUMN disabled_at BIGINT;
ALTER TABLE merchants ADD COLUMN prev_webhook_secret_enc TEXT;
ALTER TABLE merchants ADD COLUMN prev_webhook_secret_until BIGINT;
CREATE INDEX merchants_prev_api_key_hash ON merchants (prev_api_key_hash);
