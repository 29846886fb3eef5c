//! `GET /v1/orders/{id}/events`: the order's status changes as Server-Sent
//! Events, read from the append-only `order_events` log.
//!
//! New events are found by polling the database every `http.events_poll_ms`
//! rather than by a hook in the write paths: any node's calls show up on any
//! node's stream, and a stream costs one indexed read per interval. The
//! event id is the log row's id, so a client that reconnects with
//! `Last-Event-ID` gets exactly what it missed. The stream ends after the
//! final status (or at once when the order is final and nothing is left).

use super::super::error::{ApiError, ErrorBody, FieldError};
use super::super::{auth::Merchant, AppState};
use crate::domain::OrderStatus;
use crate::store::{EventRow, Store};
use crate::views::OrderEvent;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
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
        (status = 200, description = "Server-Sent Events, one per status change (the schema is one event); `: keep-alive` comments between them", body = StatusStreamEvent, content_type = "text/event-stream"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such order for this merchant", body = ErrorBody),
        (status = 422, description = "Last-Event-ID is not an event id", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = last_event_id(&headers)?;
    let order = super::find(&state, &merchant.id, &id).await?;
    // A final order gets its remaining events, then the end.
    let final_at_start = order.status().is_final();
    let feed = Feed {
        store: state.store.clone(),
        order_id: order.id,
        last: after,
        queue: VecDeque::new(),
        final_at_start,
        done: false,
        poll: Duration::from_millis(state.settings.http.events_poll_ms),
        shutdown: state.shutdown.clone(),
    };
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(
            state.settings.http.events_keepalive_secs,
        ))
        .text("keep-alive");
    Ok(Sse::new(futures_util::stream::unfold(feed, Feed::next)).keep_alive(keep_alive))
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

/// One stream's cursor over the order's log.
struct Feed {
    store: Store,
    order_id: String,
    /// The id of the last log row looked at.
    last: i64,
    queue: VecDeque<Event>,
    final_at_start: bool,
    /// The final status is queued (or the order was final and drained).
    done: bool,
    poll: Duration,
    shutdown: CancellationToken,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let rows = match self.store.events_after(&self.order_id, self.last).await {
                Ok(rows) => rows,
                Err(e) => {
                    // The client reconnects with Last-Event-ID and misses nothing.
                    tracing::warn!(order = %self.order_id, error = %e, "status stream read failed");
                    return None;
                }
            };
            let full_page = rows.len() >= 100;
            for row in rows {
                self.last = row.id;
                if let Some(event) = self.event(&row).await {
                    self.queue.push_back(event);
                }
                if self.done {
                    break;
                }
            }
            if !self.queue.is_empty() || self.done || full_page {
                continue;
            }
            if self.final_at_start {
                return None;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// The SSE event for a status row (`created` or `status`); other audit
    /// entries (bank attempts …) are not status changes and are skipped.
    async fn event(&mut self, row: &EventRow) -> Option<Event> {
        if row.kind != "created" && row.kind != "status" {
            return None;
        }
        let status = row.to_status?;
        let result_code = if status.is_final() {
            self.done = true;
            match self.store.order(&self.order_id).await {
                Ok(order) => order.and_then(|o| o.result_code),
                Err(e) => {
                    tracing::warn!(order = %self.order_id, error = %e, "reading the result failed");
                    None
                }
            }
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
