//! The demo's agent desk (issue #16): `/demo/api/assisted` places an
//! assisted order (mode `assisted`) as the demo merchant, and
//! `/demo/api/orders/{id}/capture` and `/capture/cancel` ask for the
//! cardholder's secret or stop asking, each relayed to the merchant API's
//! `POST /v1/orders/{id}/capture` (or `/capture/cancel`) in-process, so the
//! demo merchant's key never reaches the browser.
//!
//! The same guards as the checkout ([`super::orders`]): same-origin
//! requests only (403 `cross_site_request`), a JSON body for placing (415),
//! a browser session (403 `session_required`), the session's and the
//! demo's rate (429 `rate_limited`), and the capture only for the session
//! that placed the order (404 to anyone else). The API's answers are
//! relayed as they are: 202 `{order_id, capture}`, or its 409
//! (`capture_not_ready`, `capture_in_progress`, `no_capture_running`,
//! `order_final`). The progress follows on the order's status stream
//! (`/demo/api/orders/{id}/events`, `event: capture.progress`, counts only).

use super::orders::place;
use super::session::same_origin;
use super::Demo;
use crate::api::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;

/// Places an assisted order for the request's session (the checkout's
/// form: amount, card, ID number, phone, language); answers the API's
/// order view (with its 8-digit `transfer_code`) or its error.
pub(super) async fn create(
    State(demo): State<Demo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    place(&demo, &headers, body, "assisted").await
}

/// Asks for the secret on the session's assisted order.
pub(super) async fn capture(
    State(demo): State<Demo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    relay(&demo, &headers, &id, "capture").await
}

/// Stops a running capture on the session's assisted order.
pub(super) async fn cancel(
    State(demo): State<Demo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    relay(&demo, &headers, &id, "capture/cancel").await
}

/// `POST /v1/orders/{id}/{what}` as the demo merchant, for the order's own
/// session only (404 otherwise, as for a missing order).
async fn relay(
    demo: &Demo,
    headers: &HeaderMap,
    id: &str,
    what: &str,
) -> Result<Response, ApiError> {
    same_origin(headers)?;
    demo.owned_order(headers, id).await?;
    Ok(demo
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/{what}"),
            None,
            Body::empty(),
        )
        .await)
}
