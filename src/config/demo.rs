//! `[demo]`: the demo checkout page.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The demo checkout page (`/demo`): a small merchant front end for the lab.
///
/// The page places orders as a merchant of its own without any login, so it
/// is served on a listener of its own, loopback unless said otherwise, and
/// its order creation is rate limited.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Serve `/demo`. The daemon then keeps a demo merchant whose API key
    /// never leaves the server; when off, that merchant's key is revoked at
    /// start-up. Off by default; `scripts/run` turns it on.
    pub enabled: bool,
    /// Address of the demo's own listener (the merchant API's listener
    /// never serves `/demo`). Loopback by default.
    pub listen: SocketAddr,
    /// Let `listen` be a non-loopback address. Without it the daemon refuses
    /// to start: anyone who reaches the page can have voicepay call a phone.
    pub allow_remote: bool,
    /// Orders one browser session may place per rolling minute.
    pub orders_per_session_per_minute: u32,
    /// Orders the whole demo may place per rolling minute, every session
    /// together (a client can always start a new session).
    pub orders_per_minute: u32,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            allow_remote: false,
            orders_per_session_per_minute: 5,
            orders_per_minute: 30,
        }
    }
}

impl DemoSettings {
    /// Checks the values; [`crate::app::App::build`] runs it too, for
    /// settings that did not come through [`super::Settings::load`].
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `demo.listen` (a non-loopback address
    /// without `demo.allow_remote`) or a limit out of 1 to 10000.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && !self.listen.ip().is_loopback() && !self.allow_remote {
            return Err(ConfigError::Invalid {
                key: "demo.listen",
                message: format!(
                    "{} is not a loopback address: the demo page is a merchant without a \
                     login that has voicepay call any phone; keep it on 127.0.0.1 or ::1, \
                     or set demo.allow_remote = true to expose it on purpose",
                    self.listen
                ),
            });
        }
        if !(1..=10_000).contains(&self.orders_per_session_per_minute) {
            return invalid("demo.orders_per_session_per_minute", "must be 1 to 10000");
        }
        if !(1..=10_000).contains(&self.orders_per_minute) {
            return invalid("demo.orders_per_minute", "must be 1 to 10000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_listen_needs_allow_remote() {
        let mut d = DemoSettings {
            enabled: true,
            ..DemoSettings::default()
        };
        d.validate().unwrap();
        d.listen = "[::1]:8081".parse().unwrap();
        d.validate().unwrap();
        for remote in ["0.0.0.0:8081", "192.168.1.10:8081", "[::]:8081"] {
            d.listen = remote.parse().unwrap();
            let err = d.validate().unwrap_err().to_string();
            assert!(
                err.contains("demo.listen") && err.contains("demo.allow_remote"),
                "{err}"
            );
        }
        d.allow_remote = true;
        d.validate().unwrap();
        d.allow_remote = false;
        d.enabled = false;
        d.validate().unwrap();
    }

    #[test]
    fn the_limits_are_bounded() {
        let mut d = DemoSettings {
            orders_per_minute: 0,
            ..DemoSettings::default()
        };
        assert!(d
            .validate()
            .unwrap_err()
            .to_string()
            .contains("demo.orders_per_minute"));
        d.orders_per_minute = 30;
        d.orders_per_session_per_minute = 0;
        assert!(d
            .validate()
            .unwrap_err()
            .to_string()
            .contains("demo.orders_per_session_per_minute"));
    }
}
