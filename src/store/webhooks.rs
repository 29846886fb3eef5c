//! The webhook outbox, as the delivery worker (`crate::notify`) and the
//! merchant's event list use it. Rows are queued with status changes
//! (`status.rs`); the worker claims due rows with a lease
//! (`locked_by`/`locked_until`): a conditional update, so two nodes never
//! hold one row, and a crashed node's lease simply runs out.

use super::{Result, Store};
use crate::domain::{DeliveryErrorClass, DeliveryStatus};

/// One row of `webhook_outbox`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// The event id, `evt_` + 24 hex digits; also the deliveries'
    /// `Idempotency-Key`.
    pub id: String,
    /// The merchant the event is for.
    pub merchant_id: String,
    /// The order whose status change made it.
    pub order_id: String,
    /// E.g. `order.succeeded` (see [`event_type`]).
    pub event_type: String,
    /// The exact JSON body that is signed and sent.
    pub payload: String,
    /// Where it is POSTed: the order's URL, else the merchant's, as it was
    /// when the event was queued.
    pub notify_url: String,
    /// Where its delivery stands.
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    /// Delivery attempts made so far.
    pub attempts: i64,
    /// Unix ms: when a `pending` row is due for its next attempt.
    pub next_attempt_at: i64,
    /// Why the latest failed attempt failed, in detail: for operators
    /// only (the CLI, the log), never shown to merchants.
    pub last_error: Option<String>,
    /// The coarse class of that failure, the only part merchants see
    /// ([`DeliveryErrorClass::as_str`]); `None` before any failure.
    pub last_error_class: Option<String>,
    /// Unix ms: queued, with the status change.
    pub created_at: i64,
    /// Unix ms of the 2xx answer; `None` until delivered.
    pub delivered_at: Option<i64>,
    /// Unix ms, start of the retry window: creation, or the last redeliver.
    pub schedule_start: i64,
    /// `attempts` at `schedule_start`: the backoff counts the attempts
    /// since then, so a redeliver starts the schedule over.
    pub schedule_attempts_base: i64,
}

impl OutboxRow {
    /// The number of the next attempt within the current retry schedule
    /// (1 = the first since creation or since the last redeliver).
    pub fn schedule_attempt(&self) -> i64 {
        (self.attempts - self.schedule_attempts_base).max(0) + 1
    }
}

/// What [`Store::redeliver_webhook`] did.
#[derive(Debug, Clone)]
pub enum Redelivery {
    /// Due now, with a fresh window and schedule.
    Due(OutboxRow),
    /// No such event (of this merchant).
    NotFound,
    /// A node holds the event right now (it is being sent); try again when
    /// that attempt is over.
    InFlight(OutboxRow),
}

const OUTBOX_COLUMNS: &str = "id, merchant_id, order_id, event_type, payload, notify_url, status, \
     attempts, next_attempt_at, last_error, last_error_class, created_at, delivered_at, schedule_start, \
     schedule_attempts_base";

/// How one delivery attempt ended, as the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered,
    /// Try again at `next_attempt_at`; `error` says why this one failed.
    Retry {
        /// Unix ms when the next attempt is due.
        next_attempt_at: i64,
        /// Why this attempt failed, for operators (kept as `last_error`).
        error: String,
        /// Its class, for merchants (kept as `last_error_class`).
        class: DeliveryErrorClass,
    },
    /// The retry window is over: give up.
    Failed {
        /// Why the last attempt failed, for operators (kept as `last_error`).
        error: String,
        /// Its class, for merchants (kept as `last_error_class`).
        class: DeliveryErrorClass,
    },
}

/// Filter for [`Store::list_webhooks`].
#[derive(Debug, Clone, Default)]
pub struct WebhookFilter<'a> {
    /// Only this merchant's events (the API); `None` for every merchant (CLI).
    pub merchant_id: Option<&'a str>,
    /// `pending`, `delivered` or `failed`.
    pub status: Option<&'a str>,
    /// Events older than this event id (the previous page's last).
    pub before: Option<&'a str>,
    /// At most this many rows (a negative limit counts as 0).
    pub limit: i64,
}

