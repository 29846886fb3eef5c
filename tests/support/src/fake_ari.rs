//! A scripted fake of Asterisk's ARI on 127.0.0.1:0: the events WebSocket
//! and the REST calls the client makes, over a minimal HTTP/1.1 server with
//! keep-alive (as Asterisk's), so tests control every byte and every outage.
//!
//! The test pushes events ([`FakeAri::push`]), drops or freezes the socket,
//! changes the entity id or start time (an Asterisk restart), marks channels
//! as gone (404), holds the answer to a request until it says how to answer
//! ([`FakeAri::hold`]), and asserts on the recorded requests
//! ([`FakeAri::calls`]).
//! A driver that must answer requests as they come (the daemon benchmark,
//! `benches/daemon.rs`) takes them from [`FakeAri::tap`] instead.
//!
//! REST requests also arrive as `RESTRequest` frames on the events socket
//! (`ari.rest_transport = "websocket"`, as Asterisk 22.4+ takes them); they
//! are recorded and answered exactly like HTTP ones (with
//! [`Recorded::websocket`] set), as `RESTResponse` frames on that socket.
//! [`FakeAri::settings`] picks the transport from
//! `VOICEPAY_TEST_REST_TRANSPORT` (`http`, the default, or `websocket`), so
//! the whole fake_ari suite runs on either:
//! `VOICEPAY_TEST_REST_TRANSPORT=websocket cargo test --test fake_ari`.

use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
use tokio_tungstenite::WebSocketStream;
use voicepay::config::{AriSettings, RestTransport};

use crate::wait::wait_for;

pub const USER: &str = "voicepay";
pub const PASSWORD: &str = "s3cret";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    /// Decoded query pairs, in order (repeated keys repeat).
    pub query: Vec<(String, String)>,
    pub body: String,
    /// The raw `Authorization` header, if any.
    pub authorization: Option<String>,
    /// When its head and body had been read.
    pub at: Instant,
    /// Came as a `RESTRequest` frame on the events socket (its
    /// `authorization` is the socket's).
    pub websocket: bool,
}

