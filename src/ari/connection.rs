//! The events WebSocket: connect, keep alive, read, reconnect.
//!
//! One task owns the socket and the [`Dispatcher`]. Each session: open
//! `/ari/events` (Basic auth header, never `api_key` in the URL, which ends
//! up in logs), then read `/asterisk/info` and `GET /channels` — in that
//! order, so no event is missed between the snapshot and the stream — and
//! announce [`Notice::Connected`]. A ping goes out every `ping_interval`; a
//! ping still unanswered at the next tick, a read error or a close ends the
//! session with [`Notice::Disconnected`]. Reconnects back off exponentially
//! with jitter, so a down or misconfigured Asterisk is not hammered.
//!
//! With `ari.websocket = "outbound"` (Asterisk 22.5+, see
//! [`super::outbound`]) a session starts by accepting Asterisk's
//! connection on `ari.listen` instead, and the rest is the same; there is
//! no backoff (`retry_in` is zero): Asterisk paces its reconnects.
//!
//! A frame that does not parse is logged by type and position only and
//! skipped: a frame can hold a keyed digit, so no payload is ever logged.
//!
//! With `ari.rest_transport = "websocket"` the socket also carries the REST
//! requests (`rest/ws.rs`): this task writes the frames the multiplexer
//! queues and hands it every `RESTResponse` it reads. The snapshot's own
//! requests need the socket read while they wait, so events that arrive
//! meanwhile are kept and dispatched, in order, right after `Connected`,
//! as the HTTP transport leaves them in the socket until then. When a
//! session ends, every request still waiting fails at once.

use super::dispatch::Dispatcher;
use super::events::{self, Event};
use super::rest::ws::WsRest;
use super::rest::{basic_auth, AriError, AriRest, AsteriskInfo};
use super::Notice;
use crate::config::AriSettings;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroize;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Timing of the events connection.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// How often to ping; a ping unanswered by the next one drops the
    /// socket (a half-open TCP connection otherwise looks alive for ever).
    pub ping_interval: Duration,
    /// First reconnect delay; it doubles after each failure.
    pub backoff_min: Duration,
    /// Largest reconnect delay. A session that lasted at least this long
    /// resets the delay to `backoff_min`.
    pub backoff_max: Duration,
    /// Limit for the TCP connect plus WebSocket handshake.
    pub connect_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The events URL: `ws://host:port/ari/events?app=<app>&subscribeAll=false`.
pub(crate) fn events_url(settings: &AriSettings) -> Result<reqwest::Url, AriError> {
    let mut url = super::rest::ari_base(settings)?
        .join("events")
        .expect("relative path");
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme).expect("http(s) to ws(s)");
    url.query_pairs_mut()
        .append_pair("app", &settings.app)
        .append_pair("subscribeAll", "false");
    Ok(url)
}

/// How a session ended.
enum End {
    /// Shutdown was requested: stop.
    Shutdown,
    /// Nobody reads notices any more: stop.
    SupervisorGone,
    /// Never got to `Connected`.
    Failed(AriError),
    /// Was connected, then lost the socket.
    Dropped(String),
}

impl End {
    /// For the requests that fail with the session.
    fn describe(&self) -> String {
        match self {
            End::Shutdown => "shutting down".into(),
            End::SupervisorGone => "ARI client stopped".into(),
            End::Failed(e) => e.to_string(),
            End::Dropped(reason) => reason.clone(),
        }
    }
}

/// Doubling delay with jitter: each delay is uniform in [d/2, d], so nodes
/// that lost Asterisk together do not reconnect in lockstep.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let half = d / 2;
        half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The connection task: sessions until shutdown or until the supervisor is
