//! `POST /v1/orders/{id}/capture` and `/capture/cancel`: the agent's
//! desktop asks voicepay to collect the secret from the cardholder of an
//! assisted call (mode `assisted`), or to stop collecting it. The handler
//! only records the request ([`crate::store::Store::move_capture`], one
//! conditional update); the node whose bridge holds the call sees it and
//! runs the capture (`crate::calls::assisted`), whichever node the request
//! reached. Progress follows on the order's live status stream
//! (`capture.progress`) and, with `notify_progress`, as webhooks.

use super::{find, idempotency_key, Idempotent};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::{auth::Merchant, AppState};
use crate::domain::Mode;
use crate::store::{now_ms, CaptureMove, CaptureRefused, OrderRow};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// What the capture endpoints answer (202): the request is recorded; the
/// call acts on it within `http.events_poll_ms`.
#[derive(Serialize, ToSchema)]
pub struct CaptureView {
    /// The order.
    #[schema(example = "ord_3f2a9c0d1e4b5a6978c0d1e2")]
    pub order_id: String,
    /// `requested` (capture) or `cancelling` (cancel).
    #[schema(example = "requested")]
    pub capture: String,
}

/// The endpoint of `what`, after `/v1/orders/{id}/`.
fn path(what: CaptureMove) -> &'static str {
    match what {
        CaptureMove::Request => "capture",
        CaptureMove::Cancel => "capture/cancel",
    }
}

/// Ask for the cardholder's secret on an assisted call. voicepay then keeps
/// the cardholder's keys and audio from the agent, plays the prompts to the
/// cardholder alone and collects the PIN (or expiry + CVN2); the agent
/// follows the counts on `GET /v1/orders/{id}/events` (`capture.progress`).
#[utoipa::path(
    post, path = "/v1/orders/{id}/capture", tag = "orders",
    params(
        ("id" = String, Path, description = "voicepay order id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$", example = "capture-A20261125001-1", description = "1-255 visible ASCII characters. A retry with the key replays the first answer (`Idempotent-Replayed: true`) and starts nothing; used with another request, 409 `idempotency_key_reused`."),
    ),
    responses(
        (status = 202, description = "The capture is requested", body = CaptureView),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such order for this merchant", body = ErrorBody),
        (status = 409, description = "The order is not assisted (`order_not_assisted`), the cardholder or the agent is not in the bridge yet (`capture_not_ready`), a capture is already requested or running or the secret is with the issuer (`capture_in_progress`), the order is final (`order_final`), or the Idempotency-Key was used with another request (`idempotency_key_reused`); nothing changed", body = ErrorBody),
        (status = 422, description = "A malformed Idempotency-Key (`invalid_request`, field `Idempotency-Key`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    move_capture(&state, &merchant.id, &id, &headers, CaptureMove::Request).await
}

/// Stop the capture running on an assisted call (the agent wants to talk to
/// the cardholder): the prompts stop and both are back in the bridge,
/// unmuted. A capture whose secret already went to the issuer is not
/// stopped: its result comes as usual.
#[utoipa::path(
    post, path = "/v1/orders/{id}/capture/cancel", tag = "orders",
    params(
        ("id" = String, Path, description = "voicepay order id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$", example = "capture-cancel-A20261125001-1", description = "1-255 visible ASCII characters. A retry with the key replays the first answer (`Idempotent-Replayed: true`); used with another request, 409 `idempotency_key_reused`."),
    ),
    responses(
        (status = 202, description = "The capture is being stopped", body = CaptureView),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such order for this merchant", body = ErrorBody),
        (status = 409, description = "The order is not assisted (`order_not_assisted`), no capture is requested or running (`no_capture_running`), the order is final (`order_final`), or the Idempotency-Key was used with another request (`idempotency_key_reused`); nothing changed", body = ErrorBody),
        (status = 422, description = "A malformed Idempotency-Key (`invalid_request`, field `Idempotency-Key`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    move_capture(&state, &merchant.id, &id, &headers, CaptureMove::Cancel).await
}

async fn move_capture(
    state: &AppState,
    merchant_id: &str,
    id: &str,
    headers: &HeaderMap,
    what: CaptureMove,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let order = find(state, merchant_id, id).await?;
    let request = format!("POST /v1/orders/{}/{}", order.id, path(what));
    let now = now_ms();
    let idem = Idempotent::new(state, merchant_id, key, request.as_bytes(), now);
    if let Some(r) = idem.replay(state, merchant_id).await? {
        return Ok(r);
    }
    refuse_order(&order)?;
    let view = CaptureView {
        order_id: order.id.clone(),
        capture: what.state().to_owned(),
    };
    let body = serde_json::to_string(&view).map_err(anyhow::Error::from)?;
    let moved = state
        .store
        .move_capture(&order.id, merchant_id, idem.entry(202, &body), now, what)
        .await?;
    match moved {
        Ok(()) => {
            tracing::info!(order = %order.id, capture = what.state(), "assisted capture");
            Ok((
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response())
        }
        Err(CaptureRefused::KeyUsed) => match idem.replay(state, merchant_id).await? {
            Some(r) => Ok(r),
            None => Err(ApiError::Conflict {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key is in use by another request".into(),
            }),
        },
        Err(why) => {
            // The order may have become final meanwhile.
            if let Some(now) = state.store.order(&order.id).await? {
                refuse_order(&now)?;
            }
            Err(refused(why))
        }
    }
}

/// 409 for an order that is not assisted, or final.
fn refuse_order(order: &OrderRow) -> Result<(), ApiError> {
    if order.mode != Mode::Assisted {
        return Err(ApiError::Conflict {
            code: "order_not_assisted",
            message: format!(
                "the order's mode is {}: only assisted orders have a capture",
                order.mode.as_str()
            ),
        });
    }
    if order.status().is_final() {
        return Err(ApiError::Conflict {
            code: "order_final",
            message: format!("the order is {}", order.status().as_str()),
        });
    }
    Ok(())
}

fn refused(why: CaptureRefused) -> ApiError {
    let (code, message) = match why {
        CaptureRefused::NotReady => (
            "capture_not_ready",
            "the cardholder and the agent must both be in the call before a capture",
        ),
        CaptureRefused::InProgress => (
            "capture_in_progress",
            "a capture is already requested or running, or the secret is with the issuer",
        ),
        CaptureRefused::NotRunning => ("no_capture_running", "no capture is requested or running"),
        CaptureRefused::KeyUsed => (
            "idempotency_key_reused",
            "this Idempotency-Key is in use by another request",
        ),
    };
    ApiError::Conflict {
        code,
        message: message.into(),
    }
}
