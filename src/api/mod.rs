//! The merchant-facing HTTP API (axum). `router(state)` builds the whole
//! service so tests can drive it in-process or on a real port.

pub mod auth;
pub mod bindings;
pub mod error;
mod health;
pub mod json;
pub mod limits;
mod metrics;
mod openapi;
pub mod orders;
pub mod serve;
pub mod webhooks;

pub use error::{ApiError, FieldError};
pub use openapi::ApiDoc;

use crate::config::Settings;
use crate::crypto::Vault;
use crate::store::Store;
use crate::telemetry::{Metrics, Readiness};
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// What the HTTP handlers use, and nothing else: the call code and the
/// matcher are wired beside the edge by [`crate::app`], not through it
/// (the matcher's refund service is reached through its port only).
#[derive(Clone)]
pub struct AppState {
    /// The daemon's configuration.
    pub settings: Arc<Settings>,
    /// Orders, merchants, bindings and the webhook outbox.
    pub store: Store,
    /// Seals card and ID numbers before they are stored.
    pub vault: Arc<Vault>,
    /// This process's Prometheus series.
    pub metrics: Arc<Metrics>,
    /// Authenticated merchants by key hash, for a short time.
    pub merchant_cache: Arc<auth::MerchantCache>,
    /// The `[limits]` state: order rates, stream caps and pollers, wrong keys.
    pub limits: Arc<limits::Limits>,
    /// Refunds orders (`POST /v1/orders/{id}/refunds`): the daemon's
    /// matcher, which holds the issuer link.
    pub refunder: Arc<dyn crate::matcher::Refunder>,
    /// What `/readyz` reports beyond the database.
    pub readiness: Arc<Readiness>,
    /// The ISO 8583 acquirer link (`bank.kind = "iso8583"`), for `/readyz`;
    /// `None` with the stub issuer.
    pub link: Option<crate::bank::iso8583::Link>,
    /// Cancelled when the daemon stops. Long-lived responses (the status
    /// streams) end with it, so a graceful shutdown does not wait on them.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The whole merchant API: `/v1/…`, the probes, `/metrics` and the OpenAPI
/// document, with request ids, tracing (method and path only), the body
/// limit (`http.max_body_bytes`) and the request timeout
/// (`limits.request_timeout_secs`).
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.http.max_body_bytes;
    let v1 = Router::new()
        .route("/orders", post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}/refunds", post(orders::refunds::create))
        .route("/orders/{id}/capture", post(orders::capture::start))
        .route("/orders/{id}/capture/cancel", post(orders::capture::cancel))
        .route("/orders/{id}/events", get(orders::events::stream))
        .route("/bindings", get(bindings::list))
        .route("/bindings/{id}", delete(bindings::delete))
        .route("/webhooks/events", get(webhooks::list))
        .route("/webhooks/events/{id}/redeliver", post(webhooks::redeliver));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::timeout))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            // Path and method only: never headers (keys) or bodies (card data).
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
