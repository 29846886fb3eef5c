//! The ARI client: how voicepay hears and drives Asterisk.
//!
//! - [`events`]: typed events, IO-free; unknown types and values never fail.
//! - [`rest`]: the REST calls ([`AriRest`], behind the [`AriCommands`] trait).
//! - [`connection`]: the events WebSocket with keep-alive and reconnect.
//! - [`dispatch`]: one ordered queue per call.
//! - [`outbound`]: `ari.websocket = "outbound"`, Asterisk 22.5+ connecting
//!   to us (its doc comment is the design note).
//!
//! [`AriClient::start`] spawns the connection and hands the supervisor one
//! ordered stream of [`Notice`]s: connection changes (flip `/readyz`,
//! reconcile orders) and new calls (spawn a task per [`Call`]):
//!
//! ```text
//! let mut ari = AriClient::start(&settings.ari, shutdown.clone())?;
//! while let Some(notice) = ari.notices.recv().await {
//!     match notice {
//!         Notice::Connected { asterisk_restarted, channels, .. } => { /* ready; reconcile */ }
//!         Notice::Disconnected { .. } | Notice::ConnectFailed { .. } => { /* not ready */ }
//!         Notice::Call(call) => { tokio::spawn(run_call(call)); }
//!         Notice::Unrouted(event) => tracing::debug!(event = event.type_name(), "no call for event"),
//!     }
//! }
//! ```
//!
//! Conventions: channel ids of originates and playback ids are chosen by us;
//! a playback id is `<channelId>:<n>` ([`events::playback_id`]), so playback
//! events reach the call that started them.
#![warn(missing_docs)]

pub mod connection;
pub mod dispatch;
pub mod events;
pub mod outbound;
pub mod rest;

pub use connection::ConnectionOptions;
pub use dispatch::{Call, Dispatcher};
pub use events::{playback_id, Channel, ChannelState, Event, Playback, PlaybackState};
pub use rest::{
    AriCommands, AriError, AriRest, AsteriskInfo, HangupReason, Originate, RestOptions,
};

use crate::config::{AriSettings, WebsocketMode};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the ARI client tells its supervisor, in the order it happened.
#[derive(Debug)]
pub enum Notice {
    /// The events socket is up. Every `Connected` calls for reconciliation:
    /// events were lost while down (or before the daemon started), so
    /// compare `channels` with the calls and orders we believe in.
    Connected {
        /// Asterisk's `system.entity_id`.
        entity_id: String,
        /// The entity id or the start time differs from the previous
        /// connection's: Asterisk restarted and every channel we knew is
        /// gone. False on the first connection (nothing to compare with).
        asterisk_restarted: bool,
        /// `GET /channels` taken right after the socket opened (all apps).
        channels: Vec<Channel>,
    },
    /// The socket was lost; reconnecting. Calls keep their queues: if their
    /// channels survive, their events resume after `Connected`.
    Disconnected {
        /// What happened, for the log.
        reason: String,
    },
    /// A connection attempt failed; the next one comes after `retry_in`.
    /// [`AriError::Unauthorized`] means the settings are wrong.
    ConnectFailed {
        /// Why.
        error: AriError,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// A channel we had no queue for: a new call (see [`dispatch`]).
    Call(Call),
    /// An event that belongs to no open call: app-wide events
    /// (`ApplicationReplaced`) or late events of an ended call.
    Unrouted(Event),
}

/// All the client's timeouts and intervals.
#[derive(Debug, Clone, Default)]
pub struct AriOptions {
    /// The REST client's.
    pub rest: RestOptions,
    /// The events connection's.
    pub connection: ConnectionOptions,
}

/// A running ARI client: the REST side for commands, the notices for the
/// supervisor, and the connection task (ends after shutdown is cancelled,
/// or when `notices` is dropped).
pub struct AriClient {
    /// For commands outside a call (originate, reconciliation).
    pub rest: AriRest,
    /// Connection changes and new calls, in order.
    pub notices: mpsc::UnboundedReceiver<Notice>,
    /// The connection task; await it after cancelling shutdown so the socket
    /// closes cleanly.
    pub task: JoinHandle<()>,
    /// With `ari.websocket = "outbound"`: the address bound for Asterisk's
    /// connection (`ari.listen`, with the real port when it said `:0`).
    pub listen_addr: Option<SocketAddr>,
}

impl AriClient {
    /// Starts the client with default timings. Fails only on settings that
    /// can never work; an unreachable Asterisk is retried for ever.
    pub fn start(settings: &AriSettings, shutdown: CancellationToken) -> Result<Self, AriError> {
        Self::start_with(settings, AriOptions::default(), shutdown)
    }

    /// Starts the client with explicit timings (tests shorten them). Must be
    /// called inside a tokio runtime.
    pub fn start_with(
        settings: &AriSettings,
        options: AriOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, AriError> {
        if settings.app.is_empty() {
            return Err(AriError::Config("ari.app is empty".into()));
        }
        if connection::events_url(settings)?.scheme() != "ws" {
            // tokio-tungstenite is built without TLS; ARI runs on loopback.
            return Err(AriError::Config(
                "ari.url must be http:// (the events socket has no TLS support)".into(),
            ));
        }
        let rest = AriRest::with_options(settings, &options.rest)?;
        let listener = match settings.websocket {
            WebsocketMode::Inbound => None,
            WebsocketMode::Outbound => Some(outbound::bind(settings)?),
        };
        let listen_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(addr) = listen_addr {
            tracing::info!(%addr, "waiting for Asterisk's outbound ARI WebSocket");
        }
        let (tx, notices) = mpsc::unbounded_channel();
        let task = tokio::spawn(connection::run(
            settings.clone(),
            rest.clone(),
            options.connection,
            tx,
            shutdown,
            listener,
        ));
        Ok(Self {
            rest,
            notices,
            task,
            listen_addr,
        })
    }
}