impl Recorded {
    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter.
    pub fn params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

enum SocketCmd {
    Text(String),
    /// Close the TCP connection without a close frame.
    Drop,
    /// Stop reading (so no pong is ever sent) and stay silent.
    Freeze,
}

struct State {
    entity_id: Mutex<String>,
    startup_time: Mutex<String>,
    channels: Mutex<Vec<Value>>,
    gone: Mutex<HashSet<String>>,
    calls: Mutex<Vec<Recorded>>,
    socket: Mutex<Option<mpsc::UnboundedSender<SocketCmd>>>,
    /// Successful WebSocket upgrades so far.
    connections: watch::Sender<usize>,
    /// Upgrade attempts, accepted or not.
    ws_attempts: AtomicUsize,
    /// TCP connections accepted (REST and events).
    tcp: AtomicUsize,
    /// Upgrades are refused (503) while false, as while Asterisk starts.
    upgrades_open: AtomicBool,
    /// Keep every request for [`FakeAri::calls`] (a benchmark turns it off).
    keep: AtomicBool,
    /// Where [`FakeAri::tap`] wants REST requests.
    tap: Mutex<Option<mpsc::UnboundedSender<Recorded>>>,
    /// Paths whose answers wait for [`Held::answer`].
    held: Mutex<HashMap<String, Arc<watch::Sender<Option<u16>>>>>,
    /// Playbacks started and not yet done ([`FakeAri::playback_done`]):
    /// `GET /playbacks/{id}` finds them, and answers 404 for any other.
    playing: Mutex<HashSet<String>>,
    /// REST requests received and not yet answered, and the most at once.
    outstanding: Mutex<(usize, usize)>,
}

/// A request path whose answers wait (see [`FakeAri::hold`]).
pub struct Held {
    tx: Arc<watch::Sender<Option<u16>>>,
}

impl Held {
    /// Lets the waiting (and later) requests be answered: a 2xx `status`
    /// gives the usual answer, any other status an error with a message.
    pub fn answer(&self, status: u16) {
        self.tx.send_replace(Some(status));
    }
}

/// The fake server; stops accepting when dropped.
pub struct FakeAri {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAri {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeAri {
    pub async fn start() -> FakeAri {
        crate::log::init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            entity_id: Mutex::new("52:54:00:00:00:01".into()),
            startup_time: Mutex::new("2025-01-01T10:00:00.000+0800".into()),
            channels: Mutex::new(Vec::new()),
            gone: Mutex::new(HashSet::new()),
            calls: Mutex::new(Vec::new()),
            socket: Mutex::new(None),
            connections: watch::channel(0).0,
            ws_attempts: AtomicUsize::new(0),
            tcp: AtomicUsize::new(0),
            upgrades_open: AtomicBool::new(true),
            keep: AtomicBool::new(true),
            tap: Mutex::new(None),
            held: Mutex::new(HashMap::new()),
            playing: Mutex::new(HashSet::new()),
            outstanding: Mutex::new((0, 0)),
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                st.tcp.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, st.clone()));
            }
        });
        FakeAri {
            addr,
            state,
            accept,
        }
    }

    /// Settings that the fake accepts.
    pub fn settings(&self) -> AriSettings {
        AriSettings {
            url: format!("http://{}", self.addr),
            username: USER.into(),
            password: PASSWORD.into(),
            app: "voicepay-test".into(),
            // Short, so tests of an originate left unanswered run quickly.
            originate_timeout_secs: 5,
            rest_transport: test_transport(),
            ..AriSettings::default()
        }
    }

    /// The most REST requests that were waiting for their answer at once
    /// (received, not yet answered), over either transport.
    pub fn max_outstanding(&self) -> usize {
        self.state.outstanding.lock().unwrap().1
    }

    /// Sends one event frame on the current socket.
    pub fn push(&self, event: Value) {
        self.push_raw(event.to_string());
    }

    /// Like [`FakeAri::push`], but false instead of a panic when no socket
    /// is connected (a driver still sending after its daemon stopped).
    pub fn try_push(&self, event: Value) -> bool {
        let guard = self.state.socket.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .is_some_and(|tx| tx.send(SocketCmd::Text(event.to_string())).is_ok())
    }

    /// Sends a frame as is (for malformed input).
    pub fn push_raw(&self, text: impl Into<String>) {
        self.socket_cmd(SocketCmd::Text(text.into()));
    }

    /// Cuts the socket abruptly, like a crash or a network failure.
    pub fn drop_socket(&self) {
        self.socket_cmd(SocketCmd::Drop);
        self.state.socket.lock().unwrap().take();
    }

    /// Leaves the socket open but unresponsive (no pongs, no events).
    pub fn freeze_socket(&self) {
        self.socket_cmd(SocketCmd::Freeze);
        self.state.socket.lock().unwrap().take();
    }

    fn socket_cmd(&self, cmd: SocketCmd) {
        let guard = self.state.socket.lock().unwrap();
        let tx = guard.as_ref().expect("no events socket is connected");
        tx.send(cmd).expect("socket task gone");
    }

    /// A new entity id: the next connection looks like a restarted Asterisk.
    pub fn set_entity_id(&self, id: &str) {
        *self.state.entity_id.lock().unwrap() = id.into();
    }

    /// A new start time with the same entity id: what a restart of the
    /// same Asterisk looks like (its entity id comes from the MAC address).
    pub fn set_startup_time(&self, t: &str) {
        *self.state.startup_time.lock().unwrap() = t.into();
    }

    /// Refuses (false) or accepts (true) events WebSocket upgrades.
    pub fn open_upgrades(&self, open: bool) {
        self.state.upgrades_open.store(open, Ordering::SeqCst);
    }

    /// From now on every REST request (not the upgrades) also goes to the
    /// returned stream as it arrives, and no longer to [`FakeAri::calls`].
    /// Answers do not wait for the reader.
    pub fn tap(&self) -> mpsc::UnboundedReceiver<Recorded> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.state.tap.lock().unwrap() = Some(tx);
        self.state.keep.store(false, Ordering::SeqCst);
        rx
    }

    /// Requests on `path` (e.g. `/ari/channels/vp-…-1`, an originate) are
    /// recorded as they arrive, but answered only after [`Held::answer`]:
    /// a slow or stuck Asterisk.
    pub fn hold(&self, path: &str) -> Held {
        let tx = Arc::new(watch::channel(None).0);
        self.state
            .held
            .lock()
            .unwrap()
            .insert(path.to_owned(), tx.clone());
        Held { tx }
    }

    /// What `GET /channels` returns.
    pub fn set_channels(&self, channels: Vec<Value>) {
        *self.state.channels.lock().unwrap() = channels;
    }

    /// Every request naming this channel (or one of its `<id>:<n>`
    /// playbacks) answers 404 from now on, as after a hang-up.
    pub fn gone(&self, channel_id: &str) {
        self.state.gone.lock().unwrap().insert(channel_id.into());
    }

    /// The playback (`<channel>:<n>`) is done, as Asterisk forgets it when
    /// it has played out: `GET /playbacks/{id}` answers 404 from now on. No
    /// event is sent (push `PlaybackFinished` for that): a test of a
    /// `PlaybackFinished` lost with the socket calls only this.
    pub fn playback_done(&self, playback_id: &str) {
        self.state.playing.lock().unwrap().remove(playback_id);
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<Recorded> {
        self.state.calls.lock().unwrap().clone()
    }

    /// REST requests only (not the WebSocket upgrades).
    pub fn rest_calls(&self) -> Vec<Recorded> {
        self.calls()
            .into_iter()
            .filter(|c| c.path != "/ari/events")
            .collect()
    }

    pub fn ws_attempts(&self) -> usize {
        self.state.ws_attempts.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (keep-alive reuses them).
    pub fn tcp_connections(&self) -> usize {
        self.state.tcp.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        *self.state.connections.borrow()
    }

    /// Plays Asterisk 22.5+ with `ari.websocket = "outbound"`: opens the
    /// events socket *to* the daemon listening on `addr`, with Basic
    /// `user:password` and the `ari` subprotocol (as websocket_client.conf's
    /// `protocols = ari`), and serves it like an accepted one (pushes, drops,
    /// `RESTRequest` frames). One call is one connection attempt; call it
    /// again after [`FakeAri::drop_socket`] to reconnect, as Asterisk does
    /// every `reconnect_interval`. `Err` carries the HTTP status of a
    /// refused upgrade (401 for a wrong credential), or 0 when the
    /// connection failed otherwise.
    pub async fn dial(&self, addr: SocketAddr, user: &str, password: &str) -> Result<(), u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        self.state.ws_attempts.fetch_add(1, Ordering::SeqCst);
        let tcp = TcpStream::connect(addr).await.map_err(|_| 0u16)?;
        let _ = tcp.set_nodelay(true);
        let mut req = format!("ws://{addr}/voicepay")
            .into_client_request()
            .unwrap();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let auth = format!("Basic {token}");
        let headers = req.headers_mut();
        headers.insert("authorization", auth.parse().unwrap());
        headers.insert("sec-websocket-protocol", "ari".parse().unwrap());
        let (ws, resp) = match tokio_tungstenite::client_async(req, BufReader::new(tcp)).await {
            Ok(pair) => pair,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                return Err(resp.status().as_u16())
            }
            Err(_) => return Err(0),
        };
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("ari"),
            "the daemon must accept the ari subprotocol Asterisk offers"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let answers = tx.downgrade();
        *self.state.socket.lock().unwrap() = Some(tx);
        self.state.connections.send_modify(|c| *c += 1);
        tokio::spawn(run_socket(ws, rx, answers, Some(auth), self.state.clone()));
        Ok(())
    }

    /// Waits until `n` WebSocket connections were accepted in total.
    pub async fn wait_connections(&self, n: usize, within: Duration) {
        let mut rx = self.state.connections.subscribe();
        tokio::time::timeout(within, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} events connections within {within:?}"))
            .unwrap();
    }
}

