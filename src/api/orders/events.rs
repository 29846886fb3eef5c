//! `GET /v1/orders/{id}/events`: the order's status changes as Server-Sent
//! Events, read from the append-only `order_events` log.
//!
//! New events are found by polling the database every `http.events_poll_ms`
//! rather than by a hook in the write paths: any node's calls show up on any
//! node's stream. One poller per order serves every stream of that order
//! ([`super::feeds`]), so an order costs one indexed read per interval
//! however many clients follow it, and the open streams are capped
//! (`limits.max_streams`, `limits.max_streams_per_merchant`). The
//! event id is the log row's id, so a client that reconnects with
//! `Last-Event-ID` gets exactly what it missed. The stream ends after the
//! final status (or at once when the order is final and nothing is left).

use super::super::error::{ApiError, ErrorBody, FieldError};
use super::super::{auth::Merchant, AppState};
use super::feeds::{Snapshot, StreamSlot};
use crate::domain::OrderStatus;
use crate::store::EventRow;
use crate::views::OrderEvent;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use utoipa::ToSchema;

/// Live status of an order as Server-Sent Events: `id:` is the event's
/// sequence number (send it back as `Last-Event-ID` to resume), `event:` the
/// new status, `data:` an [`OrderEvent`]. Closed after the final status.
#[utoipa::path(
    get, path = "/v1/orders/{id}/events", tag = "orders",
    params(
        ("id" = String, Path, description = "voicepay order id"),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^[0-9]{0,18}$", example = "2", description = "Resume: only events after this event id (empty: from the start)"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events, one per status change (the schema is one event); an assisted order also gets `event: capture.progress` events whose `data:` is `{step, digits_entered, digits_expected, tries_left}` (counts only); `: keep-alive` comments between them. Sent with `X-Accel-Buffering: no`, so a proxy such as nginx passes each event on at once", body = StatusStreamEvent, content_type = "text/event-stream",
            headers(("X-Accel-Buffering" = String, description = "Always `no`: proxies must not buffer the stream"))),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such order for this merchant", body = ErrorBody),
        (status = 422, description = "Last-Event-ID is not an event id", body = ErrorBody),
        (status = 429, description = "Too many streams open on the node or for the merchant (`rate_limited`); `Retry-After` says when to try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = last_event_id(&headers)?;
    let order = super::find(&state, &merchant.id, &id).await?;
    let feeds = &state.limits.feeds;
    let slot = feeds.open(&merchant.id)?;
    let rx = feeds.subscribe(&order.id, &state.shutdown);
    let reads_at_start = rx.borrow().reads;
    let follow = Follow {
        rx,
        // A final order gets its remaining events, then the end.
        final_at_start: order.status().is_final(),
        order_id: order.id,
        last: after,
        reads_at_start,
        done: false,
        _slot: slot,
    };
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(
            state.settings.http.events_keepalive_secs,
        ))
        .text("keep-alive");
    let sse = Sse::new(futures_util::stream::unfold(follow, Follow::next)).keep_alive(keep_alive);
    // A proxy (nginx by default) must pass each event on as it comes.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}

/// One event of the stream as an SSE client parses it (`id:`, `event:`,
/// `data:` lines). Documents the stream; the events are written by [`Feed`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatusStreamEvent {
    /// The event's sequence number: send it back as `Last-Event-ID`.
    #[schema(pattern = "^[0-9]+$", example = "2")]
    id: String,
    /// The status the order moved to (the same as `data.status`).
    event: OrderStatus,
    /// An `OrderEvent`, as JSON.
    #[schema(
        content_media_type = "application/json",
        example = r#"{"status":"cancelled","from":"pending","detail":"merchant_cancelled","result_code":"merchant_cancelled","created":"2026-11-30T18:34:11.208Z"}"#
    )]
    data: String,
}

/// `Last-Event-ID`: absent or empty means from the start; otherwise 1 to 18
/// digits (an event id), as the document's pattern says.
fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(v) = headers.get("last-event-id").filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    v.to_str()
        .ok()
        .filter(|s| s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "Last-Event-ID",
                "invalid_last_event_id",
                "Last-Event-ID must be the id of an event of this stream",
            )])
        })
}

/// One stream's cursor over its order's shared [`Snapshot`].
struct Follow {
    rx: watch::Receiver<Arc<Snapshot>>,
    order_id: String,
    /// The id of the last row sent (or the client's `Last-Event-ID`).
    last: i64,
    final_at_start: bool,
    /// The poller's reads when this stream joined.
    reads_at_start: u64,
    /// The final status was sent.
    done: bool,
    /// This stream's place under the caps, given back when it is dropped.
    _slot: StreamSlot,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if self.done {
                return None;
            }
            let snap = self.rx.borrow_and_update().clone();
            while let Some(row) = snap.rows.iter().find(|r| r.id > self.last) {
                self.last = row.id;
                if let Some(event) = self.event(row, &snap) {
                    return Some((Ok(event), self));
                }
            }
            if snap.ended {
                return None;
            }
            // A final order whose final row is not in its log: what a read
            // begun after this stream started had is all there is.
            if self.final_at_start && snap.reads >= self.reads_at_start + 2 {
                return None;
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The SSE event for a status row (`created` or `status`), or for an
    /// assisted call's `capture` row (`event: capture.progress`, its
    /// `data:` the stored counts: `{step, digits_entered,
    /// digits_expected, tries_left}`).
    fn event(&mut self, row: &EventRow, snap: &Snapshot) -> Option<Event> {
        if row.kind == "capture" {
            let progress = row.detail.as_deref()?;
            return Some(
                Event::default()
                    .id(row.id.to_string())
                    .event("capture.progress")
                    .data(progress),
            );
        }
        let status = row.to_status?;
        let result_code = if status.is_final() {
            self.done = true;
            snap.result_code.clone()
        } else {
            None
        };
        let data = OrderEvent::new(row, status, result_code);
        let event = Event::default()
            .id(row.id.to_string())
            .event(status.as_str())
            .json_data(&data);
        match event {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(order = %self.order_id, error = %e, "status event not encodable");
                None
            }
        }
    }
}
