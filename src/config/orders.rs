//! `[orders]`: limits and lifetimes of merchant orders.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderSettings {
    /// Largest amount accepted, in fen.
    pub max_amount: i64,
    /// How long an order waits to be paid before it expires, in seconds.
    pub expiry_secs: u64,
    /// How long an `Idempotency-Key` is remembered, in seconds.
    pub idempotency_ttl_secs: u64,
    /// How often expired orders and keys are swept, in seconds.
    pub sweep_interval_secs: u64,
}

impl Default for OrderSettings {
    fn default() -> Self {
        Self {
            max_amount: 100_000_000,
            expiry_secs: 900,
            idempotency_ttl_secs: 24 * 3600,
            sweep_interval_secs: 5,
        }
    }
}

impl OrderSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_amount < 1 {
            return invalid("orders.max_amount", "must be at least 1 fen");
        }
        if self.expiry_secs < 60 {
            return invalid("orders.expiry_secs", "must be at least 60");
        }
        if self.sweep_interval_secs == 0 {
            return invalid("orders.sweep_interval_secs", "must be at least 1");
        }
        Ok(())
    }
}
