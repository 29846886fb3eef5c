use super::{Result, Store};
use sqlx::Row;

/// The first response given for an idempotency key, replayed on a retry.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status_code: u16,
    pub body: String,
}

impl Store {
    /// The live (younger than `not_before`) entry for this merchant's key.
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

    /// Forgets keys older than `before`; returns how many.
    pub async fn purge_idempotency_keys(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}
