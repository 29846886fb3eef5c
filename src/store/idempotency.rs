use super::{Result, Store};
use sqlx::Row;

/// The first response given for an idempotency key, replayed on a retry.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// SHA-256 (hex) of the first request's body: a retry with another body
    /// reuses the key wrongly.
    pub request_hash: String,
    /// The HTTP status of the first response (201 for a created order).
    pub status_code: u16,
    /// The first response's JSON body, exactly as sent.
    pub body: String,
}

impl Store {
    /// The live entry for this merchant's key: created at or after
    /// `not_before` (Unix milliseconds); `None` when there is none. A stored
    /// status outside `u16` reads as 500.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn idempotent_response(
        &self,
        merchant_id: &str,
        key: &str,
        not_before: i64,
    ) -> Result<Option<StoredResponse>> {
        let row = sqlx::query(
            "SELECT request_hash, status_code, response_body FROM idempotency_keys \
             WHERE merchant_id = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(merchant_id)
        .bind(key)
        .bind(not_before)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| {
            Ok(StoredResponse {
                request_hash: r.try_get("request_hash")?,
                status_code: u16::try_from(r.try_get::<i64, _>("status_code")?).unwrap_or(500),
                body: r.try_get("response_body")?,
            })
        })
        .transpose()
    }

    /// Forgets keys created before `before` (Unix milliseconds); returns how
    /// many.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn purge_idempotency_keys(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}
