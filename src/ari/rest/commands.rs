//! What a call does to its channel: originate, answer, play (and ask
//! whether a playback still exists), hang up, continue in the dialplan, set
//! a variable. The call flows see these
//! through [`AriCommands`], so tests and benchmarks can stand in for
//! Asterisk.

use super::{AriError, AriRest, Result};
use crate::ari::events::Channel;
use reqwest::Method;
use std::collections::BTreeMap;
use std::future::Future;

/// Why we hang a channel up, as ARI's `reason` list spells it; the far end
/// sees the matching cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupReason {
    /// Normal clearing (16).
    Normal,
    /// User busy (17).
    Busy,
    /// Congestion (34).
    Congestion,
    /// No answer (19).
    NoAnswer,
    /// Temporary failure (41).
    Failure,
}

impl HangupReason {
    /// The query value ARI expects.
    pub fn as_str(self) -> &'static str {
        match self {
            HangupReason::Normal => "normal",
            HangupReason::Busy => "busy",
            HangupReason::Congestion => "congestion",
            HangupReason::NoAnswer => "no_answer",
            HangupReason::Failure => "failure",
        }
    }
}

/// A call to place into our Stasis app (`POST /channels/{channelId}`).
/// Nothing here may carry a secret: Asterisk logs `appArgs` and variables.
#[derive(Debug, Clone, Default)]
pub struct Originate {
    /// Dial string, e.g. `PJSIP/13700000001@trunk`.
    pub endpoint: String,
    /// Our Stasis app.
    pub app: String,
    /// `StasisStart.args` once answered.
    pub app_args: Vec<String>,
    /// Caller id presented to the callee, `"Name" <number>` or a number.
    pub caller_id: Option<String>,
    /// Ring time before giving up; ARI's default is 30 s, so always set it.
    pub timeout_secs: u32,
    /// The channel id we choose: events can arrive before the response.
    pub channel_id: String,
    /// Channel variables set before dialing.
    pub variables: BTreeMap<String, String>,
}

