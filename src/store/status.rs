//! Status events and the webhooks they make.
//!
//! `Store::record_status` is the one place a status change is written to
//! the audit log; in the same transaction it queues the merchant's webhook
//! event (its body rendered by the [`WebhookBody`] the store was built
//! with), so an event exists if and only if the change committed.

use super::orders::{AttemptRow, OrderRow, ORDER_COLUMNS};
use super::refunds::RefundRow;
use super::{Result, Store};
use crate::domain::OrderStatus;

type Tx<'t> = sqlx::Transaction<'t, sqlx::Any>;

/// A webhook event as it is queued, handed to the [`WebhookBody`] renderer
/// inside the transaction of the status change that made it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookEvent<'a> {
    /// The event id (`evt_…`), also the `Idempotency-Key` of its deliveries.
    pub id: &'a str,
    /// Its type, e.g. `order.succeeded` (see [`event_type`]).
    pub kind: &'a str,
    /// When it was made, Unix ms.
    pub created: i64,
    /// The order as the change left it.
    pub order: &'a OrderRow,
    /// The order's call attempts, oldest first.
    pub attempts: &'a [AttemptRow],
    /// The order's refunds, oldest first, as the change left them.
    pub refunds: &'a [RefundRow],
    /// A `capture.progress` event's progress, as JSON (counts only).
    pub progress: Option<&'a str>,
}

