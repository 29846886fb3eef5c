//! `ari.websocket = "outbound"`: Asterisk connects to voicepay.
//!
//! # Design note (issue #15, "Daemon restarts that drop no call")
//!
//! Since Asterisk 22.5 (also 20.15, 21.10) an ARI application can be
//! served by a WebSocket that *Asterisk* opens ("ARI Outbound
//! WebSockets", docs.asterisk.org, Configuration → Interfaces → ARI;
//! `configs/samples/ari.conf.sample` and `websocket_client.conf.sample`).
//! The configuration is split in two files:
//!
//! - `websocket_client.conf`, one `type = websocket_client` object per
//!   connection: `uri` (`ws://host:port/path`, the address voicepay's
//!   `ari.listen` binds), `protocols = ari`, `username`/`password` (sent as
//!   HTTP Basic on the upgrade request), `connection_type = persistent`
//!   (opened when Asterisk starts, kept for ever) or `per_call_config` (one
//!   connection per `Stasis()` call, app name `<app>:<channel>`; not used
//!   here), `connection_timeout` and `reconnect_interval` (ms, default 500),
//!   `reconnect_attempts` (per-call only; a persistent connection retries
//!   for ever, the number only paces its log lines), `tls_enabled` and the
//!   certificate options.
//! - `ari.conf`, one `type = outbound_websocket` object:
//!   `websocket_client_id` (the object above), `apps` (each app may be
//!   served by one connection only), `subscribe_all` (default no),
//!   `local_ari_user` (an ARI `type = user` with a *plain* password: its
//!   `read_only` decides what REST requests over the socket may do).
//!
//! What Asterisk does with a persistent connection:
//!
//! - At start (and reload) it registers the Stasis apps itself, before any
//!   connection: `Stasis(voicepay)` and the auto-created `stasis-voicepay`
//!   context work even while voicepay is down — the call enters the app
//!   instead of falling back with `STASISSTATUS=FAILED`, as it does with an
//!   inbound socket whose client is gone.
//! - It connects to `uri` and retries every `reconnect_interval` until it
//!   succeeds. After each (re)connection it sends `ApplicationRegistered`
//!   for each app (voicepay ignores unmodelled event types).
//! - Events for the app while no socket is up are queued and written, in
//!   order, as soon as the next connection is up, before anything else
//!   (`res/ari/ari_websockets.c`: `session_send_or_queue` appends to the
//!   session's `message_queue` while `ast_ws_session` is NULL, and
//!   `session_update` flushes it on connect; checked against asterisk
//!   master of 2026-08-06). The queue has no bound and no age limit, and
//!   Asterisk logs a WARNING with the event type, never the body, for each
//!   queued non-`Application*` event. So after a daemon restart the first
//!   frames can be old ones. They include any `ChannelDtmfReceived` keyed
//!   while the daemon was down, which a resumed call must discard (README
//!   "Daemon restarts that drop no call"). voicepay does not rely on the
//!   queue for correctness: each session still starts with the
//!   `/asterisk/info` + `GET /channels` snapshot and reconciliation,
//!   exactly as an inbound one does (the queued frames are read after the
//!   snapshot, in order).
//! - The handshake (`res/res_http_websocket.c`,
//!   `websocket_client_handshake`): `GET /<uri path>` with
//!   `Authorization: Basic` from `username`/`password` when set, and
//!   `Sec-WebSocket-Protocol: <protocols>`. The answer must hold `Upgrade`,
//!   `Connection` and `Sec-WebSocket-Accept`; a `Sec-WebSocket-Protocol` in
//!   it must be one of `protocols`; any `Sec-WebSocket-Extensions` fails the
//!   connection (tungstenite's server sends none). After the upgrade
//!   Asterisk authorizes REST frames as `local_ari_user`, not with the
//!   credentials it sent us.
//! - REST requests may travel on the same socket (`RESTRequest` frames,
//!   22.4+), so `ari.rest_transport = "websocket"` works unchanged; with
//!   `http` they still go to `ari.url`.
//!
//! What voicepay does: bind `ari.listen` once at start (a bind failure is a
//! start-up error), then each session accepts one TCP connection, checks
//! the upgrade's Basic credentials against `ari.username`/`ari.password` in
//! constant time (websocket_client.conf carries the same pair as the ARI
//! user named by `local_ari_user`), answers `401` to anything else, echoes
//! the `ari` subprotocol when offered, and then runs the session of
//! [`super::connection`] unchanged: snapshot, `Connected`, dispatch, pings.
//! When the socket drops, voicepay does not back off: it simply accepts the
//! next connection, whose timing Asterisk's `reconnect_interval` decides.
//! The path of the request is not checked (the `uri` may carry any path).
//! One session at a time: a connection that arrives while a session is up
//! waits in the listen backlog until that session ends. If Asterisk gave up
//! on a socket that voicepay still believes in, voicepay notices within two
//! `ping_interval`s (an unanswered ping), then accepts the waiting one
//! (Asterisk will have retried by then). Taking a new connection over at
//! once, as Asterisk does with an inbound app, is left for later.
//! The listener has no TLS: keep it on loopback, or front it with a TLS
//! proxy and `tls_enabled = yes` on Asterisk's side.
//!
//! Restarting the daemon: with an inbound socket a restarted daemon's app
//! is absent between stop and start, so every call that reaches `Stasis()`
//! meanwhile fails and every event for the calls in progress is lost.
//! With the outbound socket the app stays registered in Asterisk and the
//! calls in progress stay in Stasis (their channels are not hung up when
//! the socket drops). What the daemon still lacks for those calls to
//! *resume* is their state — see the README section "Daemon restarts that
//! drop no call" for the per-call state design (migration 0019).