/// `VOICEPAY_TEST_REST_TRANSPORT`: `websocket`, or `http` (unset or empty).
pub fn test_transport() -> RestTransport {
    match std::env::var("VOICEPAY_TEST_REST_TRANSPORT").as_deref() {
        Ok("websocket") => RestTransport::Websocket,
        Ok("http" | "") | Err(_) => RestTransport::Http,
        Ok(other) => panic!("VOICEPAY_TEST_REST_TRANSPORT={other:?}: http or websocket"),
    }
}

/// Waits (up to 15 s) for a REST request matching `what` and returns it;
/// fails the test, listing what came instead, when none does.
pub async fn request(fake: &FakeAri, what: impl Fn(&Recorded) -> bool) -> Recorded {
    wait_for(Duration::from_secs(15), async || {
        let calls = fake.rest_calls();
        match calls.iter().find(|r| what(r)) {
            Some(r) => Ok(r.clone()),
            None => Err(format!("request not seen: {calls:#?}")),
        }
    })
    .await
}

/// A channel as Asterisk 22 sends it.
pub fn channel(id: &str, state: &str) -> Value {
    json!({
        "id": id, "name": format!("PJSIP/trunk-{id}"), "state": state, "protocol_id": "",
        "caller": {"name": "", "number": "13700000001"},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {"context": "voicepay-callback", "exten": "s", "priority": 1,
                     "app_name": "Stasis", "app_data": "voicepay-test"},
        "creationtime": "2025-01-01T10:00:00.000+0800", "language": "zh"
    })
}

