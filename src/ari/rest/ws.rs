//! REST over the events WebSocket (`ari.rest_transport = "websocket"`,
//! Asterisk 22.4 and later).
//!
//! Protocol (Asterisk's `res/ari/ari_websocket_requests.c`, docs page "ARI
//! REST over WebSocket"; checked against Asterisk 22.10.1): the client sends
//! a text frame
//! `{"type":"RESTRequest","request_id":…,"method":…,"uri":…,"query_strings":[{"name":…,"value":…}],"content_type":…,"message_body":…}`
//! where `uri` is relative to `/ari/` (path segments percent-encoded,
//! decoded by Asterisk), `query_strings` are decoded pairs, and
//! `message_body` is the body as a string (`content_type` is required with
//! it: `application/json` or `application/x-www-form-urlencoded`). Asterisk
//! answers on the same socket, between the events, with
//! `{"type":"RESTResponse","request_id":…,"status_code":…,"reason_phrase":…,"uri":…,"content_type":…,"message_body":…}`
//! (`message_body` absent on 204). It handles one request at a time per
//! socket, in the socket's reader thread, so answers come in request order.
//!
//! Layers as in the rest of the ARI client: [`encode_request`] and
//! [`decode_response`] are the codec (no IO); [`WsRest`] is the multiplexer
//! that matches answers to waiting requests by `request_id`; the connection
//! task (`connection.rs`) owns the socket, writes the frames [`WsRest`]
//! queues and hands it every `RESTResponse` frame it reads.
//!
//! Failure policy: a request waits at most its timeout; when the socket
//! drops, every request still waiting fails at once with
//! [`AriError::Transport`], and requests made while it is down fail without
//! waiting (nothing is retried: a POST may have been carried out). Frames
//! are never logged: a request names channels only, but an answer could
//! carry channel variables.

use super::{AriError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One request, in the terms of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsRequest {
    /// `GET`, `POST`, `DELETE`, …
    pub method: String,
    /// Relative to `/ari/`, path segments percent-encoded, no query.
    pub uri: String,
    /// Decoded query pairs, in order (repeated names repeat).
    pub query: Vec<(String, String)>,
    /// `(content_type, body)` when the request has a body.
    pub body: Option<(String, String)>,
}

/// Asterisk's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsAnswer {
    /// The HTTP status code it would have answered over HTTP.
    pub status: u16,
    /// The body (JSON), empty when there is none.
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct NameValue<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct RequestFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: &'a str,
    method: &'a str,
    uri: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    query_strings: Vec<NameValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_body: Option<&'a str>,
}

/// The `RESTRequest` frame for `req` with `request_id` = `id`.
pub(crate) fn encode_request(id: &str, req: &WsRequest) -> String {
    let frame = RequestFrame {
        kind: "RESTRequest",
        request_id: id,
        method: &req.method,
        uri: &req.uri,
        query_strings: req
            .query
            .iter()
            .map(|(name, value)| NameValue { name, value })
            .collect(),
        content_type: req.body.as_ref().map(|(t, _)| t.as_str()),
        message_body: req.body.as_ref().map(|(_, b)| b.as_str()),
    };
    serde_json::to_string(&frame).expect("strings always serialize")
}

/// `(request_id, answer)` when `text` is a `RESTResponse` frame; `None` for
/// anything else (events). Cheap for events: only a frame that contains the
/// word `"RESTResponse"` is parsed here.
pub(crate) fn decode_response(text: &str) -> Option<(String, WsAnswer)> {
    #[derive(Deserialize)]
    struct Frame {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        request_id: String,
        status_code: u16,
        #[serde(default)]
        message_body: Option<String>,
    }
    if !text.contains("\"RESTResponse\"") {
        return None;
    }
    let frame: Frame = serde_json::from_str(text).ok()?;
    (frame.kind == "RESTResponse").then(|| {
        let answer = WsAnswer {
            status: frame.status_code,
            body: frame.message_body.unwrap_or_default().into_bytes(),
        };
        (frame.request_id, answer)
    })
}

type Waiter = oneshot::Sender<Result<WsAnswer>>;

#[derive(Default)]
struct State {
    /// Where the connection task takes frames to write; `None` while the
    /// socket is down.
    out: Option<mpsc::UnboundedSender<String>>,
    /// Requests sent and not yet answered, by `request_id`.
    waiting: HashMap<String, Waiter>,
}

