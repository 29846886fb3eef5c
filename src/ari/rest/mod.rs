//! ARI's REST side: the few calls a payment call needs, over one pooled
//! reqwest client.
//!
//! Policy: every request has a timeout; idle pooled connections are dropped
//! after 10 s, before Asterisk's `session_keep_alive` (15 s) closes them under
//! us; nothing is retried here, because a POST that timed out may have
//! happened (an originate twice is a second phone call). Ids are chosen by
//! us (`channelId`, `playbackId`) so that events arriving before a response
//! can already be routed, and a retry by the caller can be detected (409).
//! After a hang-up any call on the channel may answer 404: deletes treat it
//! as done, other calls return [`AriError::NotFound`] for the caller to
//! ignore.
//!
//! - `client.rs`: [`AriRest`], its connection pool, timeouts and the
//!   mapping of answers to [`AriError`].
//! - `commands.rs`: what one call does to its channel ([`AriCommands`]).
//! - `bridges.rs`: the assisted flow's bridge and mutes.
//! - `asterisk.rs`: requests about Asterisk as a whole (which one runs, its
//!   channels, global variables).
//! - `ws.rs`: the same requests as frames on the events WebSocket
//!   (`ari.rest_transport = "websocket"`, Asterisk 22.4+): codec and
//!   multiplexer.

mod asterisk;
mod bridges;
mod client;
mod commands;
pub(crate) mod ws;

pub use asterisk::AsteriskInfo;
pub(crate) use client::{ari_base, basic_auth};
pub use client::{AriRest, RestOptions};
pub use commands::{AriCommands, HangupReason, Originate};

/// Errors of ARI requests and of the events connection.
#[derive(Debug, thiserror::Error)]
pub enum AriError {
    /// The channel, playback or variable does not exist (often: the caller
    /// already hung up).
    #[error("ARI: not found")]
    NotFound,
    /// The id is taken, or the channel is in a state that forbids the call
    /// (e.g. not in Stasis).
    #[error("ARI: conflict: {0}")]
    Conflict(String),
    /// Asterisk refused our credentials: retrying will not help until
    /// `ari.username`/`ari.password` match ari.conf.
    #[error(
        "ARI refused the credentials (401): check ari.username and ari.password against ari.conf"
    )]
    Unauthorized,
    /// Any other non-success status, with Asterisk's message.
    #[error("ARI answered {0}: {1}")]
    Status(u16, String),
    /// The request or the socket failed underneath (refused, reset,
    /// timed out, bad response body).
    #[error("ARI transport error: {0}")]
    Transport(String),
    /// The settings cannot work (e.g. an `ari.url` that is not http://).
    #[error("ARI settings: {0}")]
    Config(String),
}

/// Results of ARI calls.
pub type Result<T, E = AriError> = std::result::Result<T, E>;

impl From<reqwest::Error> for AriError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: ours carry channel ids, never secrets, but keep
        // logs short and uniform.
        // With the causes underneath: "error sending request" alone does
        // not tell a refused connection from a reset or a timeout.
        let e = e.without_url();
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        AriError::Transport(text)
    }
}
