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
    /// Plain `http://` targets are accepted (orders and deliveries); off,
    /// only `https://`. The lab and the tests turn it on.
    pub allow_http: bool,
    /// `host:port` entries (`127.0.0.1:9000`, `[::1]:9000`,
    /// `hooks.internal:443`) that webhooks may reach although their
    /// address is loopback, private or otherwise special. The host is
    /// compared as the URL parser normalises it; a listed name is resolved
    /// and connected to without the address check. Empty by default.
    pub allowed_private_targets: Vec<String>,
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
            allow_http: false,
            allowed_private_targets: Vec::new(),
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
        self.allowed_targets().map(|_| ())
    }

    /// `allowed_private_targets` as (host, port) pairs, the host normalised
    /// by the URL parser (lower case, IPv4 in dotted decimal, IPv6 without
    /// brackets, no trailing dot).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `webhooks.allowed_private_targets`
    /// when an entry is not `host:port` with a port of 1-65535.
    pub fn allowed_targets(&self) -> Result<Vec<(String, u16)>, ConfigError> {
        self.allowed_private_targets
            .iter()
            .map(|entry| {
                target_entry(entry).ok_or_else(|| ConfigError::Invalid {
                    key: "webhooks.allowed_private_targets",
                    message: format!("`{entry}` is not host:port (e.g. 127.0.0.1:9000)"),
                })
            })
            .collect()
    }
}

/// One `host:port` entry, normalised as [`normal_host`] does; `None` when
/// it is not one.
fn target_entry(entry: &str) -> Option<(String, u16)> {
    let (host, port) = entry.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return None;
    }
    let url = reqwest::Url::parse(&format!("http://{host}/")).ok()?;
    Some((normal_host(url.host()?), port))
}

/// A URL's host as allow-list entries are compared: IPv4 dotted decimal,
/// IPv6 without brackets, names lower case without a trailing dot.
pub fn normal_host(host: url::Host<&str>) -> String {
    match host {
        url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    }
}