/// The multiplexer: sends requests on the current socket and matches the
/// answers. Shared (`Arc`) by every clone of the REST client and by the
/// connection task.
pub(crate) struct WsRest {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Limit for a request that has none of its own.
    default_timeout: Duration,
}

impl WsRest {
    pub(crate) fn new(default_timeout: Duration) -> Self {
        Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            default_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere
        // does not make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new socket is open: requests go out on it from now on. The
    /// connection task writes what the returned receiver yields.
    pub(crate) fn attach(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().out = Some(tx);
        rx
    }

    /// The socket is gone: every waiting request fails now with `why`, and
    /// new ones fail until the next [`WsRest::attach`].
    pub(crate) fn detach(&self, why: &str) {
        let waiting = {
            let mut state = self.lock();
            state.out = None;
            std::mem::take(&mut state.waiting)
        };
        for (_, waiter) in waiting {
            let _ = waiter.send(Err(AriError::Transport(format!(
                "events WebSocket closed before Asterisk answered: {why}"
            ))));
        }
    }

    /// Hands a frame read from the socket to its waiting request; false
    /// when it is no `RESTResponse` (an event, for the dispatcher). An
    /// answer nobody waits for (timed out) is dropped.
    pub(crate) fn on_frame(&self, text: &str) -> bool {
        let Some((id, answer)) = decode_response(text) else {
            return false;
        };
        if let Some(waiter) = self.lock().waiting.remove(&id) {
            let _ = waiter.send(Ok(answer));
        } else {
            tracing::debug!(request_id = %id, "ARI answer for no waiting request (timed out?)");
        }
        true
    }

    /// Sends `req` and waits for its answer, at most `timeout` (or the
    /// default request timeout).
    pub(crate) async fn exchange(
        &self,
        req: &WsRequest,
        timeout: Option<Duration>,
    ) -> Result<WsAnswer> {
        let id = format!("vp{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            let Some(out) = state.out.clone() else {
                return Err(AriError::Transport(
                    "events WebSocket is down (ari.rest_transport = \"websocket\")".into(),
                ));
            };
            // Registered before the frame leaves, so the answer finds it.
            state.waiting.insert(id.clone(), tx);
            if out.send(encode_request(&id, req)).is_err() {
                state.waiting.remove(&id);
                return Err(AriError::Transport("events WebSocket is closing".into()));
            }
        }
        let limit = timeout.unwrap_or(self.default_timeout);
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(AriError::Transport("REST client closed".into())),
            Err(_) => {
                self.lock().waiting.remove(&id);
                Err(AriError::Transport(format!(
                    "no RESTResponse within {limit:?} on the events WebSocket \
                     (ari.rest_transport = \"websocket\" needs Asterisk 22.4 or later)"
                )))
            }
        }
    }

    /// Requests waiting for an answer (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn answer_req() -> WsRequest {
        WsRequest {
            method: "POST".into(),
            uri: "channels/vp-1/play/vp-1:2".into(),
            query: vec![
                ("media".into(), "sound:a,sound:b".into()),
                ("lang".into(), "zh".into()),
            ],
            body: None,
        }
    }

    #[test]
    fn request_frame_has_the_fields_asterisk_reads() {
        let mut req = answer_req();
        req.body = Some(("application/json".into(), r#"{"variables":{}}"#.into()));
        let v: Value = serde_json::from_str(&encode_request("vp7", &req)).unwrap();
        assert_eq!(
            v,
            json!({"type": "RESTRequest", "request_id": "vp7", "method": "POST",
                   "uri": "channels/vp-1/play/vp-1:2",
                   "query_strings": [{"name": "media", "value": "sound:a,sound:b"},
                                     {"name": "lang", "value": "zh"}],
                   "content_type": "application/json",
                   "message_body": "{\"variables\":{}}"})
        );
        let bare = WsRequest {
            method: "GET".into(),
            uri: "asterisk/info".into(),
            query: vec![],
            body: None,
        };
        let v: Value = serde_json::from_str(&encode_request("vp8", &bare)).unwrap();
        assert_eq!(
            v,
            json!({"type": "RESTRequest", "request_id": "vp8", "method": "GET", "uri": "asterisk/info"})
        );
    }

    #[test]
    fn responses_decode_and_events_do_not() {
        // As Asterisk 22.10.1 sent them.
        let ok = r#"{"type":"RESTResponse","transaction_id":"","request_id":"vp2","status_code":200,"reason_phrase":"OK","uri":"channels","content_type":"application/json","message_body":"[]","application":"voicepay","timestamp":"2026-12-01T02:35:28.979+0000","asterisk_id":"02:fc:00:00:00:01"}"#;
        let (id, a) = decode_response(ok).unwrap();
        assert_eq!(
            (id.as_str(), a.status, a.body.as_slice()),
            ("vp2", 200, &b"[]"[..])
        );
        let no_content = r#"{"type":"RESTResponse","transaction_id":"","request_id":"vp4","status_code":204,"reason_phrase":"No Content","uri":"asterisk/variable"}"#;
        let (_, a) = decode_response(no_content).unwrap();
        assert_eq!((a.status, a.body.len()), (204, 0));
        let event = r#"{"type":"StasisStart","args":["RESTResponse"],"channel":{}}"#;
        assert_eq!(decode_response(event), None);
        assert_eq!(decode_response(r#"{"type":"RESTResponse""#), None);
    }

    fn answer_frame(id: &str, status: u16) -> String {
        json!({"type": "RESTResponse", "request_id": id, "status_code": status,
               "reason_phrase": "x", "uri": "u", "message_body": "{\"message\":\"m\"}"})
        .to_string()
    }

    #[tokio::test]
    async fn answers_reach_their_requests_in_any_order() {
        let mux = std::sync::Arc::new(WsRest::new(Duration::from_secs(5)));
        let mut out = mux.attach();
        let (m1, m2) = (mux.clone(), mux.clone());
        let r1 = tokio::spawn(async move { m1.exchange(&answer_req(), None).await });
        let r2 = tokio::spawn(async move { m2.exchange(&answer_req(), None).await });
        let ids: Vec<String> = [out.recv().await.unwrap(), out.recv().await.unwrap()]
            .iter()
            .map(|f| {
                serde_json::from_str::<Value>(f).unwrap()["request_id"]
                    .as_str()
                    .unwrap()
                    .into()
            })
            .collect();
        assert_ne!(ids[0], ids[1]);
        // The second first, and an event in between that is not consumed.
        assert!(mux.on_frame(&answer_frame(&ids[1], 404)));
        assert!(!mux.on_frame(r#"{"type":"ChannelDtmfReceived","digit":"1"}"#));
        assert!(mux.on_frame(&answer_frame(&ids[0], 204)));
        let (a1, a2) = (r1.await.unwrap().unwrap(), r2.await.unwrap().unwrap());
        let (id1, id2) = (&ids[0], &ids[1]);
        assert_eq!((a1.status, a2.status), (204, 404), "{id1} {id2}");
        assert_eq!(mux.waiting(), 0);
    }

    #[tokio::test]
    async fn a_dropped_socket_fails_every_waiting_request_and_later_ones() {
        let mux = std::sync::Arc::new(WsRest::new(Duration::from_secs(60)));
        let mut out = mux.attach();
        let m = mux.clone();
        let waiting = tokio::spawn(async move { m.exchange(&answer_req(), None).await });
        out.recv().await.unwrap();
        mux.detach("closed by Asterisk");
        let err = waiting.await.unwrap().unwrap_err().to_string();
        assert!(
            err.contains("closed before Asterisk answered: closed by Asterisk"),
            "{err}"
        );
        let err = mux
            .exchange(&answer_req(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("events WebSocket is down"), "{err}");
        assert_eq!(mux.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_times_out_and_its_late_answer_is_dropped() {
        let mux = WsRest::new(Duration::from_secs(5));
        let mut out = mux.attach();
        let err = mux
            .exchange(&answer_req(), Some(Duration::from_secs(2)))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no RESTResponse within 2s"), "{err}");
        assert!(err.contains("Asterisk 22.4"), "{err}");
        let frame: Value = serde_json::from_str(&out.recv().await.unwrap()).unwrap();
        let id = frame["request_id"].as_str().unwrap();
        assert!(
            mux.on_frame(&answer_frame(id, 204)),
            "still a response frame"
        );
        assert_eq!(mux.waiting(), 0);
    }
}