/// An event frame with the common fields.
pub fn event(kind: &str, fields: Value) -> Value {
    let mut v = json!({"type": kind, "application": "voicepay-test",
                       "timestamp": "2025-01-01T10:00:01.000+0800",
                       "asterisk_id": "52:54:00:00:00:01"});
    v.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    v
}

/// When the next key's tone ends, in ms since 2025-01-01T00:00:00+0800:
/// one clock for the whole test binary, so a channel's key reports never go
/// back in time (the daemon drops a same-key report that does).
static KEY_CLOCK: AtomicU64 = AtomicU64::new(36_001_000);

/// How far apart [`FakeAri::press`] keys are: a brisk person.
pub const KEY_SPACING_MS: u64 = 400;

/// A `ChannelDtmfReceived` frame as Asterisk sends it when a tone ends:
/// `timestamp` is the end (`ended_ms` after 2025-01-01T00:00:00+0800, on
/// that day) and `duration_ms` the tone's length.
pub fn dtmf(channel: &Value, key: char, ended_ms: u64, duration_ms: u64) -> Value {
    assert!(ended_ms < 86_400_000, "the key clock stays within its day");
    let (h, m) = (ended_ms / 3_600_000, ended_ms / 60_000 % 60);
    let (sec, ms) = (ended_ms / 1000 % 60, ended_ms % 1000);
    let mut v = event(
        "ChannelDtmfReceived",
        json!({"digit": key.to_string(), "duration_ms": duration_ms, "channel": channel}),
    );
    v["timestamp"] = json!(format!("2025-01-01T{h:02}:{m:02}:{sec:02}.{ms:03}+0800"));
    v
}

/// Takes `span_ms` of the shared key clock; returns its start.
pub fn key_clock(span_ms: u64) -> u64 {
    KEY_CLOCK.fetch_add(span_ms, Ordering::SeqCst)
}

impl FakeAri {
    /// Keys `keys` on `channel` as a person does: 120 ms tones,
    /// [`KEY_SPACING_MS`] apart, each reported once with its own time.
    pub fn press(&self, channel: &Value, keys: &str) {
        for key in keys.chars() {
            let ended = key_clock(KEY_SPACING_MS) + KEY_SPACING_MS;
            self.push(dtmf(channel, key, ended, 120));
        }
    }
}

fn authorized(header: Option<&str>) -> bool {
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    header == Some(&format!("Basic {want}"))
}

