//! Refunds of succeeded orders: created against the order's balance in one
//! transaction, sent by the acquirer link, settled with the issuer's
//! answer. The order itself stays `succeeded`; what was given back is the
//! sum of its succeeded refunds.
//!
//! Balance rule: a new refund must fit in the order's amount minus every
//! refund that is `pending`, `unknown` or `succeeded` (money that has left,
//! or may have). A `failed` refund gives its amount back.

use super::{Backend, Result, Store, StoreError};
use crate::domain::{Invalid, Stan};

/// The webhook event type of a succeeded refund.
pub const REFUNDED: &str = "order.refunded";

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// Recorded, not yet answered by the issuer.
    Pending,
    /// The issuer approved it: the money went back to the card.
    Succeeded,
    /// The issuer declined it; its amount is free again.
    Failed,
    /// No answer came (timeout, dropped link): resolved like a purchase
    /// with an unknown outcome (reversed), then settled.
    Unknown,
}

impl RefundStatus {
    /// The stored and shown name: `pending`, `succeeded`, `failed` or
    /// `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    /// Whether it may still move: `pending` or `unknown`.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Unknown)
    }
}

/// Reading a stored column: anything but the four names is a corrupt row.
impl TryFrom<String> for RefundStatus {
    type Error = Invalid;

    fn try_from(s: String) -> std::result::Result<Self, Invalid> {
        [Self::Pending, Self::Succeeded, Self::Failed, Self::Unknown]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Invalid::new("invalid_status", "not a refund status"))
    }
}

/// One row of `refunds`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    /// voicepay's id, `rfd_` + 24 hex digits.
    pub id: String,
    /// The refunded order.
    pub order_id: String,
    /// In fen (0.01 CNY), at least 1.
    pub amount: i64,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: RefundStatus,
    /// The STAN (F11) of the refund request, six digits; `None` until sent.
    pub stan: Option<String>,
    /// Its F7 (`MMDDhhmmss`, UTC); `None` until sent.
    pub transmitted_at: Option<String>,
    /// The issuer's retrieval reference number (F37).
    pub rrn: Option<String>,
    /// The issuer's approval code (F38).
    pub approval_code: Option<String>,
    /// The issuer's response code (F39).
    pub resp_code: Option<String>,
    /// The merchant's `Idempotency-Key`, unique per order.
    pub idempotency_key: Option<String>,
    /// Unix ms: created.
    pub created_at: i64,
    /// Unix ms: settled as succeeded or failed; `None` while open.
    pub decided_at: Option<i64>,
}

/// What [`Store::create_refund`] did.
#[derive(Debug, Clone)]
pub enum RefundCreated {
    /// A new refund, `pending`, its amount reserved.
    New(RefundRow),
    /// The idempotency key was used for this order already: that refund,
    /// as it stands (the caller compares its amount with the request's).
    Existing(RefundRow),
}

/// Why a refund could not be created; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// No such order.
    #[error("no such order")]
    OrderNotFound,
    /// The order is not `succeeded` (the API's 409 `not_refundable`).
    #[error("the order did not succeed")]
    NotRefundable,
    /// The amount is more than what is left to refund (the API's 409
    /// `refund_exceeds_balance`).
    #[error("refund exceeds what is left ({left} fen)")]
    ExceedsBalance {
        /// What is left, in fen.
        left: i64,
    },
    /// The amount is not at least 1 fen.
    #[error("a refund amount is at least 1 fen")]
    InvalidAmount,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RefundError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

/// The issuer's answer to a refund, for [`Store::settle_refund`].
#[derive(Debug, Clone, Default)]
pub struct RefundAnswer<'a> {
    /// F37.
    pub rrn: Option<&'a str>,
    /// F38.
    pub approval_code: Option<&'a str>,
    /// F39.
    pub resp_code: Option<&'a str>,
}

pub(super) const REFUND_COLUMNS: &str = "id, order_id, amount, status, stan, transmitted_at, rrn, \
     approval_code, resp_code, idempotency_key, created_at, decided_at";

