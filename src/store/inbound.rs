//! What the inbound flow keeps besides the orders: the day's count of wrong
//! order codes per caller ID (`inbound.wrong_codes_per_day`). The caller is
//! its normalised phone number; a keyed code is never stored.

use super::authorizations::DayCount;
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
}