impl Store {
    /// Leases up to `limit` due rows to `node` until `lease_until`, at most
    /// `per_merchant` of any one merchant and none of `skip` (merchants this
    /// node already sends as much as it may to) nor of a disabled merchant
    /// (held `pending` until it is enabled again), oldest due first. `now`
    /// and `lease_until` are Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn claim_webhooks(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        per_merchant: i64,
        limit: i64,
        skip: &[String],
    ) -> Result<Vec<OutboxRow>> {
        let not_in = if skip.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (0..skip.len()).map(|i| format!("${}", i + 6)).collect();
            format!("AND merchant_id NOT IN ({})", marks.join(", "))
        };
        // The outer conditions repeat the inner ones: under PostgreSQL's
        // READ COMMITTED a row another node leased meanwhile is re-checked
        // after its lock is released, and then skipped.
        let sql = format!(
            "UPDATE webhook_outbox SET locked_by = $1, locked_until = $2 \
             WHERE id IN (SELECT id FROM ( \
                    SELECT id, next_attempt_at, ROW_NUMBER() OVER \
                        (PARTITION BY merchant_id ORDER BY next_attempt_at, id) AS n \
                    FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= $3 \
                    AND (locked_until IS NULL OR locked_until <= $3) {not_in} \
                    AND merchant_id NOT IN (SELECT id FROM merchants WHERE disabled_at IS NOT NULL)) due \
                WHERE n <= $4 ORDER BY next_attempt_at LIMIT $5) \
               AND status = 'pending' AND (locked_until IS NULL OR locked_until <= $3) \
             RETURNING {OUTBOX_COLUMNS}"
        );
        let mut q = sqlx::query_as::<_, OutboxRow>(&sql)
            .bind(node)
            .bind(lease_until)
            .bind(now)
            .bind(per_merchant)
            .bind(limit);
        for m in skip {
            q = q.bind(m);
        }
        Ok(q.fetch_all(&self.write).await?)
    }

    /// Extends `node`'s lease on a row to `lease_until`, right before it is
    /// sent. False when the lease was lost meanwhile (it ran out and another
    /// node took the row, or the row is no longer pending): then the row
    /// must not be sent. `now` and `lease_until` are Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn renew_webhook_lease(
        &self,
        id: &str,
        node: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_outbox SET locked_until = $1 \
             WHERE id = $2 AND locked_by = $3 AND status = 'pending' AND locked_until > $4",
        )
        .bind(lease_until)
        .bind(id)
        .bind(node)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a leased row back untouched (this node cannot send it now);
    /// nothing happens when `node` no longer holds it.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn release_webhook(&self, id: &str, node: &str) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_outbox SET locked_by = NULL, locked_until = NULL \
             WHERE id = $1 AND locked_by = $2",
        )
        .bind(id)
        .bind(node)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records one attempt on a row `node` holds, and releases it. False
    /// when the lease was lost meanwhile (the row is left as it is). `now`
    /// (Unix ms) is the delivery time of a [`Delivery::Delivered`].
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn finish_webhook(
        &self,
        id: &str,
        node: &str,
        outcome: &Delivery,
        now: i64,
    ) -> Result<bool> {
        let (status, next, error, delivered) = match outcome {
            Delivery::Delivered => ("delivered", None, None, Some(now)),
            Delivery::Retry {
                next_attempt_at,
                error,
                class,
            } => (
                "pending",
                Some(*next_attempt_at),
                Some((error.as_str(), class.as_str())),
                None,
            ),
            Delivery::Failed { error, class } => {
                ("failed", None, Some((error.as_str(), class.as_str())), None)
            }
        };
        let done = sqlx::query(
            "UPDATE webhook_outbox SET status = $1, attempts = attempts + 1, \
                next_attempt_at = COALESCE($2, next_attempt_at), \
                last_error = COALESCE($3, last_error), \
                last_error_class = COALESCE($7, last_error_class), delivered_at = $4, \
                locked_by = NULL, locked_until = NULL \
             WHERE id = $5 AND locked_by = $6 AND status = 'pending'",
        )
        .bind(status)
        .bind(next)
        .bind(error.map(|e| e.0))
        .bind(delivered)
        .bind(id)
        .bind(node)
        .bind(error.map(|e| e.1))
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One event; with `merchant_id`, only if it is that merchant's.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn webhook(&self, id: &str, merchant_id: Option<&str>) -> Result<Option<OutboxRow>> {
        let row = sqlx::query_as::<_, OutboxRow>(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM webhook_outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.filter(|r| merchant_id.is_none() || merchant_id == Some(r.merchant_id.as_str())))
    }

    /// Events matching `f`, newest first (by creation time, then id).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn list_webhooks(&self, f: &WebhookFilter<'_>) -> Result<Vec<OutboxRow>> {
        let mut sql = format!("SELECT {OUTBOX_COLUMNS} FROM webhook_outbox WHERE 1 = 1");
        let mut binds: Vec<&str> = Vec::new();
        fn mark<'a>(binds: &mut Vec<&'a str>, v: &'a str) -> String {
            binds.push(v);
            format!("${}", binds.len())
        }
        if let Some(m) = f.merchant_id {
            sql += &format!(" AND merchant_id = {}", mark(&mut binds, m));
        }
        if let Some(s) = f.status {
            sql += &format!(" AND status = {}", mark(&mut binds, s));
        }
        if let Some(b) = f.before {
            let p = mark(&mut binds, b);
            sql += &format!(
                " AND (created_at, id) < (SELECT created_at, id FROM webhook_outbox WHERE id = {p})"
            );
        }
        sql += &format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            f.limit.max(0)
        );
        let mut q = sqlx::query_as::<_, OutboxRow>(&sql);
        for b in binds {
            q = q.bind(b);
        }
        Ok(q.fetch_all(&self.read).await?)
    }

    /// Makes an event due again now with a fresh retry window and a retry
    /// schedule that starts over (the attempts made so far stay counted).
    /// Refused while a node holds the event's lease (it is being sent): the
    /// outcome of that attempt would otherwise overwrite the redeliver, or
    /// the redeliver that attempt's outcome. With `merchant_id`, only that
    /// merchant's event is found. `now` is Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn redeliver_webhook(
        &self,
        id: &str,
        merchant_id: Option<&str>,
        now: i64,
    ) -> Result<Redelivery> {
        if self.webhook(id, merchant_id).await?.is_none() {
            return Ok(Redelivery::NotFound);
        }
        let done = sqlx::query(
            "UPDATE webhook_outbox SET status = 'pending', next_attempt_at = $1, \
                schedule_start = $1, schedule_attempts_base = attempts, delivered_at = NULL, \
                locked_by = NULL, locked_until = NULL \
             WHERE id = $2 AND NOT (status = 'pending' AND locked_until IS NOT NULL \
                AND locked_until > $1)",
        )
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await?;
        let row = self.webhook(id, merchant_id).await?;
        Ok(match row {
            None => Redelivery::NotFound,
            Some(r) if done.rows_affected() == 1 => Redelivery::Due(r),
            Some(r) => Redelivery::InFlight(r),
        })
    }
}