/// gone. Dropping the dispatcher at the end closes every call's queue.
pub(crate) async fn run(
    settings: AriSettings,
    rest: AriRest,
    options: ConnectionOptions,
    notices: mpsc::UnboundedSender<Notice>,
    shutdown: CancellationToken,
    listener: Option<TcpListener>,
) {
    // Outbound: Asterisk paces its reconnects; we just accept the next one.
    let outbound = listener.is_some();
    let mut conn = Connection {
        listener,
        dispatcher: Dispatcher::new(notices.clone(), rest.clone()),
        settings,
        rest,
        notices,
        last: None,
        options: options.clone(),
    };
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    loop {
        let started = Instant::now();
        let end = conn.session(&shutdown).await;
        conn.rest.set_events_connected(false);
        if let Some(ws) = conn.rest.ws() {
            ws.detach(&end.describe());
        }
        match end {
            End::Shutdown => break,
            End::SupervisorGone => {
                tracing::warn!("ARI notices have no reader; stopping the ARI connection");
                break;
            }
            End::Failed(error) => {
                let retry_in = if outbound {
                    Duration::ZERO
                } else {
                    backoff.delay()
                };
                tracing::warn!(%error, ?retry_in, "ARI events connection failed");
                if !conn.notify(Notice::ConnectFailed { error, retry_in }) {
                    break;
                }
                if !outbound && !sleep_or_shutdown(retry_in, &shutdown).await {
                    break;
                }
            }
            End::Dropped(reason) => {
                if started.elapsed() >= options.backoff_max {
                    backoff.reset();
                }
                let retry_in = if outbound {
                    Duration::ZERO
                } else {
                    backoff.delay()
                };
                tracing::warn!(%reason, ?retry_in, "ARI events connection lost");
                if !conn.notify(Notice::Disconnected { reason }) {
                    break;
                }
                if !outbound && !sleep_or_shutdown(retry_in, &shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!("ARI events connection stopped");
}

/// Sleeps unless shutdown comes first; false on shutdown.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.cancelled() => false,
    }
}

struct Connection {
    /// `ari.websocket = "outbound"`: where Asterisk connects to us.
    listener: Option<TcpListener>,
    settings: AriSettings,
    rest: AriRest,
    options: ConnectionOptions,
    dispatcher: Dispatcher,
    notices: mpsc::UnboundedSender<Notice>,
    /// What `/asterisk/info` said on the previous connection.
    last: Option<AsteriskInfo>,
}

impl Connection {
    fn notify(&self, notice: Notice) -> bool {
        self.notices.send(notice).is_ok()
    }

    async fn session(&mut self, shutdown: &CancellationToken) -> End {
        let ws = tokio::select! {
            r = self.open() => r,
            _ = shutdown.cancelled() => return End::Shutdown,
        };
        let mut ws = match ws {
            Ok(ws) => ws,
            Err(e) => return End::Failed(e),
        };
        let mut out = self.rest.ws().map(|mux| (mux.clone(), mux.attach()));
        // Zeroed when dropped, on every path: a frame can hold a digit.
        let mut early = zeroize::Zeroizing::new(Vec::new());
        let snapshot = match out.as_mut() {
            None => tokio::select! {
                r = snapshot(&self.rest) => r,
                _ = shutdown.cancelled() => return close(ws).await,
            },
            Some((mux, rx)) => {
                let pumped = pump_snapshot(&self.rest, &mut ws, mux, rx, &mut early, shutdown);
                match pumped.await {
                    Some(r) => r,
                    None => return close(ws).await,
                }
            }
        };
        let (info, channels) = match snapshot {
            Ok(s) => s,
            Err(e) => {
                let _ = close(ws).await;
                return End::Failed(e);
            }
        };
        let restarted = self
            .last
            .as_ref()
            .is_some_and(|old| info.restarted_since(old));
        if restarted {
            tracing::warn!(entity_id = %info.entity_id, startup_time = %info.startup_time, "Asterisk restarted: its old channels are gone");
        }
        self.last = Some(info.clone());
        self.dispatcher.reconcile(restarted, &channels);
        // Only now: calls whose channel is gone have seen their queue close.
        self.rest.set_events_connected(true);
        tracing::info!(entity_id = %info.entity_id, version = %info.version, "ARI events connected");
        if !self.notify(Notice::Connected {
            entity_id: info.entity_id,
            asterisk_restarted: restarted,
            channels,
        }) {
            return End::SupervisorGone;
        }
        for text in early.iter() {
            if let Some(end) = self.on_text(text) {
                return end;
            }
        }
        let mut out = out.map(|(_, rx)| rx);
        self.read(&mut ws, &mut out, shutdown).await
    }

    async fn open(&self) -> Result<Socket, AriError> {
        if let Some(listener) = &self.listener {
            let timeout = self.options.connect_timeout;
            return super::outbound::accept(listener, &self.settings, timeout).await;
        }
        let url = events_url(&self.settings)?;
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| AriError::Config(e.to_string()))?;
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, basic_auth(&self.settings)?);
        let connect = tokio_tungstenite::connect_async(req);
        match tokio::time::timeout(self.options.connect_timeout, connect).await {
            Err(_) => Err(AriError::Transport(
                "events WebSocket: connect timed out".into(),
            )),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(resp))) => Err(match resp.status().as_u16() {
                401 => AriError::Unauthorized,
                code => AriError::Status(code, "events WebSocket refused".into()),
            }),
            Ok(Err(e)) => Err(AriError::Transport(format!("events WebSocket: {e}"))),
        }
    }

    /// Reads events (and REST answers) and writes queued REST requests
    /// (`out`, websocket transport only) until the session ends.
    async fn read(
        &mut self,
        ws: &mut Socket,
        out: &mut Option<mpsc::UnboundedReceiver<String>>,
        shutdown: &CancellationToken,
    ) -> End {
        let every = self.options.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = close_ref(ws).await;
                    return End::Shutdown;
                }
                _ = self.notices.closed() => {
                    let _ = close_ref(ws).await;
                    return End::SupervisorGone;
                }
                msg = ws.next() => match msg {
                    None => return End::Dropped("closed by Asterisk".into()),
                    Some(Err(e)) => return End::Dropped(e.to_string()),
                    Some(Ok(Message::Text(mut text))) => {
                        let end = self.on_text(&text);
                        text.zeroize();
                        if let Some(end) = end {
                            return end;
                        }
                    }
                    Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                    // Pings are answered by tungstenite; a Close is followed
                    // by the end of the stream.
                    Some(Ok(_)) => {}
                },
                Some(frame) = next_out(out) => {
                    if let Err(e) = write_batch(ws, frame, out).await {
                        return End::Dropped(format!("writing a REST request failed: {e}"));
                    }
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        return End::Dropped(format!("no pong within {every:?}"));
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new())).await {
                        return End::Dropped(format!("ping failed: {e}"));
                    }
                    awaiting_pong = true;
                }
            }
        }
    }

    /// Parses and routes one frame; `Some` ends the session.
    fn on_text(&mut self, text: &str) -> Option<End> {
        if self.rest.ws().is_some_and(|mux| mux.on_frame(text)) {
            return None;
        }
        match events::parse(text) {
            Ok(Event::Unknown) => {
                // Nothing can act on a type we do not model.
                tracing::trace!(event = ?events::type_of(text), "unmodelled ARI event ignored");
                None
            }
            Ok(event) => {
                // The type only: a frame's body can carry a keyed digit.
                tracing::trace!(event = ?events::type_of(text), "ARI event");
                let replaced = matches!(event, Event::ApplicationReplaced);
                if !self.dispatcher.dispatch(event) {
                    return Some(End::SupervisorGone);
                }
                replaced.then(|| {
                    tracing::error!(app = %self.settings.app, "another connection took over our ARI app; each node needs its own app name");
                    End::Dropped("application replaced by another connection".into())
                })
            }
            Err(error) => {
                tracing::warn!(%error, "malformed ARI event skipped");
                None
            }
        }
    }
}

