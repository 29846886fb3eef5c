//! The `/metrics` endpoint and the middleware that counts requests into the
//! process's [`Metrics`](crate::telemetry::Metrics).

use super::AppState;
use crate::telemetry::{RequestLabels, RouteLabels, StatusLabels};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Counts every request under its route template (never the raw path, which
/// holds order ids).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// The method as a label: one of the nine methods of RFC 9110 (and
/// PATCH), or `other` for any method a client makes up, so that no client
/// can add series to `/metrics`. (Routes are matched templates or
/// `unmatched`; statuses are the ones the handlers answer.)
fn method_label(method: &Method) -> String {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if KNOWN.contains(method) {
        method.as_str().to_owned()
    } else {
        "other".to_owned()
    }
}

/// The process's metrics in the OpenMetrics 1.0 text format (which
/// Prometheus scrapes): `application/openmetrics-text; version=1.0.0;
/// charset=utf-8`. No key: it is for the operator's scraper.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "OpenMetrics 1.0 text exposition", content_type = "application/openmetrics-text", body = String, example = "# TYPE voicepay_orders_created counter\nvoicepay_orders_created_total 1\n# EOF\n")))]
pub async fn render(State(state): State<AppState>) -> Response {
    if let Ok(counts) = state.store.order_counts().await {
        for status in crate::domain::OrderStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            state
                .metrics
                .orders
                .get_or_create(&StatusLabels {
                    status: status.as_str().into(),
                })
                .set(n);
        }
    }
    let Ok(out) = state.metrics.encode() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
