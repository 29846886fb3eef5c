//! The webhook body: `{id, type, created, data}` where `data` is the order
//! exactly as `GET /v1/orders/{id}` shows it (masked card, no ID number).

use crate::api::orders::view::{rfc3339, OrderView};
use crate::store::{AttemptRow, OrderRow};
use serde::Serialize;

#[derive(Serialize)]
struct Event<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created: String,
    data: OrderView,
}

/// The JSON body of event `id` of type `kind` about `order`, created at
/// `now` (Unix ms). This exact string is stored, signed and sent.
pub fn payload(
    id: &str,
    kind: &str,
    now: i64,
    order: &OrderRow,
    attempts: &[AttemptRow],
) -> String {
    let event = Event {
        id,
        kind,
        created: rfc3339(now),
        data: OrderView::new(order, attempts),
    };
    // A struct of strings and numbers always serializes.
    serde_json::to_string(&event).unwrap_or_default()
}
