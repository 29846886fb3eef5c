//! STANs (ISO 8583 field 11) numbered by the database, per Asia/Shanghai day.

use super::{Result, Store, StoreError};
use crate::domain::Stan;

impl Store {
    /// The next STAN of `day` (the Asia/Shanghai calendar day of the
    /// request, `crate::bank::shanghai_day`): 000001 for the day's first,
    /// then one more each call, across every node sharing this database.
    /// One atomic upsert of the day's counter row (`stan_counters`): on
    /// PostgreSQL the row lock orders concurrent callers, on SQLite the
    /// single writer does, so no STAN is handed out twice in a day. After
    /// 999999 the day's numbering starts again at 000001 (a million
    /// requests in one day, beyond what one acquirer link carries).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error, or a counter row that
    /// holds no valid STAN.
    pub async fn next_stan(&self, day: time::Date) -> Result<Stan> {
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO stan_counters (day, last) VALUES ($1, 1) \
             ON CONFLICT (day) DO UPDATE SET last = stan_counters.last % 999999 + 1 \
             RETURNING last",
        )
        .bind(day.to_string())
        .fetch_one(&self.write)
        .await?;
        u32::try_from(n)
            .ok()
            .and_then(|n| Stan::new(n).ok())
            .ok_or_else(|| {
                StoreError::Db(sqlx::Error::ColumnDecode {
                    index: "last".into(),
                    source: "not a STAN".into(),
                })
            })
    }
}