use super::rest::AriError;
use crate::config::AriSettings;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::{self, http};
use tokio_tungstenite::MaybeTlsStream;
use zeroize::Zeroizing;

use super::connection::Socket;

/// Binds `ari.listen`. Must run inside a tokio runtime.
pub(crate) fn bind(settings: &AriSettings) -> Result<TcpListener, AriError> {
    let std = std::net::TcpListener::bind(&settings.listen)
        .map_err(|e| AriError::Config(format!("ari.listen {:?}: {e}", settings.listen)))?;
    std.set_nonblocking(true)
        .map_err(|e| AriError::Config(format!("ari.listen: {e}")))?;
    TcpListener::from_std(std).map_err(|e| AriError::Config(format!("ari.listen: {e}")))
}

/// True when `authorization` is `Basic base64(username:password)` of the
/// settings, compared in constant time (the length of the expected pair
/// may leak; its content does not).
pub(crate) fn authorized(settings: &AriSettings, authorization: Option<&[u8]>) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some(token) = value
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case(b"basic "))
        .map(|_| value[6..].trim_ascii())
    else {
        return false;
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(token) else {
        return false;
    };
    let given = Zeroizing::new(given);
    let expected = Zeroizing::new(format!("{}:{}", settings.username, settings.password));
    bool::from(given.as_slice().ct_eq(expected.as_bytes()))
}

/// Waits for the next connection and upgrades it, refusing (401) a wrong
/// or missing credential. The TCP accept waits for ever (Asterisk decides
/// when to connect); the handshake must finish within `handshake_timeout`.
pub(crate) async fn accept(
    listener: &TcpListener,
    settings: &AriSettings,
    handshake_timeout: std::time::Duration,
) -> Result<Socket, AriError> {
    let (tcp, peer) = listener
        .accept()
        .await
        .map_err(|e| AriError::Transport(format!("ari.listen accept: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut refused = false;
    // The signature is tungstenite's handshake `Callback`.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let auth = req.headers().get(http::header::AUTHORIZATION);
        if !authorized(settings, auth.map(|v| v.as_bytes())) {
            refused = true;
            let mut err = ErrorResponse::new(Some("Authentication required".into()));
            *err.status_mut() = http::StatusCode::UNAUTHORIZED;
            return Err(err);
        }
        let offers_ari = req
            .headers()
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "ari");
        if offers_ari {
            resp.headers_mut().insert(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                http::HeaderValue::from_static("ari"),
            );
        }
        Ok(resp)
    };
    let upgrade = tokio_tungstenite::accept_hdr_async(MaybeTlsStream::Plain(tcp), check);
    match tokio::time::timeout(handshake_timeout, upgrade).await {
        Err(_) => Err(AriError::Transport(format!(
            "outbound WebSocket from {peer}: handshake timed out"
        ))),
        Ok(Ok(ws)) => Ok(ws),
        Ok(Err(_)) if refused => {
            tracing::warn!(%peer, "outbound ARI WebSocket refused: wrong or missing credentials");
            Err(AriError::Unauthorized)
        }
        Ok(Err(tungstenite::Error::Io(e))) => Err(AriError::Transport(format!(
            "outbound WebSocket from {peer}: {e}"
        ))),
        Ok(Err(e)) => Err(AriError::Transport(format!(
            "outbound WebSocket from {peer}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AriSettings {
        AriSettings {
            username: "voicepay".into(),
            password: "s3cret".into(),
            ..AriSettings::default()
        }
    }

    fn basic(pair: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
        .into_bytes()
    }

    #[test]
    fn only_the_configured_pair_is_authorized() {
        let s = settings();
        assert!(authorized(&s, Some(&basic("voicepay:s3cret"))));
        // The scheme name is case-insensitive (RFC 7235).
        assert!(authorized(&s, Some(b"basic dm9pY2VwYXk6czNjcmV0")));
        for wrong in ["voicepay:s3cre", "voicepay:s3cret ", "other:s3cret", ""] {
            assert!(!authorized(&s, Some(&basic(wrong))), "{wrong:?}");
        }
        assert!(!authorized(&s, None));
        assert!(!authorized(&s, Some(b"Bearer dm9pY2VwYXk6czNjcmV0")));
        assert!(!authorized(&s, Some(b"Basic !!!")));
    }
}
