//! `[http]`: the merchant API's listener and its status streams.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address the merchant API listens on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How often a live status stream (`/v1/orders/{id}/events`) looks for
    /// new events in the database, in milliseconds. Polling the shared
    /// database is what lets a stream on one node see another node's calls.
    /// One poller per order serves all of that order's streams.
    pub events_poll_ms: u64,
    /// Seconds between keep-alive comments on an idle status stream.
    pub events_keepalive_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            events_poll_ms: 250,
            events_keepalive_secs: 15,
        }
    }
}

impl HttpSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes", "must be at least 1024");
        }
        if !(10..=60_000).contains(&self.events_poll_ms) {
            return invalid("http.events_poll_ms", "must be 10 to 60000");
        }
        if !(1..=300).contains(&self.events_keepalive_secs) {
            return invalid("http.events_keepalive_secs", "must be 1 to 300");
        }
        Ok(())
    }
}
