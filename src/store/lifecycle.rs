//! The order's lifecycle moves: every status change is one conditional
//! update whose status event (and webhook, see `status.rs`) is written in
//! the same transaction, so two workers never both move one order.

use super::authorizations::NEXT_ATTEMPT;
use super::group::Tx;
use super::orders::{OrderRow, Transition, ORDER_COLUMNS};
use super::status::{Moved, MOVED_COLUMNS};
use super::{now_ms, status_column, Result, Store, StoreError};
use crate::domain::{OrderStatus, ResultCode};

impl Store {
    /// Moves the order if, and only if, it is still in `t.from`; appends the
    /// event (and queues its webhook) in the same transaction, at `now` (Unix
    /// ms). A move to a final status records `t.result` and clears the call
    /// code. Returns whether this caller moved it (false: the order was no
    /// longer in `t.from`).
    ///
    /// Never into `authorizing`: that move is
    /// [`Store::start_authorization`]'s alone (the matcher's).
    ///
    /// # Errors
    /// [`StoreError::IllegalTransition`] when `t.from → t.to` is not an edge
    /// of the lifecycle, or is the move into `authorizing` (a bug; nothing
    /// is written); [`StoreError::Db`] on a database error.
    pub async fn transition(&self, order_id: &str, t: Transition<'_>, now: i64) -> Result<bool> {
        if !t.from.can_become(t.to) || t.to == OrderStatus::Authorizing {
            return Err(StoreError::IllegalTransition {
                from: t.from,
                to: t.to,
            });
        }
        let detail = match (t.result, t.detail) {
            (Some(r), Some(d)) => Some(format!("{}: {d}", r.code())),
            (Some(r), None) => Some(r.code().to_owned()),
            (None, d) => d.map(str::to_owned),
        };
        let (from, to, result) = (t.from, t.to, t.result);
        let (store, id) = (self.clone(), order_id.to_owned());
        self.write_tx(move |tx| {
            let (store, id, detail) = (store.clone(), id.clone(), detail.clone());
            Box::pin(async move {
                store
                    .transition_in(tx, &id, (from, to, result), (detail.as_deref(), None), now)
                    .await
            })
        })
        .await
    }

    /// [`Store::transition`], made only while `node` holds the order's
    /// claim (`orders.claimed_by`): a node settling its own call late (the
    /// database was away when the call ended) never moves an order another
    /// node has taken over since. Returns whether the order moved.
    ///
    /// # Errors
    /// As [`Store::transition`].
    pub async fn transition_claimed(
        &self,
        order_id: &str,
        node: &str,
        t: Transition<'_>,
        now: i64,
    ) -> Result<bool> {
        if !t.from.can_become(t.to) || t.to == OrderStatus::Authorizing {
            return Err(StoreError::IllegalTransition {
                from: t.from,
                to: t.to,
            });
        }
        let detail = t.result.map(|r| r.code().to_owned());
        let (from, to, result) = (t.from, t.to, t.result);
        let (store, id, node) = (self.clone(), order_id.to_owned(), node.to_owned());
        self.write_tx(move |tx| {
            let (store, id, detail, node) =
                (store.clone(), id.clone(), detail.clone(), node.clone());
            Box::pin(async move {
                let only = (detail.as_deref(), Some(node.as_str()));
                store
                    .transition_in(tx, &id, (from, to, result), only, now)
                    .await
            })
        })
        .await
    }

