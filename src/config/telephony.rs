//! `[telephony]`: placing callbacks and how many calls a node runs.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelephonySettings {
    /// Dial string for callbacks; `{phone}` is replaced by the cardholder's number.
    pub callback_endpoint: String,
    /// Caller ID presented on callbacks, e.g. `Shop <4000000000>`: the
    /// operator's own service number. Empty (the default): voicepay sets
    /// none and the carrier trunk's own caller ID is used; no organisation's
    /// real number ships as a default.
    pub caller_id: String,
    /// How long a callback rings before it counts as no answer, in seconds.
    pub ring_timeout_secs: u64,
    /// Callback attempts per order (first call included).
    pub max_attempts: u32,
    /// Pause between callback attempts, in seconds.
    pub retry_interval_secs: u64,
    /// Calls this node runs at once, ringing or answered; further due
    /// callback orders wait in `pending` until one ends (never failed).
    pub max_concurrent_calls: usize,
    /// Callback originates (`POST /channels`) this node has in flight at
    /// once; more due orders wait their turn.
    pub max_concurrent_originates: usize,
    /// How often a node renews its claims on the orders whose calls it is
    /// placing or running (whether or not ARI is connected), and looks for
    /// calls abandoned by a stopped node, in seconds.
    pub claim_renew_secs: u64,
}

impl Default for TelephonySettings {
    fn default() -> Self {
        Self {
            callback_endpoint: "PJSIP/{phone}@carrier".into(),
            caller_id: String::new(),
            ring_timeout_secs: 30,
            max_attempts: 3,
            retry_interval_secs: 60,
            max_concurrent_calls: 100,
            max_concurrent_originates: 8,
            claim_renew_secs: 30,
        }
    }
}

impl TelephonySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.callback_endpoint.contains("{phone}") {
            return invalid("telephony.callback_endpoint", "must contain {phone}");
        }
        if self.max_attempts == 0 {
            return invalid("telephony.max_attempts", "must be at least 1");
        }
        if self.max_concurrent_calls == 0 {
            return invalid("telephony.max_concurrent_calls", "must be at least 1");
        }
        if self.max_concurrent_originates == 0 {
            return invalid("telephony.max_concurrent_originates", "must be at least 1");
        }
        if self.ring_timeout_secs == 0 {
            return invalid("telephony.ring_timeout_secs", "must be at least 1");
        }
        // Well under the shortest claim (ring + 30 s call + 1 s prompt + 60 s).
        if !(1..=60).contains(&self.claim_renew_secs) {
            return invalid("telephony.claim_renew_secs", "must be 1 to 60");
        }
        Ok(())
    }
}
