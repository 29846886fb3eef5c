//! `[webhooks]`: delivery of order events to merchants.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// Webhook delivery (`notify`): timeouts, the retry schedule, fairness.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Whether this node runs the delivery worker (events are queued either
    /// way; another node sharing the database may send them).
    pub enabled: bool,
    /// Per-request timeout, connecting included, in seconds.
    pub timeout_secs: u64,
    /// Delay before the first retry; each further retry doubles it.
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts.
    pub retry_max_ms: u64,
    /// Each delay is multiplied by a random factor in `1 ± retry_jitter`.
    pub retry_jitter: f64,
    /// After this long without a 2xx the event is marked `failed`.
    pub max_age_secs: u64,
    /// Deliveries to one merchant in flight at once on this node.
    pub max_in_flight_per_merchant: usize,
    /// How often the worker looks for due events.
    pub poll_interval_ms: u64,
    /// After `voicepay merchant rotate-webhook-secret`, how long webhooks
    /// carry a second `v1=` signature made with the replaced secret, in
    /// seconds (the command's `--overlap-seconds` overrides it; 0: none).
    pub secret_overlap_seconds: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout_secs: 10,
            retry_initial_ms: 30_000,
            retry_max_ms: 3_600_000,
            retry_jitter: 0.2,
            max_age_secs: 86_400,
            max_in_flight_per_merchant: 4,
            poll_interval_ms: 1000,
            secret_overlap_seconds: 86_400,
        }
    }
}

impl WebhookSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout_secs == 0 {
            return invalid("webhooks.timeout_secs", "must be at least 1");
        }
        if self.retry_initial_ms == 0 {
            return invalid("webhooks.retry_initial_ms", "must be at least 1");
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return invalid(
                "webhooks.retry_max_ms",
                "must be at least webhooks.retry_initial_ms",
            );
        }
        if !(0.0..1.0).contains(&self.retry_jitter) {
            return invalid("webhooks.retry_jitter", "must be at least 0 and below 1");
        }
        if self.max_age_secs == 0 {
            return invalid("webhooks.max_age_secs", "must be at least 1");
        }
        if self.max_in_flight_per_merchant == 0 {
            return invalid("webhooks.max_in_flight_per_merchant", "must be at least 1");
        }
        if self.poll_interval_ms < 10 {
            return invalid("webhooks.poll_interval_ms", "must be at least 10");
        }
        Ok(())
    }
}