    /// [`Store::transition`]'s statements in `tx`: the conditional update
    /// (on the status, and on the claim's holder when `claimed_by` is
    /// given) and, when it moved the order, its event and webhook.
    async fn transition_in(
        &self,
        tx: &mut Tx,
        order_id: &str,
        (from, to, result): (OrderStatus, OrderStatus, Option<ResultCode>),
        (detail, claimed_by): (Option<&str>, Option<&str>),
        now: i64,
    ) -> Result<bool> {
        let moved = sqlx::query(&format!(
            "UPDATE orders SET status = $1, updated_at = $2, \
                result_code = COALESCE($3, result_code), resp_code = COALESCE($4, resp_code), \
                result_message = COALESCE($5, result_message), \
                call_code = CASE WHEN $6 = 1 THEN NULL ELSE call_code END \
             WHERE id = $7 AND status = $8 AND ($9 IS NULL OR claimed_by = $9) \
             RETURNING {ORDER_COLUMNS}, {MOVED_COLUMNS}"
        ))
        .bind(to.as_str())
        .bind(now)
        .bind(result.map(|r| r.code()))
        .bind(result.and_then(|r| r.resp_code()))
        .bind(result.map(|r| r.message()))
        .bind(i64::from(to.is_final()))
        .bind(order_id)
        .bind(from.as_str())
        .bind(claimed_by)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = moved else {
            return Ok(false);
        };
        let moved = Moved::from_row(&row)?;
        self.record_status_of(tx, &moved, from, to, detail, now)
            .await?;
        Ok(true)
    }

    /// Moves the order `in_call` → `authorizing` if, and only if, it is
    /// still `in_call` and inside its window at `now` (Unix ms), with its
    /// status event (and progress webhook) in the same transaction: the one
    /// conditional `UPDATE … RETURNING` that lets a verification reach the
    /// issuer (the matcher's). `detail` goes to the audit log (never a
    /// secret). Returns the order as moved, or `None` when it was not
    /// `in_call` or its window had passed.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error, or a typed column holding an
    /// unknown name.
    pub async fn start_authorization(
        &self,
        order_id: &str,
        detail: &str,
        now: i64,
    ) -> Result<Option<OrderRow>> {
        Ok(self
            .start_authorization_attempt(order_id, detail, now, |_| None)
            .await?
            .map(|(order, _)| order))
    }

    /// [`Store::start_authorization`], with the number of the attempt it
    /// starts (as [`Store::authorization_attempts`] counts it, read in the
    /// same transaction): the idempotency key's `n`. `note(n)`, when it
    /// gives one, is written in the same transaction as a `bank` entry of
    /// the audit log (e.g. "authorize attempt 2"; never a secret), so the
    /// move and its note are one write.
    ///
    /// # Errors
    /// As [`Store::start_authorization`].
    pub async fn start_authorization_attempt<N>(
        &self,
        order_id: &str,
        detail: &str,
        now: i64,
        note: N,
    ) -> Result<Option<(OrderRow, i64)>>
    where
        N: Fn(i64) -> Option<String> + Send + Sync + 'static,
    {
        let (store, id, detail) = (self.clone(), order_id.to_owned(), detail.to_owned());
        let note = std::sync::Arc::new(note);
        self.write_tx(move |tx| {
            let (store, id, detail, note) =
                (store.clone(), id.clone(), detail.clone(), note.clone());
            Box::pin(async move {
                let Some((order, attempt)) = store.start_in(tx, &id, &detail, now).await? else {
                    return Ok(None);
                };
                if let Some(note) = note(attempt) {
                    super::authorizations::insert_event(tx, &id, "bank", &note, now).await?;
                }
                Ok(Some((order, attempt)))
            })
        })
        .await
    }

    /// The move into `authorizing` in `tx`: one `UPDATE … RETURNING` that
    /// also reads the attempt number and the merchant's webhook URL, then
    /// its status event and webhook.
    async fn start_in(
        &self,
        tx: &mut Tx,
        order_id: &str,
        detail: &str,
        now: i64,
    ) -> Result<Option<(OrderRow, i64)>> {
        let moved = sqlx::query(&format!(
            "UPDATE orders SET status = 'authorizing', updated_at = $1 \
             WHERE id = $2 AND status = 'in_call' AND expires_at > $1 \
             RETURNING {ORDER_COLUMNS}, {MOVED_COLUMNS}, {NEXT_ATTEMPT}"
        ))
        .bind(now)
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = moved else {
            return Ok(None);
        };
        let attempt: i64 = sqlx::Row::try_get(&row, "next_attempt")?;
        let moved = Moved::from_row(&row)?;
        let (from, to) = (OrderStatus::InCall, OrderStatus::Authorizing);
        self.record_status_of(tx, &moved, from, to, Some(detail), now)
            .await?;
        Ok(Some((moved.order, attempt)))
    }