/// `/asterisk/info` then `GET /channels`.
async fn snapshot(rest: &AriRest) -> Result<(AsteriskInfo, Vec<super::Channel>), AriError> {
    Ok((rest.asterisk_info().await?, rest.channels().await?))
}

/// The snapshot over the websocket transport: its requests go out and
/// their answers come in on `ws` itself, so the socket is pumped while it
/// runs; events read meanwhile go to `early`. `None` on shutdown.
async fn pump_snapshot(
    rest: &AriRest,
    ws: &mut Socket,
    mux: &Arc<WsRest>,
    out: &mut mpsc::UnboundedReceiver<String>,
    early: &mut Vec<String>,
    shutdown: &CancellationToken,
) -> Option<Result<(AsteriskInfo, Vec<super::Channel>), AriError>> {
    let snap = snapshot(rest);
    tokio::pin!(snap);
    let lost = |why: String| Some(Err(AriError::Transport(format!("events WebSocket: {why}"))));
    loop {
        tokio::select! {
            r = &mut snap => return Some(r),
            _ = shutdown.cancelled() => return None,
            Some(frame) = out.recv() => {
                if let Err(e) = ws.send(Message::Text(frame)).await {
                    return lost(e.to_string());
                }
            }
            msg = ws.next() => match msg {
                None => return lost("closed by Asterisk".into()),
                Some(Err(e)) => return lost(e.to_string()),
                Some(Ok(Message::Text(text))) => {
                    if !mux.on_frame(&text) {
                        early.push(text);
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The next REST request to write; never ready with the HTTP transport.
async fn next_out(out: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match out {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes `first` and every request queued behind it with one flush.
async fn write_batch(
    ws: &mut Socket,
    first: String,
    out: &mut Option<mpsc::UnboundedReceiver<String>>,
) -> Result<(), tungstenite::Error> {
    ws.feed(Message::Text(first)).await?;
    if let Some(rx) = out {
        while let Ok(frame) = rx.try_recv() {
            ws.feed(Message::Text(frame)).await?;
        }
    }
    ws.flush().await
}

/// Closes politely (Asterisk logs "closed abruptly" otherwise), briefly
/// waiting for its close frame.
async fn close(mut ws: Socket) -> End {
    let _ = close_ref(&mut ws).await;
    End::Shutdown
}

async fn close_ref(ws: &mut Socket) -> Result<(), tungstenite::Error> {
    ws.close(None).await?;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_url_is_ws_with_app_and_no_credentials() {
        let s = AriSettings {
            url: "http://127.0.0.1:8088/".into(),
            username: "u".into(),
            password: "secret".into(),
            app: "voicepay node1".into(),
            ..AriSettings::default()
        };
        let url = events_url(&s).unwrap();
        assert_eq!(
            url.as_str(),
            "ws://127.0.0.1:8088/ari/events?app=voicepay+node1&subscribeAll=false"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_max() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let mut expect = Duration::from_millis(500);
        for _ in 0..8 {
            let d = b.delay();
            assert!(d >= expect / 2 && d <= expect, "{d:?} vs {expect:?}");
            expect = (expect * 2).min(Duration::from_secs(10));
        }
        b.reset();
        assert!(b.delay() <= Duration::from_millis(500));
    }
}
