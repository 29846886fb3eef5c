//! `/v1/webhooks/events`: a merchant's own webhook events, their delivery
//! state, and redelivery. Another merchant's event is answered exactly like
//! an unknown one (404).

use super::error::{ApiError, ErrorBody, FieldError};
use super::{auth::Merchant, AppState};
use crate::store::{now_ms, Redelivery, WebhookFilter};
use crate::views::{EventList, EventView};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

/// Largest page.
const MAX_LIMIT: i64 = 100;

/// The query of `GET /v1/webhooks/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `pending`, `delivered` or `failed`; all when absent.
    #[param(pattern = "^(pending|delivered|failed)$", example = "failed")]
    pub status: Option<String>,
    /// Events per page, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100, example = 50)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page: events older than that one.
    #[param(pattern = "^[A-Za-z0-9_]{0,64}$")]
    pub before: Option<String>,
}

/// List this merchant's webhook events, e.g. the ones that failed.
#[utoipa::path(
    get, path = "/v1/webhooks/events", tag = "webhooks",
    params(EventsQuery),
    responses(
        (status = 200, description = "This merchant's events, newest first", body = EventList),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 422, description = "Bad `status`, `limit` or `before`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(q) = query.map_err(|_| {
        ApiError::Validation(vec![FieldError::new(
            "limit",
            "wrong_type",
            "limit must be an integer",
        )])
    })?;
    let mut errors = Vec::new();
    if let Some(s) = &q.status {
        if crate::domain::DeliveryStatus::parse(s).is_none() {
            errors.push(FieldError::new(
                "status",
                "invalid_status",
                "status must be pending, delivered or failed",
            ));
        }
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            "invalid_limit",
            "limit must be 1 to 100",
        ));
    }
    if let Some(b) = &q.before {
        if !valid_id(b) {
            errors.push(FieldError::new(
                "before",
                "invalid_cursor",
                "before must be an event id",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // One more than asked tells whether there is a next page.
    let mut rows = state
        .store
        .list_webhooks(&WebhookFilter {
            merchant_id: Some(&merchant.id),
            status: q.status.as_deref(),
            before: q.before.as_deref(),
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(EventList {
        next_cursor: more.then(|| rows.last().map(|r| r.id.clone())).flatten(),
        events: rows.iter().map(EventView::new).collect(),
    }))
}

/// Send an event again now (e.g. after it failed). Earlier attempts stay
/// counted; the retry schedule starts over (30 s, 1 min, … within a fresh
/// 24 h window). 409 `webhook_in_flight` while the event is being sent:
/// try again when that attempt is over.
#[utoipa::path(
    post, path = "/v1/webhooks/events/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "event id")),
    responses(
        (status = 200, description = "The event, due now", body = EventView),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such event for this merchant", body = ErrorBody),
        (status = 409, description = "The event is being sent right now (`webhook_in_flight`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::NotFound);
    }
    let row = match state
        .store
        .redeliver_webhook(&id, Some(&merchant.id), now_ms())
        .await?
    {
        Redelivery::Due(row) => row,
        Redelivery::NotFound => return Err(ApiError::NotFound),
        Redelivery::InFlight(_) => {
            return Err(ApiError::Conflict {
                code: "webhook_in_flight",
                message: "the event is being sent right now; try again when that attempt is over"
                    .into(),
            })
        }
    };
    tracing::info!(event = %row.id, merchant = %merchant.id, "webhook redelivery requested");
    Ok(Json(EventView::new(&row)))
}

fn valid_id(id: &str) -> bool {
    id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
