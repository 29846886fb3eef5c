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

use super::events::Channel;
use crate::config::AriSettings;
use base64::Engine as _;
use reqwest::{header, Method, StatusCode, Url};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

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

/// Timeouts of the REST client. The defaults suit a local Asterisk.
#[derive(Debug, Clone)]
pub struct RestOptions {
    /// Whole-request limit: ARI answers in milliseconds unless it is stuck.
    pub request_timeout: Duration,
    /// TCP connect limit.
    pub connect_timeout: Duration,
    /// Idle pooled connections close after this; keep it under Asterisk's
    /// `session_keep_alive` (15 s) so we never write to a closing socket.
    pub pool_idle_timeout: Duration,
    /// Requests in flight at once, so connections (Asterisk's http.conf
    /// `sessionlimit`, 200 in ours, counts each one with the events
    /// socket) stay bounded when thousands of calls act at once; more wait
    /// their turn. Keep it well under `sessionlimit`.
    pub max_in_flight: usize,
}

impl Default for RestOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(10),
            max_in_flight: 64,
        }
    }
}

/// What `GET /asterisk/info` tells us: which Asterisk this is and when it
/// started. A restart means every channel we knew is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsteriskInfo {
    /// `system.entity_id`: by default derived from the host's MAC address,
    /// so it stays the same across a restart on the same machine (seen on
    /// Asterisk 22.10); it changes when another host answers.
    pub entity_id: String,
    /// `status.startup_time`: changes on every start, so this is what tells
    /// a restart of the same Asterisk apart from a dropped socket. Empty if
    /// Asterisk did not send it.
    pub startup_time: String,
    /// `system.version`.
    pub version: String,
}

impl AsteriskInfo {
    /// Whether `self` is a different run of Asterisk than `before`: another
    /// entity, or the same one started again.
    pub fn restarted_since(&self, before: &AsteriskInfo) -> bool {
        self.entity_id != before.entity_id
            || (!self.startup_time.is_empty()
                && !before.startup_time.is_empty()
                && self.startup_time != before.startup_time)
    }
}

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
}

/// The real ARI REST client. Cheap to clone: clones share one connection
/// pool.
#[derive(Clone)]
pub struct AriRest {
    http: reqwest::Client,
    /// `{url}/ari/`, ending in a slash so joins keep the prefix.
    base: Url,
    auth: header::HeaderValue,
    /// Whether the events socket is up and reconciled, set by the
    /// connection task (see [`AriCommands::events_up`]).
    events: Arc<watch::Sender<bool>>,
    /// Bounds requests in flight (see [`RestOptions::max_in_flight`]).
    in_flight: Arc<Semaphore>,
    /// `ari.originate_timeout_secs`: the limit for `POST /channels`.
    originate_timeout: Duration,
}

