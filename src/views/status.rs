//! A live status event as merchants see it: the `data:` of
//! `GET /v1/orders/{id}/events`.

use super::rfc3339;
use crate::domain::OrderStatus;
use crate::store::EventRow;
use serde::Serialize;
use utoipa::ToSchema;

/// The `data:` of one status event. Never a secret: the log holds none, and
/// card data is not part of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderEvent {
    /// The status the order moved to (`pending` for its creation).
    pub status: OrderStatus,
    /// The status it left; null for the creation.
    pub from: Option<OrderStatus>,
    /// A short note from the audit log, e.g. `answered`, `wrong secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// On the final event: the order's result code, e.g. `approved`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_code: Option<String>,
    /// When it happened (RFC 3339).
    pub created: String,
}

impl OrderEvent {
    /// The event for status row `row`, which moved the order to `status`;
    /// `result_code` is the order's result when `status` is final.
    pub fn new(row: &EventRow, status: OrderStatus, result_code: Option<String>) -> Self {
        Self {
            status,
            from: row.from_status,
            detail: row.detail.clone(),
            result_code,
            created: rfc3339(row.created_at),
        }
    }
}
