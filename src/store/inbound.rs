//! What the inbound flow keeps besides the orders: the day's count of wrong
//! order codes per caller ID (`inbound.wrong_codes_per_day`), and the order
//! a keyed code names for a caller ID that is no mobile. The caller is its
//! normalised phone number (or what stands for a number-less caller, see
//! `calls::inbound`); a keyed code is never stored.

use super::authorizations::DayCount;
use super::orders::{OrderRow, ORDER_COLUMNS};
use super::{Result, Store};

impl Store {
    /// Wrong order codes keyed from `caller` (a normalised phone number) on
    /// `day` (`YYYY-MM-DD`, Asia/Shanghai); 0 when none.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn order_code_tries(&self, caller: &str, day: &str) -> Result<i64> {
        self.day_count(DayCount::OrderCode, caller, day).await
    }

    /// Counts one wrong order code keyed from `caller` on `day` and returns
    /// the day's count, this one included. One upsert, so concurrent calls
    /// from the same caller ID never lose an increment. `now` is Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn record_wrong_order_code(&self, caller: &str, day: &str, now: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO order_code_tries (caller, day, count, updated_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (caller, day) DO UPDATE SET \
                count = order_code_tries.count + 1, updated_at = $3 \
             RETURNING count",
        )
        .bind(caller)
        .bind(day)
        .bind(now)
        .fetch_one(&self.write)
        .await?)
    }

    /// The `pending` inbound order (bound payments included) whose order
    /// code is `code`, of an enabled merchant, still in its window at
    /// `now` (Unix ms): how a caller whose caller ID names no mobile
    /// (withheld, a landline) finds their order. Codes are unique among
    /// live orders (the `call_code` column) and cleared when an order ends.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error, or a
    /// typed column of the order holding an unknown name.
    pub async fn pending_inbound_order_by_code(
        &self,
        code: &str,
        now: i64,
    ) -> Result<Option<OrderRow>> {
        Ok(sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE call_code = $1 AND mode = 'inbound' \
             AND status = 'pending' AND expires_at > $2 \
             AND merchant_id NOT IN (SELECT id FROM merchants WHERE disabled_at IS NOT NULL)"
        ))
        .bind(code)
        .bind(now)
        .fetch_optional(&self.read)
        .await?)
    }
}
