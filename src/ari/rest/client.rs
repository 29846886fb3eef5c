//! The REST client itself: one pooled reqwest client, the request
//! timeouts, the bound on requests in flight, and how an answer's status
//! becomes an [`AriError`]. With `ari.rest_transport = "websocket"` the
//! same requests are built the same way, then carried as frames on the
//! events WebSocket instead ([`super::ws`]).

use super::ws::{WsRequest, WsRest};
use super::{AriError, Result};
use crate::config::{AriSettings, RestTransport};
use base64::Engine as _;
use reqwest::{header, Method, StatusCode, Url};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

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

/// The events socket's state as the calls see it (one `Arc` in
/// [`AriRest`], which every queued [`Call`](crate::ari::Call) carries).
pub(super) struct EventsSocket {
    /// Up and reconciled.
    pub(super) up: watch::Sender<bool>,
    /// How many times it has come up (see
    /// [`AriCommands::events_epoch`](super::AriCommands::events_epoch)).
    pub(super) epoch: watch::Sender<u64>,
    /// `Some` with `ari.rest_transport = "websocket"`: requests go over
    /// this socket through the multiplexer, not over HTTP.
    pub(super) ws: Option<Arc<WsRest>>,
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
    /// connection task (see
    /// [`AriCommands::events_up`](super::AriCommands::events_up)).
    pub(super) events: Arc<EventsSocket>,
    /// Bounds requests in flight (see [`RestOptions::max_in_flight`]).
    in_flight: Arc<Semaphore>,
    /// `ari.originate_timeout_secs`: the limit for `POST /channels`.
    pub(super) originate_timeout: Duration,
}

impl std::fmt::Debug for AriRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the auth header.
        f.debug_struct("AriRest")
            .field("base", &self.base.as_str())
            .field("transport", &self.transport())
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
            events: Arc::new(EventsSocket {
                up: watch::channel(false).0,
                epoch: watch::channel(0).0,
                ws: (settings.rest_transport == RestTransport::Websocket)
                    .then(|| Arc::new(WsRest::new(options.request_timeout))),
            }),
            in_flight: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            originate_timeout: Duration::from_secs(settings.originate_timeout_secs.max(1)),
        })
    }

    /// Which transport the requests take.
    pub fn transport(&self) -> RestTransport {
        match self.events.ws {
            Some(_) => RestTransport::Websocket,
            None => RestTransport::Http,
        }
    }

    /// The multiplexer the connection task feeds, with the websocket
    /// transport.
    pub(crate) fn ws(&self) -> Option<&Arc<WsRest>> {
        self.events.ws.as_ref()
    }

    /// Records whether the events socket is up; set by the connection task
    /// only after reconciliation, so a call whose channel vanished has seen
    /// its queue close before this says "up" again.
    pub(crate) fn set_events_connected(&self, up: bool) {
        let changed = self
            .events
            .up
            .send_if_modified(|v| std::mem::replace(v, up) != up);
        if changed && up {
            self.events.epoch.send_modify(|n| *n += 1);
        }
    }

    pub(super) fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("base is http(s)")
            .pop_if_empty()
            .extend(segments);
        self.http
            .request(method, url)
            .header(header::AUTHORIZATION, self.auth.clone())
    }

    /// Sends one request and reads its whole body, inside one of the
    /// `max_in_flight` permits (over HTTP a connection goes back to the pool
    /// only once its body is read, so this bounds the HTTP sessions we hold
    /// open; over the WebSocket it bounds the requests waiting for an
    /// answer), and maps error statuses to [`AriError`].
    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| AriError::Transport("REST client closed".into()))?;
        let req = req.build()?;
        let (status, body) = match &self.events.ws {
            None => {
                let resp = self.http.execute(req).await?;
                let status = resp.status();
                let body = if status.is_success() {
                    resp.bytes().await?
                } else {
                    resp.bytes().await.unwrap_or_default()
                };
                (status, body.to_vec())
            }
            Some(ws) => {
                let frame = self.ws_request(&req);
                let answer = ws.exchange(&frame, req.timeout().copied()).await?;
                let status = StatusCode::from_u16(answer.status).map_err(|_| {
                    AriError::Transport(format!("ARI answered status {}", answer.status))
                })?;
                (status, answer.body)
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let message = error_message(&body);
        Err(match status {
            StatusCode::NOT_FOUND => AriError::NotFound,
            StatusCode::CONFLICT => AriError::Conflict(message),
            StatusCode::UNAUTHORIZED => AriError::Unauthorized,
            s => AriError::Status(s.as_u16(), message),
        })
    }

    /// The same request as a `RESTRequest`: the path below `/ari/` (still
    /// percent-encoded; Asterisk decodes each segment), the decoded query
    /// pairs and the body. No `Authorization`: the socket was opened with it.
    fn ws_request(&self, req: &reqwest::Request) -> WsRequest {
        let path = req.url().path();
        let uri = path.strip_prefix(self.base.path()).unwrap_or(path);
        let body = req.body().and_then(reqwest::Body::as_bytes).map(|b| {
            let kind = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json");
            (kind.to_owned(), String::from_utf8_lossy(b).into_owned())
        });
        WsRequest {
            method: req.method().as_str().to_owned(),
            uri: uri.to_owned(),
            query: req
                .url()
                .query_pairs()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            body,
        }
    }

    /// A request whose answer we do not need.
    pub(super) async fn send(&self, req: reqwest::RequestBuilder) -> Result<()> {
        self.exchange(req).await.map(drop)
    }

    /// A request whose JSON answer we read.
    pub(super) async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T> {
        let body = self.exchange(req).await?;
        serde_json::from_slice(&body)
            .map_err(|e| AriError::Transport(format!("unexpected ARI answer: {e}")))
    }
}

/// Asterisk's `{"message": …}`, or a short prefix of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(body).chars().take(200).collect(),
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
    fn ws_requests_carry_path_query_and_body_but_no_credentials() {
        let mut s = settings("http://h:1/asterisk");
        s.rest_transport = RestTransport::Websocket;
        let rest = AriRest::new(&s).unwrap();
        assert_eq!(rest.transport(), RestTransport::Websocket);
        let req = rest
            .request(Method::POST, &["channels", "vp 1", "play", "vp-1:2"])
            .query(&[("media", "sound:a,sound:b"), ("lang", "zh cn")])
            .json(&serde_json::json!({"variables": {"A": "1"}}))
            .build()
            .unwrap();
        let ws = rest.ws_request(&req);
        assert_eq!(ws.method, "POST");
        assert_eq!(ws.uri, "channels/vp%201/play/vp-1:2");
        let query: Vec<(&str, &str)> = ws
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(query, [("media", "sound:a,sound:b"), ("lang", "zh cn")]);
        let (kind, body) = ws.body.as_ref().unwrap();
        assert_eq!(
            (kind.as_str(), body.as_str()),
            ("application/json", r#"{"variables":{"A":"1"}}"#)
        );
        let frame = super::super::ws::encode_request("vp1", &ws);
        assert!(
            !frame.contains("Basic") && !frame.contains("dTpw"),
            "{frame}"
        );
        assert_eq!(
            AriRest::new(&settings("http://h:1")).unwrap().transport(),
            RestTransport::Http
        );
    }

    #[test]
    fn auth_header_is_basic() {
        let v = basic_auth(&settings("http://h:1")).unwrap();
        assert_eq!(v.to_str().unwrap(), "Basic dTpw");
    }
}