/// One TCP connection: requests until the client closes it (keep-alive),
/// or a WebSocket upgrade, which takes the connection over.
async fn serve(tcp: TcpStream, state: Arc<State>) {
    let _ = tcp.set_nodelay(true);
    let mut io = BufReader::new(tcp);
    loop {
        let Some((method, target, headers)) = read_head(&mut io).await else {
            return;
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if io.read_exact(&mut body).await.is_err() {
            return;
        }
        let url = reqwest::Url::parse(&format!("http://fake{target}")).unwrap();
        let rec = Recorded {
            method,
            path: url.path().to_string(),
            query: url
                .query_pairs()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            body: String::from_utf8_lossy(&body).into(),
            authorization: header("authorization"),
            at: Instant::now(),
            websocket: false,
        };
        let upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let events = rec.path == "/ari/events" && upgrade;
        if events {
            state.ws_attempts.fetch_add(1, Ordering::SeqCst);
        }
        if events || state.keep.load(Ordering::SeqCst) {
            state.calls.lock().unwrap().push(rec.clone());
        }
        if !authorized(rec.authorization.as_deref()) {
            let _ = respond(&mut io, 401, &json!({"message": "Authentication required"})).await;
            return;
        }
        if events {
            if !state.upgrades_open.load(Ordering::SeqCst) {
                let _ = respond(&mut io, 503, &json!({"message": "starting"})).await;
                return;
            }
            let key = header("sec-websocket-key").unwrap_or_default();
            return websocket(io, &key, rec.authorization, state).await;
        }
        let Some((status, body)) = answer(rec, &state).await else {
            return;
        };
        if respond(&mut io, status, &body).await.is_err() {
            return;
        }
    }
}

/// The answer to one REST request, over either transport: after
/// [`Held::answer`] when its path is held; `None` when the fake is dropped
/// meanwhile.
async fn answer(rec: Recorded, state: &State) -> Option<(u16, Value)> {
    {
        let mut o = state.outstanding.lock().unwrap();
        o.0 += 1;
        o.1 = o.1.max(o.0);
    }
    let held = state.held.lock().unwrap().get(&rec.path).cloned();
    let answered = match held {
        None => Some(rest(&rec, state)),
        Some(tx) => {
            let mut rx = tx.subscribe();
            match rx.wait_for(Option::is_some).await.map(|s| s.unwrap_or(500)) {
                Err(_) => None,
                Ok(status) if (200..300).contains(&status) => Some(rest(&rec, state)),
                Ok(status) => Some((status, json!({"message": "Allocation failed"}))),
            }
        }
    };
    if let Some(tap) = state.tap.lock().unwrap().as_ref() {
        let _ = tap.send(rec);
    }
    state.outstanding.lock().unwrap().0 -= 1;
    answered
}

/// A `RESTRequest` frame from the events socket, recorded like an HTTP
/// request; `None` for a frame that is no such request.
fn ws_request(text: &str, authorization: Option<String>) -> Option<(String, Recorded)> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["type"] != "RESTRequest" {
        return None;
    }
    let uri = v["uri"].as_str()?;
    let url = reqwest::Url::parse(&format!("http://fake/ari/{uri}")).ok()?;
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    for pair in v["query_strings"].as_array().into_iter().flatten() {
        let (k, val) = (pair["name"].as_str()?, pair["value"].as_str()?);
        query.push((k.into(), val.into()));
    }
    let rec = Recorded {
        method: v["method"].as_str()?.to_owned(),
        path: url.path().to_owned(),
        query,
        body: v["message_body"].as_str().unwrap_or_default().to_owned(),
        authorization,
        at: Instant::now(),
        websocket: true,
    };
    Some((v["request_id"].as_str().unwrap_or_default().to_owned(), rec))
}

/// Answers one `RESTRequest` frame on the socket (through `tx`) as
/// Asterisk 22 does; held requests are answered later, without stopping
/// the socket.
fn on_ws_request(
    text: &str,
    authorization: &Option<String>,
    state: &Arc<State>,
    tx: &mpsc::WeakUnboundedSender<SocketCmd>,
) {
    let Some((id, rec)) = ws_request(text, authorization.clone()) else {
        return;
    };
    if state.keep.load(Ordering::SeqCst) {
        state.calls.lock().unwrap().push(rec.clone());
    }
    let (state, tx) = (state.clone(), tx.clone());
    tokio::spawn(async move {
        let uri = rec.path.trim_start_matches("/ari/").to_owned();
        let Some((status, body)) = answer(rec, &state).await else {
            return;
        };
        let mut frame = json!({"type": "RESTResponse", "transaction_id": "", "request_id": id,
                               "status_code": status, "reason_phrase": reason(status), "uri": uri});
        if !body.is_null() {
            frame["content_type"] = json!("application/json");
            frame["message_body"] = json!(body.to_string());
        }
        if let Some(tx) = tx.upgrade() {
            let _ = tx.send(SocketCmd::Text(frame.to_string()));
        }
    });
}

async fn read_head(
    io: &mut BufReader<TcpStream>,
) -> Option<(String, String, Vec<(String, String)>)> {
    let mut line = String::new();
    io.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if io.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some((method, target, headers))
}

async fn respond(io: &mut BufReader<TcpStream>, status: u16, body: &Value) -> std::io::Result<()> {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let reason = reason(status);
    // Keep-alive unless the answer ends the connection (401, 503).
    let connection = if matches!(status, 401 | 503) {
        "close"
    } else {
        "keep-alive"
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        text.len()
    );
    // One write: head and body in one segment.
    let mut out = head.into_bytes();
    out.extend_from_slice(text.as_bytes());
    io.write_all(&out).await?;
    io.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Other",
    }
}

