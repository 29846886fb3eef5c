//! Calls placed for orders: claiming callback work, the `call_attempts`
//! rows, and putting an order back in the queue for a retry.
//!
//! Claims are conditional updates (`… AND status = 'pending'`), so when
//! several nodes share one PostgreSQL exactly one of them moves an order to
//! `calling`; the loser sees zero rows and looks for the next one.

use super::orders::{OrderRow, ORDER_COLUMNS};
use super::{Result, Store};
use crate::domain::OrderStatus;

/// An order in `calling`, `in_call` or `authorizing` claimed by a node,
/// with the channel of its latest attempt (None if the attempt row was
/// never written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCall {
    /// The order's id.
    pub order_id: String,
    /// `calling`, `in_call` or `authorizing`.
    pub status: OrderStatus,
    /// Calls placed or taken so far (the latest attempt's number).
    pub attempts: i64,
    /// The Asterisk channel of the latest attempt.
    pub channel_id: Option<String>,
}

impl Store {
    /// Claims the oldest due callback order of an enabled merchant for
    /// `node`: `pending` →
    /// `calling`, one more attempt counted, the claim held until
    /// `claim_until`, and the `status` event appended, in one transaction.
    /// Returns the claimed order (its `attempts` is this attempt's number),
    /// or None when nothing is due. The call's `call_attempts` row is not
    /// written here but by the callback worker right after (before the
    /// originate), so an `order.calling` webhook's `data.attempts` does not
    /// list the call being placed yet (README, "Webhooks"). `now` and
    /// `claim_until` are Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// typed column of the order holding an unknown name.
    pub async fn claim_callback(
        &self,
        node: &str,
        now: i64,
        claim_until: i64,
    ) -> Result<Option<OrderRow>> {
        let mut tx = self.write.begin().await?;
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE orders SET status = 'calling', claimed_by = $1, claim_until = $2, \
                attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT id FROM orders WHERE status = 'pending' AND mode = 'callback' \
                    AND (next_attempt_at IS NULL OR next_attempt_at <= $3) AND expires_at > $3 \
                    AND merchant_id NOT IN (SELECT id FROM merchants WHERE disabled_at IS NOT NULL) \
                    ORDER BY created_at LIMIT 1) \
               AND status = 'pending' \
             RETURNING id",
        )
        .bind(node)
        .bind(claim_until)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            tx.rollback().await?;
            return Ok(None);
        };
        self.record_status(
            &mut tx,
            &id,
            OrderStatus::Pending,
            OrderStatus::Calling,
            Some("callback claimed"),
            now,
        )
        .await?;
        tx.commit().await?;
        self.order(&id).await
    }

    /// `calling` → `pending`, due again at `next_attempt_at`, the claim
    /// released, with `detail` in the audit log; `next_attempt_at` and `now`
    /// are Unix ms. False when the order is no longer `calling` (cancelled,
    /// expired meanwhile).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn retry_callback_later(
        &self,
        order_id: &str,
        next_attempt_at: i64,
        detail: &str,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE orders SET status = 'pending', next_attempt_at = $1, claimed_by = NULL, \
                claim_until = NULL, updated_at = $2 \
             WHERE id = $3 AND status = 'calling'",
        )
        .bind(next_attempt_at)
        .bind(now)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        self.record_status(
            &mut tx,
            order_id,
            OrderStatus::Calling,
            OrderStatus::Pending,
            Some(detail),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a call placed for an order (before the originate, so events
    /// that beat the HTTP response find it): attempt number `attempt` on
    /// `channel_id`, started at `now` (Unix ms).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn insert_attempt(
        &self,
        order_id: &str,
        attempt: i64,
        channel_id: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO call_attempts (order_id, attempt, channel_id, started_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(order_id)
        .bind(attempt)
        .bind(channel_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Whether `channel_id` is a call placed for (or claimed by) the order:
    /// one of its `call_attempts`.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn call_placed_for(&self, order_id: &str, channel_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM call_attempts WHERE order_id = $1 AND channel_id = $2",
        )
        .bind(order_id)
        .bind(channel_id)
        .fetch_one(&self.read)
        .await?;
        Ok(n > 0)
    }

    /// The order by id with [`Store::call_placed_for`] of `channel_id`, in
    /// one read (the matcher's first, on every verification); `None` when
    /// there is no such order.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// typed column holding an unknown name.
    pub async fn order_with_call(
        &self,
        order_id: &str,
        channel_id: &str,
    ) -> Result<Option<(super::OrderRow, bool)>> {
        let row = sqlx::query(&format!(
            "SELECT {}, (SELECT COUNT(*) FROM call_attempts a \
                WHERE a.order_id = orders.id AND a.channel_id = $2) AS placed \
             FROM orders WHERE id = $1",
            super::orders::ORDER_COLUMNS
        ))
        .bind(order_id)
        .bind(channel_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let placed: i64 = sqlx::Row::try_get(&row, "placed")?;
        Ok(Some((sqlx::FromRow::from_row(&row)?, placed > 0)))
    }

    /// The cardholder answered the call on `channel_id` at `now` (Unix ms);
    /// only the first answer is kept.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn attempt_answered(&self, channel_id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE call_attempts SET answered_at = $1 WHERE channel_id = $2 AND answered_at IS NULL",
        )
        .bind(now)
        .bind(channel_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The call on `channel_id` ended: `outcome` is `answered`, `no_answer`,
    /// `busy`, `failed` or `not_reached` (answered by a machine); `cause` a Q.850 cause or result code for people.
    /// `now` is Unix ms. Only the first end is kept.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn attempt_ended(
        &self,
        channel_id: &str,
        outcome: &str,
        cause: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let (channel, outcome, cause) = (
            channel_id.to_owned(),
            outcome.to_owned(),
            cause.map(str::to_owned),
        );
        // In the group commit: at the end of a burst of calls these would
        // otherwise take the one write connection one commit at a time.
        self.write_tx(move |tx| {
            let (channel, outcome, cause) = (channel.clone(), outcome.clone(), cause.clone());
            Box::pin(async move {
                sqlx::query(
                    "UPDATE call_attempts SET ended_at = $1, outcome = $2, cause = $3 \
                     WHERE channel_id = $4 AND ended_at IS NULL",
                )
                .bind(now)
                .bind(outcome)
                .bind(cause)
                .bind(channel)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// The call on `from` moved onto channel `to` (a masquerade: an
    /// attended transfer into the app): its open attempt row of
    /// `order_id` names `to` from now on, so that the matcher's check that
    /// the call belongs to the order, the hang-up and the end of the
    /// attempt all find it, and the order's audit log says where it came
    /// from. `now` is Unix ms. Returns false, changing nothing, when no
    /// open attempt of the order is on `from` (already moved).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn attempt_moved(
        &self,
        order_id: &str,
        from: &str,
        to: &str,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let moved = sqlx::query(
            "UPDATE call_attempts SET channel_id = $1 \
             WHERE order_id = $2 AND channel_id = $3 AND ended_at IS NULL",
        )
        .bind(to)
        .bind(order_id)
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO order_events (order_id, kind, from_status, to_status, detail, created_at) \
             VALUES ($1, 'call', NULL, NULL, $2, $3)",
        )
        .bind(order_id)
        .bind(format!("call moved from channel {from} to {to} (transfer)"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// A claim whose node let it run out, found by [`Store::stale_claims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleClaim {
    /// The order and its latest channel.
    pub call: ActiveCall,
    /// The node that held it.
    pub node: String,
    /// Unix ms when the claim ran out; compared again on take-over.
    pub claim_until: i64,
}

impl Store {
    /// The `pending` transfer order whose one-time code is `code`, if it is
    /// still in its window. Used codes are gone: the code is cleared when
    /// the order ends, and an order in a call is no longer `pending`. `now`
    /// is Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// typed column of the order holding an unknown name.
    pub async fn pending_transfer_order(&self, code: &str, now: i64) -> Result<Option<OrderRow>> {
        Ok(sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE call_code = $1 AND mode = 'transfer' \
             AND status = 'pending' AND expires_at > $2"
        ))
        .bind(code)
        .bind(now)
        .fetch_optional(&self.read)
        .await?)
    }

    /// The `pending` inbound orders (bound-payment ones included) for a
    /// phone number (11 digits), of every enabled merchant, still in their window at
    /// `now` (Unix ms), oldest first.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// typed column of the order holding an unknown name.
    pub async fn pending_inbound_orders(&self, phone: &str, now: i64) -> Result<Vec<OrderRow>> {
        Ok(sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE phone = $1 AND mode = 'inbound' \
             AND status = 'pending' AND expires_at > $2 \
             AND merchant_id NOT IN (SELECT id FROM merchants WHERE disabled_at IS NOT NULL) \
             ORDER BY created_at, id"
        ))
        .bind(phone)
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    /// Claims a `pending` order for a call that came to us (transfer,
    /// inbound) on `channel_id`: `pending` → `in_call`, one more attempt,
    /// held by `node` until `claim_until`, with the `status` event and an
    /// answered attempt row, in one transaction. None when the order left
    /// `pending` or its window meanwhile (another call took it first), or
    /// its merchant is disabled.
    /// `now` and `claim_until` are Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// typed column of the order holding an unknown name.
    pub async fn claim_live_call(
        &self,
        order_id: &str,
        node: &str,
        channel_id: &str,
        detail: &str,
        now: i64,
        claim_until: i64,
    ) -> Result<Option<OrderRow>> {
        let mut tx = self.write.begin().await?;
        let attempt: Option<i64> = sqlx::query_scalar(
            "UPDATE orders SET status = 'in_call', claimed_by = $1, claim_until = $2, \
                attempts = attempts + 1, updated_at = $3 \
             WHERE id = $4 AND status = 'pending' AND expires_at > $3 \
               AND merchant_id NOT IN (SELECT id FROM merchants WHERE disabled_at IS NOT NULL) \
             RETURNING attempts",
        )
        .bind(node)
        .bind(claim_until)
        .bind(now)
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(attempt) = attempt else {
            tx.rollback().await?;
            return Ok(None);
        };
        // The attempt first: the `order.answered` payload written with the
        // status change shows the order with this call in `attempts`.
        sqlx::query(
            "INSERT INTO call_attempts (order_id, attempt, channel_id, started_at, answered_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(order_id)
        .bind(attempt)
        .bind(channel_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.record_status(
            &mut tx,
            order_id,
            OrderStatus::Pending,
            OrderStatus::InCall,
            Some(detail),
            now,
        )
        .await?;
        tx.commit().await?;
        self.order(order_id).await
    }
}