/// Renders the exact JSON body of a webhook event (stored, signed, sent).
/// The store is handed one when it is built ([`Store::connect`]): what a
/// merchant sees is defined above the store (`crate::views::webhook_body`).
pub type WebhookBody = fn(&WebhookEvent<'_>) -> String;

/// Which events the merchant can get, by the status change that makes them.
/// Final statuses always; progress ones only when the order asked.
/// Returns the event type and whether it is a progress event (sent only
/// with `notify_progress`); `None` when the change makes no event.
pub fn event_type(from: OrderStatus, to: OrderStatus) -> Option<(&'static str, bool)> {
    use OrderStatus::*;
    Some(match (from, to) {
        (_, Succeeded) => ("order.succeeded", false),
        (_, Failed) => ("order.failed", false),
        (_, Cancelled) => ("order.cancelled", false),
        (_, Expired) => ("order.expired", false),
        (_, Calling) => ("order.calling", true),
        // Back from `authorizing` (a wrong secret with tries left) is not a
        // new answer.
        (Pending | Calling, InCall) => ("order.answered", true),
        (_, Authorizing) => ("order.authorizing", true),
        _ => return None,
    })
}

/// Appends the `status` entry of the audit log and, when the change makes
/// a webhook event for this order, its outbox row: inside the caller's
/// transaction, after the order row itself was updated.
impl Store {
    pub(super) async fn record_status(
        &self,
        tx: &mut Tx<'_>,
        order_id: &str,
        from: OrderStatus,
        to: OrderStatus,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        insert_status(tx, order_id, from, to, detail, now).await?;
        self.enqueue(tx, order_id, from, to, now).await
    }

    async fn enqueue(
        &self,
        tx: &mut Tx<'_>,
        order_id: &str,
        from: OrderStatus,
        to: OrderStatus,
        now: i64,
    ) -> Result<()> {
        let Some((kind, progress)) = event_type(from, to) else {
            return Ok(());
        };
        self.enqueue_event(tx, order_id, kind, progress, now).await
    }

    /// [`Store::record_status`] for an order whose row the caller's
    /// conditional `UPDATE … RETURNING` already read, with the merchant's
    /// URL ([`MOVED_COLUMNS`]): the same rows written, without reading the
    /// order again.
    pub(super) async fn record_status_of(
        &self,
        tx: &mut Tx<'_>,
        moved: &Moved,
        from: OrderStatus,
        to: OrderStatus,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        insert_status(tx, &moved.order.id, from, to, detail, now).await?;
        let Some((kind, progress)) = event_type(from, to) else {
            return Ok(());
        };
        let url = moved
            .order
            .notify_url
            .clone()
            .or_else(|| moved.merchant_url.clone());
        self.enqueue_for(tx, &moved.order, url, (kind, progress, None), now)
            .await
    }

    /// Queues webhook event `kind` for the order (its body rendered from the
    /// order as it stands in `tx`), when the order or its merchant has a
    /// URL and, for a `progress` event, the order asked for those. Each call
    /// queues a new event with its own id.
    pub(super) async fn enqueue_event(
        &self,
        tx: &mut Tx<'_>,
        order_id: &str,
        kind: &str,
        progress: bool,
        now: i64,
    ) -> Result<()> {
        self.enqueue_event_with(tx, order_id, kind, progress, now, None)
            .await
    }

    /// [`Store::enqueue_event`] with the capture progress (JSON) an
    /// assisted call's `capture.progress` event carries.
    pub(super) async fn enqueue_event_with(
        &self,
        tx: &mut Tx<'_>,
        order_id: &str,
        kind: &str,
        progress: bool,
        now: i64,
        capture: Option<&str>,
    ) -> Result<()> {
        let target: Option<(Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT o.notify_url, m.notify_url, o.notify_progress FROM orders o \
         JOIN merchants m ON m.id = o.merchant_id WHERE o.id = $1",
        )
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((order_url, merchant_url, wants_progress)) = target else {
            return Ok(());
        };
        let Some(url) = order_url.or(merchant_url) else {
            return Ok(());
        };
        if progress && wants_progress == 0 {
            return Ok(());
        }
        let order = sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
        ))
        .bind(order_id)
        .fetch_one(&mut **tx)
        .await?;
        self.enqueue_for(tx, &order, Some(url), (kind, progress, capture), now)
            .await
    }

    /// The outbox row of event `kind` for `order` (as the change left it),
    /// sent to `url`, with an assisted call's capture progress (JSON) when
    /// given; nothing without a URL, or for a progress event the order did
    /// not ask for.
    async fn enqueue_for(
        &self,
        tx: &mut Tx<'_>,
        order: &OrderRow,
        url: Option<String>,
        (kind, progress, capture): (&str, bool, Option<&str>),
        now: i64,
    ) -> Result<()> {
        let Some(url) = url else {
            return Ok(());
        };
        if progress && order.notify_progress == 0 {
            return Ok(());
        }
        let order_id = order.id.as_str();
        let attempts = sqlx::query_as::<_, AttemptRow>(
            "SELECT attempt, channel_id, started_at, answered_at, ended_at, outcome, cause \
         FROM call_attempts WHERE order_id = $1 ORDER BY attempt",
        )
        .bind(order_id)
        .fetch_all(&mut **tx)
        .await?;
        let refunds = sqlx::query_as::<_, RefundRow>(&format!(
            "SELECT {} FROM refunds WHERE order_id = $1 ORDER BY created_at, id",
            super::refunds::REFUND_COLUMNS
        ))
        .bind(order_id)
        .fetch_all(&mut **tx)
        .await?;
        let id = format!("evt_{}", crate::crypto::random_hex(12));
        let payload = (self.webhook_body)(&WebhookEvent {
            id: &id,
            kind,
            created: now,
            order,
            attempts: &attempts,
            refunds: &refunds,
            progress: capture,
        });
        sqlx::query(
        "INSERT INTO webhook_outbox (id, merchant_id, order_id, event_type, payload, notify_url, \
            status, attempts, next_attempt_at, created_at, schedule_start) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
    )
    .bind(&id)
    .bind(&order.merchant_id)
    .bind(order_id)
    .bind(kind)
    .bind(&payload)
    .bind(&url)
    .bind(now)
    .execute(&mut **tx)
    .await?;
        Ok(())
    }
}

/// What a conditional `UPDATE orders … RETURNING` gives back after
/// [`ORDER_COLUMNS`]: the merchant's webhook URL, so that the move's
/// webhook needs no lookup of its own.
pub(super) const MOVED_COLUMNS: &str =
    "(SELECT m.notify_url FROM merchants m WHERE m.id = orders.merchant_id) AS merchant_notify_url";

/// An order as a conditional move left it, read by the move itself.
pub(super) struct Moved {
    /// The order's row after the move.
    pub order: OrderRow,
    /// Its merchant's webhook URL, used when the order has none.
    pub merchant_url: Option<String>,
}

impl Moved {
    /// From a row of `RETURNING {ORDER_COLUMNS}, {MOVED_COLUMNS}`.
    pub(super) fn from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<Self> {
        use sqlx::{FromRow, Row};
        Ok(Self {
            order: OrderRow::from_row(row)?,
            merchant_url: row.try_get("merchant_notify_url")?,
        })
    }
}

/// The `status` entry of the audit log.
async fn insert_status(
    tx: &mut Tx<'_>,
    order_id: &str,
    from: OrderStatus,
    to: OrderStatus,
    detail: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_events (order_id, kind, from_status, to_status, detail, created_at) \
         VALUES ($1, 'status', $2, $3, $4, $5)",
    )
    .bind(order_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
