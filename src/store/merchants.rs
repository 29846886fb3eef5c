use super::{conflict_aware, Result, Store};
use sqlx::Row;

/// A merchant as the API sees it after authentication.
#[derive(Debug, Clone)]
pub struct MerchantRow {
    pub id: String,
    pub name: String,
    pub notify_url: Option<String>,
    pub webhook_secret_enc: String,
}

impl Store {
    pub async fn insert_merchant(
        &self,
        id: &str,
        name: &str,
        api_key_hash: &str,
        webhook_secret_enc: &str,
        notify_url: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO merchants (id, name, api_key_hash, webhook_secret_enc, notify_url, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(name)
        .bind(api_key_hash)
        .bind(webhook_secret_enc)
        .bind(notify_url)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(conflict_aware)?;
        Ok(())
    }

    /// Creates merchant `id`, or, when it exists, gives it this API key
    /// hash (the rest is kept). For a merchant the daemon owns itself, such
    /// as the demo page's, whose key is derived at start-up.
    pub async fn upsert_merchant_key(
        &self,
        id: &str,
        name: &str,
        api_key_hash: &str,
        webhook_secret_enc: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO merchants (id, name, api_key_hash, webhook_secret_enc, notify_url, created_at) \
             VALUES ($1, $2, $3, $4, NULL, $5) \
             ON CONFLICT (id) DO UPDATE SET api_key_hash = excluded.api_key_hash",
        )
        .bind(id)
        .bind(name)
        .bind(api_key_hash)
        .bind(webhook_secret_enc)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(conflict_aware)?;
        Ok(())
    }

    /// The merchant whose API key hashes to `hash`, if any.
    pub async fn merchant_by_key_hash(&self, hash: &str) -> Result<Option<MerchantRow>> {
        let row = sqlx::query(
            "SELECT id, name, notify_url, webhook_secret_enc FROM merchants WHERE api_key_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(MerchantRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                notify_url: super::opt(&r, "notify_url")?,
                webhook_secret_enc: r.try_get("webhook_secret_enc")?,
            })
        })
        .transpose()
    }
}