    /// The cardholder answered the callback on `channel_id` at `now` (Unix
    /// ms): the call attempt is marked answered (the first answer kept), the
    /// order moves `calling` → `in_call` (with its event and webhook) and
    /// is returned as moved, all in one write: one transaction (and, on
    /// SQLite, one member of the group commit) instead of three statements
    /// before the channel is answered. `None` when the order was no longer
    /// `calling` (cancelled or expired while ringing); the attempt is
    /// marked answered all the same.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error (nothing is written), or a
    /// typed column holding an unknown name.
    pub async fn answer_callback(
        &self,
        order_id: &str,
        channel_id: &str,
        now: i64,
    ) -> Result<Option<OrderRow>> {
        let (store, id, channel) = (self.clone(), order_id.to_owned(), channel_id.to_owned());
        self.write_tx(move |tx| {
            let (store, id, channel) = (store.clone(), id.clone(), channel.clone());
            Box::pin(async move {
                sqlx::query(
                    "UPDATE call_attempts SET answered_at = $1 \
                     WHERE channel_id = $2 AND answered_at IS NULL",
                )
                .bind(now)
                .bind(&channel)
                .execute(&mut **tx)
                .await?;
                let moved = sqlx::query(&format!(
                    "UPDATE orders SET status = 'in_call', updated_at = $1 \
                     WHERE id = $2 AND status = 'calling' \
                     RETURNING {ORDER_COLUMNS}, {MOVED_COLUMNS}"
                ))
                .bind(now)
                .bind(&id)
                .fetch_optional(&mut **tx)
                .await?;
                let Some(row) = moved else {
                    return Ok(None);
                };
                let moved = Moved::from_row(&row)?;
                let (from, to) = (OrderStatus::Calling, OrderStatus::InCall);
                store
                    .record_status_of(tx, &moved, from, to, Some("answered"), now)
                    .await?;
                let order = moved.order;
                Ok(Some(order))
            })
        })
        .await
    }

    /// Up to `limit` orders whose window ended at or before `now` (Unix ms)
    /// and that nobody has sent to the bank yet (`pending`, `calling`,
    /// `in_call`), earliest deadline first, as (id, status).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn due_for_expiry(&self, now: i64, limit: i64) -> Result<Vec<(String, OrderStatus)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, status FROM orders WHERE status IN ('pending', 'calling', 'in_call') \
             AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(id, s)| Ok((id, status_column(s)?)))
            .collect()
    }

    /// Cancels or expires an order whatever pre-authorization status it is
    /// in, retrying when a worker moved it meanwhile. `to` is `cancelled` or
    /// `expired`, `result` the code recorded with it. Returns the row in
    /// `to` (also when it already was), or `None` when the order does not
    /// exist, is past the point where it can be stopped, or kept moving
    /// through five tries.
    ///
    /// # Errors
    /// [`StoreError::IllegalTransition`] when `to` is not a status a
    /// pre-authorization order can move to; [`StoreError::Db`] on a database
    /// error, or a typed column holding an unknown name.
    pub async fn stop_order(
        &self,
        order_id: &str,
        to: OrderStatus,
        result: ResultCode,
    ) -> Result<Option<OrderRow>> {
        for _ in 0..5 {
            let Some(row) = self.order(order_id).await? else {
                return Ok(None);
            };
            let from = row.status();
            if from == to {
                return Ok(Some(row));
            }
            if !from.before_authorization() {
                return Ok(None);
            }
            let t = Transition {
                from,
                to,
                result: Some(result),
                detail: None,
            };
            if self.transition(order_id, t, now_ms()).await? {
                return self.order(order_id).await;
            }
        }
        Ok(None)
    }
}
