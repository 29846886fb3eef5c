//! `[ari]`: how to reach Asterisk's REST interface and events socket.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AriSettings {
    /// Asterisk's HTTP base URL, `http://host:port` (the events socket
    /// speaks `ws://` on the same address).
    pub url: String,
    /// The ARI user of `ari.conf`.
    pub username: String,
    /// Its password; `voicepay config check` prints it as `****`.
    pub password: String,
    /// The Stasis application name; each node sharing one Asterisk needs its own.
    pub app: String,
    /// How long `POST /channels` (an originate) may take, in seconds. Other
    /// requests answer in milliseconds; placing a call can take seconds on a
    /// busy Asterisk, and a timed-out originate must be checked before it is
    /// sent again.
    pub originate_timeout_secs: u64,
    /// How REST requests reach Asterisk: `http` (a pool of HTTP sessions)
    /// or `websocket` (as `RESTRequest` frames on the events WebSocket,
    /// Asterisk 22.4+; see `crate::ari::rest`).
    pub rest_transport: RestTransport,
    /// Who opens the events WebSocket: `inbound` (voicepay connects to
    /// `/ari/events`, any Asterisk) or `outbound` (Asterisk 22.5+ connects
    /// to voicepay on `listen`; see `crate::ari::outbound`).
    pub websocket: WebsocketMode,
    /// With `websocket = "outbound"`: the `host:port` voicepay listens on
    /// for Asterisk's connection (websocket_client.conf's `uri`). Loopback
    /// by default: the socket has no TLS.
    pub listen: String,
}

/// `ari.websocket`: which side opens the events WebSocket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebsocketMode {
    /// voicepay connects to Asterisk's `/ari/events` (today's behaviour).
    #[default]
    Inbound,
    /// Asterisk connects to voicepay (ari.conf `type = outbound_websocket`,
    /// `connection_type = persistent`, Asterisk 22.5+).
    Outbound,
}

/// `ari.rest_transport`: where the ARI REST requests go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestTransport {
    /// One HTTP request per call on a keep-alive pool (any Asterisk).
    #[default]
    Http,
    /// `RESTRequest`/`RESTResponse` frames on the events WebSocket
    /// (Asterisk 22.4 and later): no HTTP sessions besides the socket, and
    /// answers ordered with the events.
    Websocket,
}

impl Default for AriSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8088".into(),
            username: "voicepay".into(),
            password: String::new(),
            app: "voicepay".into(),
            originate_timeout_secs: 15,
            rest_transport: RestTransport::default(),
            websocket: WebsocketMode::default(),
            listen: "127.0.0.1:8765".into(),
        }
    }
}

impl AriSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return invalid("ari.url", "must be an http:// or https:// URL"),
        }
        if self.app.is_empty()
            || !self
                .app
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return invalid("ari.app", "must be letters, digits, - or _");
        }
        if !(1..=120).contains(&self.originate_timeout_secs) {
            return invalid("ari.originate_timeout_secs", "must be 1 to 120");
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "ari.listen",
                "must be an IP address and port, e.g. 127.0.0.1:8765",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_transport_defaults_to_http_and_reads_both_names() {
        assert_eq!(AriSettings::default().rest_transport, RestTransport::Http);
        let read = |v: &str| {
            serde_json::from_value::<AriSettings>(serde_json::json!({"rest_transport": v}))
        };
        assert_eq!(
            read("websocket").unwrap().rest_transport,
            RestTransport::Websocket
        );
        assert_eq!(read("http").unwrap().rest_transport, RestTransport::Http);
        let mode =
            |v: &str| serde_json::from_value::<AriSettings>(serde_json::json!({"websocket": v}));
        assert_eq!(AriSettings::default().websocket, WebsocketMode::Inbound);
        assert_eq!(mode("outbound").unwrap().websocket, WebsocketMode::Outbound);
        assert!(mode("sideways").is_err());
        let bad = AriSettings {
            listen: "localhost".into(),
            ..AriSettings::default()
        };
        assert!(bad.validate().is_err());
        let err = read("grpc").unwrap_err().to_string();
        assert!(err.contains("http") && err.contains("websocket"), "{err}");
    }
}
