//! A merchant's webhook endpoint for tests: a real axum server on
//! 127.0.0.1:0 that records every request and answers as scripted, and the
//! signature check exactly as the README tells merchants to write it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Verifies `Voicepay-Signature` over the raw body; `now` in Unix seconds.
/// The event is genuine when any `v1=` matches (during a secret rotation's
/// overlap the header carries one per secret).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), &'static str> {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1s = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1s.extend(hex::decode(x).ok()),
            _ => {}
        }
    }
    let Some(t) = t.filter(|_| !v1s.is_empty()) else {
        return Err("malformed header");
    };
    if (now - t).abs() > 300 {
        return Err("timestamp too old or in the future");
    }
    let matches = |v1: &Vec<u8>| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(v1).is_ok() // constant-time
    };
    if v1s.iter().any(matches) {
        Ok(())
    } else {
        Err("bad signature")
    }
}

#[derive(Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

#[derive(Default)]
struct Script {
    got: Vec<Received>,
    /// Answers for the next requests; then 200.
    replies: VecDeque<Reply>,
}

#[derive(Clone)]
pub enum Reply {
    Status(u16),
    Redirect(String),
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    addr: std::net::SocketAddr,
    script: Arc<Mutex<Script>>,
    /// When set, every request waits for a permit before it is answered.
    hold: Option<Arc<tokio::sync::Semaphore>>,
}

/// A receiver and an app whose allow-list lets webhooks reach it (started
/// first, so that its address can be listed); `tweak` changes the rest of
/// the settings. `None` where [`crate::spawn_app_with`] skips.
pub async fn spawn_app_with_receiver(
    db: crate::Db,
    tweak: impl FnOnce(&mut voicepay::config::Settings),
) -> Option<(crate::TestApp, Receiver)> {
    let rx = Receiver::start().await;
    let app = crate::spawn_app_with(db, |s| {
        tweak(s);
        rx.allow(s);
    })
    .await?;
    Some((app, rx))
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, None)
    }

    /// A receiver that answers nothing until `release`d.
    pub async fn holding() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Some(Arc::new(tokio::sync::Semaphore::new(0))))
    }

    pub fn serve(
        listener: tokio::net::TcpListener,
        hold: Option<Arc<tokio::sync::Semaphore>>,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let me = Self {
            url: format!("http://{addr}/hook"),
            addr,
            script: Arc::default(),
            hold,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::any(hook))
            .with_state(me.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        me
    }

    /// Lets a daemon's webhooks reach this receiver, which is on loopback
    /// (refused otherwise): lists its `host:port` in
    /// `webhooks.allowed_private_targets`, as a lab or a merchant's own
    /// receiver on a private address is listed.
    pub fn allow(&self, s: &mut voicepay::config::Settings) {
        s.webhooks
            .allowed_private_targets
            .push(self.addr.to_string());
    }

    pub fn reply(&self, r: Reply) {
        self.script.lock().unwrap().replies.push_back(r);
    }

    pub fn got(&self) -> Vec<Received> {
        self.script.lock().unwrap().got.clone()
    }

    pub fn release(&self, n: usize) {
        if let Some(h) = &self.hold {
            h.add_permits(n);
        }
    }
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut s = r.script.lock().unwrap();
        s.got.push(Received { headers, body });
        s.replies.pop_front()
    };
    if let Some(h) = &r.hold {
        h.acquire().await.unwrap().forget();
    }
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::Redirect(to)) => {
            (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
        }
    }
}
