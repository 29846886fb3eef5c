//! The demo's backend: `/demo/api/orders` (place), `/demo/api/orders/{id}`
//! (read) and `/demo/api/orders/{id}/events` (status stream), each relayed
//! to the merchant API in-process as the demo merchant.
//!
//! What stands between a stranger and the demo merchant: requests from
//! other sites are refused (403 `cross_site_request`), a body must be
//! `application/json` (415), an order is placed only for a browser session
//! (403 `session_required`) and within the session's and the demo's rate
//! (429 `rate_limited`), and an order is shown only to the session that
//! placed it (404 to anyone else, as for a missing order). A phone-only
//! payment is placed only for a session that has paid from that phone with
//! the card bound to it; to any other session the phone looks unbound (422
//! `no_binding`), so the page never tells whether a stranger's phone has a
//! card, let alone which.

use super::session::{same_origin, Session};
use super::Demo;
use crate::api::orders::{request, require_json};
use crate::api::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Instant;

/// What the page sends: the payment, without a merchant order id or key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkout {
    amount: serde_json::Value,
    phone: serde_json::Value,
    language: serde_json::Value,
    card_number: Option<serde_json::Value>,
    id_number: Option<serde_json::Value>,
}

/// Places a callback order as the demo merchant for the request's session;
/// answers what the API answered (the order, masked, or the API's error
/// with every bad field), or the demo's own refusal.
pub(super) async fn create(
    State(demo): State<Demo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    place(&demo, &headers, body, "callback").await
}

/// [`create`] for an order in `mode` (`callback`, or `assisted` for the
/// agent desk, [`super::desk`]).
pub(super) async fn place(
    demo: &Demo,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    mode: &str,
) -> Result<Response, ApiError> {
    same_origin(headers)?;
    require_json(headers)?;
    let body = crate::api::json::body(body)?;
    let session =
        Session::from_headers(headers, &demo.state.vault).ok_or_else(|| ApiError::Forbidden {
            code: "session_required",
            message:
                "open the demo page first: orders belong to the browser session that placed them"
                    .into(),
        })?;
    // Strict first: a field twice is a 422 naming it, as on the API.
    let value = crate::api::json::parse(&body)?;
    let Ok(c) = serde_json::from_value::<Checkout>(value) else {
        return Err(ApiError::MalformedJson(
            "the checkout form could not be read".into(),
        ));
    };
    let order = order_for(&session, c, mode).to_string();
    // The API's own checks first, so that every bad field is named; then
    // the binding, which this session may use only once it has proven it.
    let new = request::parse(order.as_bytes(), demo.state.settings.orders.max_amount)?;
    if new.card.is_none() && !demo.may_use_binding(&session, new.phone.as_str()).await? {
        return Err(ApiError::Unprocessable {
            code: "no_binding",
            message: "no card is bound to this phone for this browser session; \
                      pay once with card_number and id_number"
                .into(),
        });
    }
    let ticket = demo
        .limiter
        .take(session.reference_prefix(), Instant::now())
        .map_err(|retry_after_secs| ApiError::RateLimited {
            retry_after_secs,
            message: format!("too many demo orders: try again in {retry_after_secs} s"),
        })?;
    let resp = demo
        .call(Method::POST, "/v1/orders", None, Body::from(order))
        .await;
    if resp.status() != StatusCode::CREATED {
        // No order, no call: the place is not used up.
        demo.limiter.give_back(ticket);
    }
    Ok(resp)
}

/// The merchant API's order body for the page's form.
fn order_for(session: &Session, c: Checkout, mode: &str) -> serde_json::Value {
    let mut order = serde_json::json!({
        "merchant_order_id": session.new_reference(),
        "amount": c.amount,
        "currency": "CNY",
        "phone": c.phone,
        "language": c.language,
        "mode": mode,
        "description": if mode == "assisted" { "voicepay demo agent desk" } else { "voicepay demo checkout" },
    });
    // Both or neither: the API says which one is missing.
    for (name, value) in [("card_number", c.card_number), ("id_number", c.id_number)] {
        if let Some(v) = value.filter(|v| !v.is_null() && v.as_str() != Some("")) {
            order[name] = v;
        }
    }
    order
}

/// The order as the API shows it, to the session that placed it.
pub(super) async fn order(
    State(demo): State<Demo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    same_origin(&headers)?;
    let body = demo.owned_order(&headers, &id).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The order's status stream, relayed to the session that placed the order
/// (resumable with `Last-Event-ID` too).
pub(super) async fn events(
    State(demo): State<Demo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    same_origin(&headers)?;
    demo.owned_order(&headers, &id).await?;
    let last = headers.get("last-event-id").cloned();
    Ok(demo
        .call(
            Method::GET,
            &format!("/v1/orders/{id}/events"),
            last,
            Body::empty(),
        )
        .await)
}

/// Order ids are letters, digits and `_`: nothing else reaches the inner URI.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Demo {
    /// The order's view (JSON) when the request's session placed it; 404
    /// otherwise, exactly as for an order that does not exist.
    pub(super) async fn owned_order(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<Bytes, ApiError> {
        let session =
            Session::from_headers(headers, &self.state.vault).ok_or(ApiError::NotFound)?;
        if !plausible_id(id) {
            return Err(ApiError::NotFound);
        }
        let resp = self
            .call(
                Method::GET,
                &format!("/v1/orders/{id}"),
                None,
                Body::empty(),
            )
            .await;
        if resp.status() != StatusCode::OK {
            return Err(ApiError::NotFound);
        }
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading the order view: {e}")))?;
        let view: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::Internal(e.into()))?;
        match view["merchant_order_id"].as_str() {
            Some(reference) if session.owns(reference) => Ok(body),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Whether this session has proven it may pay with the card bound to
    /// `phone` (normalised): it paid from that phone with that very card.
    async fn may_use_binding(&self, session: &Session, phone: &str) -> Result<bool, ApiError> {
        Ok(self
            .state
            .store
            .paid_with_bound_card(super::MERCHANT_ID, phone, session.reference_prefix())
            .await?)
    }

    /// One request to the merchant API as the demo merchant.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        last_event_id: Option<HeaderValue>,
        body: Body,
    ) -> Response {
        use tower::ServiceExt;
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(v) = last_event_id {
            req = req.header("last-event-id", v);
        }
        let auth = zeroize::Zeroizing::new(format!("Bearer {}", self.key.as_str()));
        let req = match HeaderValue::from_str(&auth) {
            Ok(mut v) => {
                v.set_sensitive(true);
                req.header(header::AUTHORIZATION, v).body(body)
            }
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
        match req {
            Ok(req) => match self.api.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}
