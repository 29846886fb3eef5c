//! `[limits]`: what bounds the memory, connections and database reads that
//! clients can make the merchant API spend. Every limit answers a client
//! past it the same way: 429 `rate_limited` with `Retry-After` (streams,
//! order creation), 503 `overloaded` (connections) or 503 `request_timeout`.

use super::{invalid, ConfigError, VelocityLimits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Seconds a client has to send a request's whole header block (also
    /// how long an idle keep-alive connection is kept); then the connection
    /// is closed without an answer.
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take until its response starts (the body read
    /// included); past it the answer is 503 `request_timeout`. A live status
    /// stream is not cut: only its start is timed.
    pub request_timeout_secs: u64,
    /// Open connections to the merchant API at once; one more is answered
    /// 503 `overloaded` and closed.
    pub max_connections: usize,
    /// Live status streams open at once on this node, all merchants.
    pub max_streams: usize,
    /// Live status streams open at once on this node for one merchant.
    pub max_streams_per_merchant: usize,
    /// Orders one merchant may create per minute on this node (a token
    /// bucket holding a minute's worth); 0 turns the limit off.
    pub orders_per_merchant_per_minute: u32,
    /// Orders naming one phone number in any rolling 24 hours, all merchants
    /// and nodes together (counted in the database); 0 turns it off.
    pub orders_per_phone_per_day: u32,
    /// Wrong API keys remembered, so that a repeated one costs no database
    /// read; past this the oldest are forgotten.
    pub failed_key_cache_size: usize,
    /// Seconds a wrong API key is answered 401 from memory; each time it is
    /// looked up again and still wrong, the time doubles, up to
    /// `failed_key_max_secs`.
    pub failed_key_initial_secs: u64,
    /// The longest a wrong API key is remembered at once, in seconds.
    pub failed_key_max_secs: u64,
    /// Wrong secrets (PIN, or expiry and CVN2) a card, by its keyed
    /// fingerprint, may get per Asia/Shanghai day: see [`VelocityLimits`].
    pub wrong_secrets_per_card_day: u32,
    /// Wrong secrets keyed on one phone per Asia/Shanghai day, over every
    /// card: see [`VelocityLimits`].
    pub wrong_secrets_per_phone_day: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 1024,
            max_streams: 512,
            max_streams_per_merchant: 64,
            orders_per_merchant_per_minute: 600,
            orders_per_phone_per_day: 10,
            failed_key_cache_size: 10_000,
            failed_key_initial_secs: 5,
            failed_key_max_secs: 300,
            wrong_secrets_per_card_day: VelocityLimits::default().wrong_secrets_per_card_day,
            wrong_secrets_per_phone_day: VelocityLimits::default().wrong_secrets_per_phone_day,
        }
    }
}

impl LimitSettings {
    /// The matcher's wrong-secret velocity limits.
    pub fn velocity(&self) -> VelocityLimits {
        VelocityLimits {
            wrong_secrets_per_card_day: self.wrong_secrets_per_card_day,
            wrong_secrets_per_phone_day: self.wrong_secrets_per_phone_day,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.velocity().validate()?;
        if !(1..=300).contains(&self.header_read_timeout_secs) {
            return invalid("limits.header_read_timeout_secs", "must be 1 to 300");
        }
        if !(1..=3600).contains(&self.request_timeout_secs) {
            return invalid("limits.request_timeout_secs", "must be 1 to 3600");
        }
        if self.max_connections < 1 {
            return invalid("limits.max_connections", "must be at least 1");
        }
        if self.max_streams < 1 {
            return invalid("limits.max_streams", "must be at least 1");
        }
        if !(1..=self.max_streams).contains(&self.max_streams_per_merchant) {
            return invalid(
                "limits.max_streams_per_merchant",
                "must be 1 to limits.max_streams",
            );
        }
        if self.failed_key_cache_size < 1 {
            return invalid("limits.failed_key_cache_size", "must be at least 1");
        }
        if self.failed_key_initial_secs < 1 {
            return invalid("limits.failed_key_initial_secs", "must be at least 1");
        }
        if self.failed_key_max_secs < self.failed_key_initial_secs {
            return invalid(
                "limits.failed_key_max_secs",
                "must be at least limits.failed_key_initial_secs",
            );
        }
        Ok(())
    }
}
