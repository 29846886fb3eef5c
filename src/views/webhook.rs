//! Webhooks as merchants see them: the signed body (`{id, type, created,
//! data}`, where `data` is the order exactly as `GET /v1/orders/{id}` shows
//! it, refunds included) and, in `GET /v1/webhooks/events`, each event with how its delivery
//! went.

use super::{rfc3339, OrderView};
use crate::domain::{DeliveryErrorClass, DeliveryStatus};
use crate::store::{OutboxRow, WebhookEvent};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created: String,
    data: OrderView,
    /// `capture.progress` only: the capture's counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<serde_json::Value>,
}

/// The JSON body of webhook event `e`. This exact string is stored in the
/// outbox, signed and sent. The store calls it (it is handed this function
/// when it is built) inside the transaction of the status change.
pub fn webhook_body(e: &WebhookEvent<'_>) -> String {
    let envelope = Envelope {
        id: e.id,
        kind: e.kind,
        created: rfc3339(e.created),
        data: OrderView::new(e.order, e.attempts).with_refunds(e.refunds),
        progress: e
            .progress
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()),
    };
    // A struct of strings and numbers always serializes.
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// This page's events.
    pub events: Vec<EventView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One webhook event and how its delivery went.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    #[schema(example = "evt_5f0c6b1e2d3a4b5c6d7e8f90")]
    pub id: String,
    /// e.g. `order.succeeded`, `order.calling`.
    #[serde(rename = "type")]
    #[schema(example = "order.succeeded")]
    pub kind: String,
    pub order_id: String,
    /// `pending` (being delivered or waiting for a retry), `delivered`, `failed`.
    pub status: DeliveryStatus,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When the next attempt is due (pending events).
    pub next_attempt_at: Option<String>,
    /// Why the last attempt failed, coarsely: `http_status`, `timeout`,
    /// `connection_refused`, `tls_error`, `blocked_address` (the URL's host
    /// is, or resolves to, a loopback, private or otherwise special
    /// address, or is plain http where only https is accepted; nothing was
    /// sent) or `internal`. Absent before any failure. The detailed reason
    /// is kept for the operator (`voicepay webhooks list`), not shown here.
    pub last_error_class: Option<DeliveryErrorClass>,
    pub notify_url: String,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

impl EventView {
    /// The view of one outbox row.
    pub fn new(r: &OutboxRow) -> Self {
        Self {
            id: r.id.clone(),
            kind: r.event_type.clone(),
            order_id: r.order_id.clone(),
            status: r.status,
            attempts: r.attempts,
            next_attempt_at: (r.status == DeliveryStatus::Pending)
                .then(|| rfc3339(r.next_attempt_at)),
            last_error_class: r
                .last_error_class
                .as_deref()
                .and_then(DeliveryErrorClass::parse),
            notify_url: r.notify_url.clone(),
            created_at: rfc3339(r.created_at),
            delivered_at: r.delivered_at.map(rfc3339),
        }
    }
}