/// The REST calls the call flows make, as a trait so tests and benchmarks
/// can stand in for Asterisk. [`AriRest`] is the real one.
pub trait AriCommands: Send + Sync {
    /// Places a call into our app with our channel id. Not retried: after a
    /// timeout the call may exist; watch for its events or `GET /channels`
    /// (a second attempt with the same id answers 409).
    fn originate(&self, o: &Originate) -> impl Future<Output = Result<Channel>> + Send;
    /// Answers an inbound channel.
    fn answer(&self, channel_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Starts one playback of `media` (played in order) with our id.
    fn play(
        &self,
        channel_id: &str,
        playback_id: &str,
        media: &[String],
        lang: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Stops a playback; one that already ended counts as stopped.
    fn stop_playback(&self, playback_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Hangs a channel up; one already gone counts as hung up.
    fn hangup(
        &self,
        channel_id: &str,
        reason: HangupReason,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Sends the channel back to the dialplan (leaves our app).
    fn continue_in_dialplan(
        &self,
        channel_id: &str,
        context: &str,
        extension: &str,
        priority: u32,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Sets a channel variable (never a secret: ChannelVarset events and
    /// logs show it).
    fn set_variable(
        &self,
        channel_id: &str,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Resolves when the events socket is up (at once if it is). While it
    /// is down a call can neither hear the caller nor know whether the
    /// channel still exists, so its IVR timers wait for this (or for the
    /// call's queue to close, which means the call was lost). Stand-ins
    /// without a socket are always up.
    fn events_up(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
    /// How many times the events socket has come up (each time after
    /// reconciliation). A call reads it, then learns from
    /// [`AriCommands::events_reconnected`] that the socket went down and
    /// came back, its channel's events meanwhile lost. Stand-ins without a
    /// socket stay at 0.
    fn events_epoch(&self) -> u64 {
        0
    }
    /// Resolves, with the new epoch, once the events socket is up again
    /// after `epoch` (see [`AriCommands::events_epoch`]); never for
    /// stand-ins without a socket.
    fn events_reconnected(&self, epoch: u64) -> impl Future<Output = u64> + Send {
        let _ = epoch;
        std::future::pending()
    }
    /// Whether a playback still exists (`GET /playbacks/{playbackId}`):
    /// false when Asterisk answers 404, which it does as soon as the
    /// playback is done (played out, stopped or failed). How a call learns
    /// that a prompt ended while the events socket was down.
    fn playback_exists(&self, playback_id: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// A 404 on something we wanted gone means it is gone already.
fn gone_is_done(r: Result<()>) -> Result<()> {
    match r {
        Err(AriError::NotFound) => Ok(()),
        other => other,
    }
}

impl AriCommands for AriRest {
    async fn events_up(&self) {
        let mut rx = self.events.up.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|up| *up).await;
    }

    fn events_epoch(&self) -> u64 {
        *self.events.epoch.borrow()
    }

    async fn events_reconnected(&self, epoch: u64) -> u64 {
        let mut rx = self.events.epoch.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let now = rx.wait_for(|n| *n > epoch).await.map(|n| *n);
        now.unwrap_or(epoch)
    }

    async fn playback_exists(&self, playback_id: &str) -> Result<bool> {
        let req = self.request(Method::GET, &["playbacks", playback_id]);
        match self.send(req).await {
            Ok(()) => Ok(true),
            Err(AriError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn originate(&self, o: &Originate) -> Result<Channel> {
        let mut query: Vec<(&str, String)> = vec![
            ("endpoint", o.endpoint.clone()),
            ("app", o.app.clone()),
            ("timeout", o.timeout_secs.to_string()),
        ];
        if !o.app_args.is_empty() {
            query.push(("appArgs", o.app_args.join(",")));
        }
        if let Some(cid) = &o.caller_id {
            query.push(("callerId", cid.clone()));
        }
        let mut req = self
            .request(Method::POST, &["channels", &o.channel_id])
            .query(&query)
            .timeout(self.originate_timeout);
        if !o.variables.is_empty() {
            req = req.json(&serde_json::json!({ "variables": o.variables }));
        }
        self.send_json(req).await
    }

    async fn answer(&self, channel_id: &str) -> Result<()> {
        let req = self.request(Method::POST, &["channels", channel_id, "answer"]);
        self.send(req).await
    }

    async fn play(
        &self,
        channel_id: &str,
        playback_id: &str,
        media: &[String],
        lang: Option<&str>,
    ) -> Result<()> {
        // One comma-separated `media`: Asterisk keeps only the last of
        // repeated query parameters, which would play only the last file.
        let media = media.join(",");
        let mut query: Vec<(&str, &str)> = vec![("media", media.as_str())];
        if let Some(lang) = lang {
            query.push(("lang", lang));
        }
        let req = self
            .request(Method::POST, &["channels", channel_id, "play", playback_id])
            .query(&query);
        self.send(req).await
    }

    async fn stop_playback(&self, playback_id: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &["playbacks", playback_id]);
        gone_is_done(self.send(req).await)
    }

    async fn hangup(&self, channel_id: &str, reason: HangupReason) -> Result<()> {
        let req = self
            .request(Method::DELETE, &["channels", channel_id])
            .query(&[("reason", reason.as_str())]);
        gone_is_done(self.send(req).await)
    }

    async fn continue_in_dialplan(
        &self,
        channel_id: &str,
        context: &str,
        extension: &str,
        priority: u32,
    ) -> Result<()> {
        let priority = priority.to_string();
        let req = self
            .request(Method::POST, &["channels", channel_id, "continue"])
            .query(&[
                ("context", context),
                ("extension", extension),
                ("priority", &priority),
            ]);
        self.send(req).await
    }

    async fn set_variable(&self, channel_id: &str, name: &str, value: &str) -> Result<()> {
        let req = self
            .request(Method::POST, &["channels", channel_id, "variable"])
            .query(&[("variable", name), ("value", value)]);
        self.send(req).await
    }
}