impl Store {
    /// Creates a `pending` refund of `amount` fen of order `order_id` at
    /// `now` (Unix ms), in ONE transaction that checks, under a lock on the
    /// order, that it is `succeeded` and that `amount` fits in what is left
    /// (see the module's balance rule): of two refunds racing for the last
    /// balance, exactly one is created. With `idempotency_key`, a refund
    /// already made with that key for this order is returned instead
    /// ([`RefundCreated::Existing`]).
    ///
    /// # Errors
    /// [`RefundError::OrderNotFound`], [`RefundError::NotRefundable`],
    /// [`RefundError::ExceedsBalance`], [`RefundError::InvalidAmount`]
    /// (nothing written); [`RefundError::Store`] on a database error.
    pub async fn create_refund(
        &self,
        order_id: &str,
        amount: i64,
        idempotency_key: Option<&str>,
        now: i64,
    ) -> Result<RefundCreated, RefundError> {
        if amount < 1 {
            return Err(RefundError::InvalidAmount);
        }
        let mut tx = self.write.begin().await?;
        // PostgreSQL: the row lock serialises refunds of one order, and the
        // sum below, a new statement, sees what the winner committed. SQLite
        // has one writer, which the transaction holds from its first write.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        if self.backend == Backend::Sqlite {
            // Take the write lock now, not at the insert, so that a read
            // here is never overtaken by another process's refund.
            sqlx::query("UPDATE orders SET updated_at = updated_at WHERE id = $1")
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
        }
        let order: Option<(String, i64)> = sqlx::query_as(&format!(
            "SELECT status, amount FROM orders WHERE id = $1{lock}"
        ))
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((status, total)) = order else {
            return Err(RefundError::OrderNotFound);
        };
        if let Some(key) = idempotency_key {
            let sql = format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 AND idempotency_key = $2"
            );
            let existing: Option<RefundRow> = sqlx::query_as(&sql)
                .bind(order_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                return Ok(RefundCreated::Existing(row));
            }
        }
        if status != "succeeded" {
            return Err(RefundError::NotRefundable);
        }
        let taken: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds \
             WHERE order_id = $1 AND status <> 'failed'",
        )
        .bind(order_id)
        .fetch_one(&mut *tx)
        .await?;
        if amount > total - taken {
            return Err(RefundError::ExceedsBalance {
                left: total - taken,
            });
        }
        let sql = format!(
            "INSERT INTO refunds (id, order_id, amount, status, idempotency_key, created_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING {REFUND_COLUMNS}"
        );
        let row: RefundRow = sqlx::query_as(&sql)
            .bind(format!("rfd_{}", crate::crypto::random_hex(12)))
            .bind(order_id)
            .bind(amount)
            .bind(idempotency_key)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(super::conflict_aware)?;
        tx.commit().await?;
        Ok(RefundCreated::New(row))
    }

    /// Records the STAN and F7 (`MMDDhhmmss`, UTC) of refund `id`'s request
    /// before it is sent, so that an unknown outcome can be reversed by
    /// naming it. Only once, and only while the refund is `pending`: false
    /// otherwise (nothing changed).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn refund_sent(&self, id: &str, stan: Stan, transmitted_at: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE refunds SET stan = $1, transmitted_at = $2 \
             WHERE id = $3 AND status = 'pending' AND stan IS NULL",
        )
        .bind(stan.to_string())
        .bind(transmitted_at)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves refund `id` to `to` with the issuer's `answer`, at `now` (Unix
    /// ms, kept as `decided_at` for `succeeded` and `failed`): from
    /// `pending` to any other status, from `unknown` to `succeeded` or
    /// `failed`. One conditional update, so exactly one settlement wins;
    /// returns the settled row, or `None` when the refund does not exist or
    /// is no longer in a status it may leave that way. A move to
    /// `succeeded` queues the merchant's `order.refunded` webhook event in
    /// the same transaction (one event per refund: only the winning move
    /// makes it).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn settle_refund(
        &self,
        id: &str,
        to: RefundStatus,
        answer: &RefundAnswer<'_>,
        now: i64,
    ) -> Result<Option<RefundRow>> {
        let from = match to {
            RefundStatus::Pending => return Ok(None),
            RefundStatus::Unknown => "('pending')",
            RefundStatus::Succeeded | RefundStatus::Failed => "('pending', 'unknown')",
        };
        let decided = (!to.is_open()).then_some(now);
        let sql = format!(
            "UPDATE refunds SET status = $1, rrn = COALESCE($2, rrn), \
                approval_code = COALESCE($3, approval_code), resp_code = COALESCE($4, resp_code), \
                decided_at = $5 \
             WHERE id = $6 AND status IN {from} RETURNING {REFUND_COLUMNS}"
        );
        let mut tx = self.write.begin().await?;
        let row: Option<RefundRow> = sqlx::query_as(&sql)
            .bind(to.as_str())
            .bind(answer.rrn)
            .bind(answer.approval_code)
            .bind(answer.resp_code)
            .bind(decided)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(r) = row.as_ref().filter(|r| r.status == RefundStatus::Succeeded) {
            self.enqueue_event(&mut tx, &r.order_id, REFUNDED, false, now)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Refund `id`, if it exists.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error or a corrupt row.
    pub async fn refund(&self, id: &str) -> Result<Option<RefundRow>> {
        let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.write)
            .await?)
    }

    /// Refunds still `pending` or `unknown` that were created at or before
    /// `created_before` (Unix ms), oldest first, at most `limit`: what
    /// refund recovery settles.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error or a corrupt row.
    pub async fn open_refunds(&self, created_before: i64, limit: i64) -> Result<Vec<RefundRow>> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE status IN ('pending', 'unknown') \
             AND created_at <= $1 ORDER BY created_at, id LIMIT $2"
        );
        Ok(sqlx::query_as(&sql)
            .bind(created_before)
            .bind(limit)
            .fetch_all(&self.write)
            .await?)
    }

    /// The order's refunds, oldest first (every status).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error or a corrupt row.
    pub async fn refunds_for(&self, order_id: &str) -> Result<Vec<RefundRow>> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 ORDER BY created_at, id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(order_id)
            .fetch_all(&self.write)
            .await?)
    }

    /// What has been given back on the order, in fen: the sum of its
    /// `succeeded` refunds (0 when none). Pending and unknown refunds are
    /// not counted here, though they do hold balance back.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn refunded_amount(&self, order_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds \
             WHERE order_id = $1 AND status = 'succeeded'",
        )
        .bind(order_id)
        .fetch_one(&self.write)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::RefundStatus;

    #[test]
    fn status_names_round_trip_and_others_are_refused() {
        for s in ["pending", "succeeded", "failed", "unknown"] {
            assert_eq!(RefundStatus::try_from(s.to_owned()).unwrap().as_str(), s);
        }
        assert!(RefundStatus::try_from("refunded".to_owned()).is_err());
    }
}
