//! The merchant API's accept loop: HTTP/1.1 over hyper with the
//! connection-level limits `axum::serve` has no knob for.
//!
//! - `limits.header_read_timeout_secs`: a client that does not finish its
//!   header block in time (slow-loris), or keeps a connection idle that
//!   long, is disconnected by hyper's own timer.
//! - `limits.max_connections`: a semaphore held by each connection. One more
//!   is still read and answered, 503 `overloaded` with `Retry-After` and
//!   `Connection: close`, so a client sees why; at most
//!   [`REFUSALS_AT_ONCE`] such answers run at once, past that the socket is
//!   closed unanswered.
//!
//! Graceful shutdown as `axum::serve`'s: stop accepting, let requests in
//! flight finish (the status streams end on the same token), then return.

use super::ApiError;
use crate::config::LimitSettings;
use crate::telemetry::{LimitLabels, Metrics};
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Over-cap connections being answered 503 at once.
pub const REFUSALS_AT_ONCE: usize = 64;

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits
/// for the open connections to finish.
///
/// # Errors
/// None today: accept errors (e.g. out of file descriptors) are logged and
/// retried after a pause, as `axum::serve` does.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &LimitSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics
                .rate_limited
                .get_or_create(&LimitLabels {
                    limit: "connections",
                })
                .inc();
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                let http = http.clone();
                tokio::spawn(async move {
                    refuse(&http, stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A connection over the cap: its request is answered 503 `overloaded`
/// and the connection closed (no keep-alive; the header-read timeout holds
/// here too). Not waited for at shutdown: it ends by itself.
async fn refuse(http: &http1::Builder, stream: TcpStream) {
    let answer = hyper::service::service_fn(|_req| {
        let mut resp = ApiError::Overloaded.into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        std::future::ready(Ok::<_, Infallible>(resp))
    });
    let mut http = http.clone();
    http.keep_alive(false);
    let _ = http.serve_connection(TokioIo::new(stream), answer).await;
}