impl std::fmt::Debug for AriRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the auth header.
        f.debug_struct("AriRest")
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// `Authorization: Basic …` for the settings' user, marked sensitive so
/// reqwest and http never print it.
pub(crate) fn basic_auth(settings: &AriSettings) -> Result<header::HeaderValue> {
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", settings.username, settings.password));
    let mut value = header::HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|_| AriError::Config("username or password is not a valid header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `{url}/ari/` from `ari.url`, which must be an http(s) base URL.
pub(crate) fn ari_base(settings: &AriSettings) -> Result<Url> {
    let mut url = Url::parse(settings.url.trim_end_matches('/'))
        .map_err(|e| AriError::Config(format!("ari.url {:?}: {e}", settings.url)))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(AriError::Config(format!(
            "ari.url must be http://host:port, got {:?}",
            settings.url
        )));
    }
    let path = format!("{}/ari/", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    Ok(url)
}

impl AriRest {
    /// A client for `settings` with default timeouts.
    pub fn new(settings: &AriSettings) -> Result<Self> {
        Self::with_options(settings, &RestOptions::default())
    }

    /// A client with explicit timeouts.
    pub fn with_options(settings: &AriSettings, options: &RestOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.max_in_flight)
            .build()
            .map_err(|e| AriError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: ari_base(settings)?,
            auth: basic_auth(settings)?,
            events: Arc::new(watch::channel(false).0),
            in_flight: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            originate_timeout: Duration::from_secs(settings.originate_timeout_secs.max(1)),
        })
    }

    /// Records whether the events socket is up; set by the connection task
    /// only after reconciliation, so a call whose channel vanished has seen
    /// its queue close before this says "up" again.
    pub(crate) fn set_events_connected(&self, up: bool) {
        self.events
            .send_if_modified(|v| std::mem::replace(v, up) != up);
    }

    /// `GET /asterisk/info`: the entity id and start time tell a restart
    /// apart from a dropped socket.
    pub async fn asterisk_info(&self) -> Result<AsteriskInfo> {
        #[derive(Deserialize)]
        struct Info {
            system: Option<System>,
            #[serde(default)]
            status: Option<Status>,
        }
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            startup_time: String,
        }
        #[derive(Deserialize)]
        struct System {
            entity_id: String,
            #[serde(default)]
            version: String,
        }
        let info: Info = self
            .send_json(self.request(Method::GET, &["asterisk", "info"]))
            .await?;
        let system = info
            .system
            .ok_or_else(|| AriError::Status(200, "asterisk/info has no system section".into()))?;
        Ok(AsteriskInfo {
            entity_id: system.entity_id,
            startup_time: info.status.map(|s| s.startup_time).unwrap_or_default(),
            version: system.version,
        })
    }

    /// `GET /channels`: every channel Asterisk has (all apps), to reconcile
    /// after a reconnect.
    pub async fn channels(&self) -> Result<Vec<Channel>> {
        self.send_json(self.request(Method::GET, &["channels"]))
            .await
    }

    /// Sets a global dialplan variable (`POST /asterisk/variable`), for
    /// switches the dialplan reads (e.g. whether payments are open).
    pub async fn set_global(&self, name: &str, value: &str) -> Result<()> {
        let req = self
            .request(Method::POST, &["asterisk", "variable"])
            .query(&[("variable", name), ("value", value)]);
        self.send(req).await
    }

    fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("base is http(s)")
            .pop_if_empty()
            .extend(segments);
        self.http
            .request(method, url)
            .header(header::AUTHORIZATION, self.auth.clone())
    }

    /// Sends and maps error statuses to [`AriError`].
    /// Sends one request and reads its whole body, inside one of the
    /// `max_in_flight` permits: a connection goes back to the pool only once
    /// its body is read, so this bounds the HTTP sessions we hold open.
    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| AriError::Transport("REST client closed".into()))?;
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.bytes().await?.to_vec());
        }
        let message = error_message(resp).await;
        Err(match status {
            StatusCode::NOT_FOUND => AriError::NotFound,
            StatusCode::CONFLICT => AriError::Conflict(message),
            StatusCode::UNAUTHORIZED => AriError::Unauthorized,
            s => AriError::Status(s.as_u16(), message),
        })
    }

    /// A request whose answer we do not need.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<()> {
        self.exchange(req).await.map(drop)
    }

    /// A request whose JSON answer we read.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T> {
        let body = self.exchange(req).await?;
        serde_json::from_slice(&body)
            .map_err(|e| AriError::Transport(format!("unexpected ARI answer: {e}")))
    }
}

/// Asterisk's `{"message": …}`, or a short prefix of the body.
async fn error_message(resp: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let body = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<Message>(&body) {
        Ok(m) => m.message,
        Err(_) => body.chars().take(200).collect(),
    }
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
        let mut rx = self.events.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|up| *up).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> AriSettings {
        AriSettings {
            url: url.into(),
            username: "u".into(),
            password: "p".into(),
            app: "voicepay".into(),
            ..AriSettings::default()
        }
    }

    #[test]
    fn base_url_keeps_a_prefix_and_adds_ari() {
        let b = ari_base(&settings("http://127.0.0.1:8088")).unwrap();
        assert_eq!(b.as_str(), "http://127.0.0.1:8088/ari/");
        let b = ari_base(&settings("http://h:1/asterisk/")).unwrap();
        assert_eq!(b.as_str(), "http://h:1/asterisk/ari/");
        assert!(ari_base(&settings("ws://h:1")).is_err());
        assert!(ari_base(&settings("nonsense")).is_err());
    }

    #[test]
    fn path_segments_are_escaped() {
        let rest = AriRest::new(&settings("http://h:1")).unwrap();
        let req = rest
            .request(Method::DELETE, &["playbacks", "c/1 x:3"])
            .build()
            .unwrap();
        assert_eq!(req.url().path(), "/ari/playbacks/c%2F1%20x:3");
        assert!(req.headers()[header::AUTHORIZATION].is_sensitive());
        assert!(!format!("{rest:?}").contains("Basic"));
    }

    #[test]
    fn a_new_start_time_is_a_restart_even_with_the_same_entity_id() {
        let info = |entity: &str, started: &str| AsteriskInfo {
            entity_id: entity.into(),
            startup_time: started.into(),
            version: "22.10.1".into(),
        };
        let before = info("02:fc:00:00:00:01", "2026-11-25T20:44:01.987+0000");
        assert!(!before.restarted_since(&before));
        assert!(info("02:fc:00:00:00:01", "2026-11-25T21:02:11.004+0000").restarted_since(&before));
        assert!(info("02:fc:00:00:00:02", "2026-11-25T20:44:01.987+0000").restarted_since(&before));
        // An Asterisk that sends no start time: only the entity id counts.
        assert!(!info("02:fc:00:00:00:01", "").restarted_since(&before));
    }

    #[test]
    fn auth_header_is_basic() {
        let v = basic_auth(&settings("http://h:1")).unwrap();
        assert_eq!(v.to_str().unwrap(), "Basic dTpw");
    }
}