/// Answers a REST request the way Asterisk would, for the calls we use.
fn rest(rec: &Recorded, state: &State) -> (u16, Value) {
    let segs: Vec<&str> = rec.path.trim_start_matches("/ari/").split('/').collect();
    let gone = state.gone.lock().unwrap();
    let names_gone = segs
        .iter()
        .any(|s| gone.contains(*s) || s.rsplit_once(':').is_some_and(|(c, _)| gone.contains(c)));
    if names_gone {
        return (404, json!({"message": "Channel not found"}));
    }
    match (rec.method.as_str(), segs.as_slice()) {
        ("GET", ["asterisk", "info"]) => (
            200,
            json!({
                "build": {"os": "Linux", "kernel": "6", "options": "", "machine": "x86_64",
                          "date": "2025-01-01", "user": "debian"},
                "system": {"version": "22.0.0", "entity_id": *state.entity_id.lock().unwrap()},
                "config": {"name": "", "default_language": "en"},
                "status": {"startup_time": *state.startup_time.lock().unwrap()}
            }),
        ),
        ("GET", ["channels"]) => (200, Value::Array(state.channels.lock().unwrap().clone())),
        ("POST", ["channels", id]) => (200, channel(id, "Down")),
        ("POST", ["channels", id, "play", pb]) => {
            let pb = pb.replace("%3A", ":");
            state.playing.lock().unwrap().insert(pb.clone());
            (
                201,
                json!({"id": pb, "media_uri": rec.param("media").unwrap_or_default(),
                       "target_uri": format!("channel:{id}"), "state": "queued"}),
            )
        }
        ("GET", ["playbacks", pb]) => {
            let pb = pb.replace("%3A", ":");
            if state.playing.lock().unwrap().contains(&pb) {
                let channel = pb.rsplit_once(':').map_or("", |(c, _)| c);
                (
                    200,
                    json!({"id": pb, "media_uri": "sound:voicepay/welcome",
                           "target_uri": format!("channel:{channel}"), "state": "playing"}),
                )
            } else {
                (404, json!({"message": "Playback not found"}))
            }
        }
        ("DELETE", ["playbacks", pb]) => {
            state
                .playing
                .lock()
                .unwrap()
                .remove(&pb.replace("%3A", ":"));
            (204, Value::Null)
        }
        _ => (204, Value::Null),
    }
}

async fn websocket(
    mut io: BufReader<TcpStream>,
    key: &str,
    authorization: Option<String>,
    state: Arc<State>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    // Weak: answers must not keep the socket open once it was replaced.
    let answers = tx.downgrade();
    // Registered before the 101 goes out, so a test that saw the client
    // connect can always push.
    *state.socket.lock().unwrap() = Some(tx);
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if io.write_all(head.as_bytes()).await.is_err() || io.flush().await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    state.connections.send_modify(|c| *c += 1);
    run_socket(ws, rx, answers, authorization, state).await;
}

/// Serves one events socket, whichever side opened it: frames the test
/// pushes go out, `RESTRequest` frames are answered.
async fn run_socket(
    mut ws: WebSocketStream<BufReader<TcpStream>>,
    mut rx: mpsc::UnboundedReceiver<SocketCmd>,
    answers: mpsc::WeakUnboundedSender<SocketCmd>,
    authorization: Option<String>,
    state: Arc<State>,
) {
    use futures_util::{SinkExt, StreamExt};
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(SocketCmd::Text(t)) => {
                    // Frames queued meanwhile go out with one flush.
                    if ws.feed(Message::Text(t)).await.is_err() {
                        return;
                    }
                    let mut later = None;
                    while let Ok(cmd) = rx.try_recv() {
                        match cmd {
                            SocketCmd::Text(t) => {
                                if ws.feed(Message::Text(t)).await.is_err() {
                                    return;
                                }
                            }
                            other => {
                                later = Some(other);
                                break;
                            }
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                    match later {
                        None => {}
                        Some(SocketCmd::Drop) => return,
                        Some(SocketCmd::Freeze) => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        Some(SocketCmd::Text(_)) => unreachable!("sent above"),
                    }
                }
                Some(SocketCmd::Drop) => return,
                Some(SocketCmd::Freeze) => {
                    // Hold the socket without reading: pings go unanswered.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                // Replaced by a newer socket or the fake was dropped.
                None => {
                    let _ = ws.close(None).await;
                    return;
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(Message::Text(text))) => on_ws_request(&text, &authorization, &state, &answers),
                // Reading lets tungstenite answer pings.
                Some(Ok(_)) => {}
            },
        }
    }
}
