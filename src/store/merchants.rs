use super::{conflict_aware, Result, Store};
use sqlx::Row;

/// A merchant as the API sees it after authentication.
#[derive(Debug, Clone)]
pub struct MerchantRow {
    /// voicepay's id, e.g. `mch_` + 16 hex digits.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Where webhooks go for orders without a `notify_url` of their own.
    pub notify_url: Option<String>,
    /// The webhook signing secret, sealed (`Vault`, column `webhook_secret`).
    pub webhook_secret_enc: String,
}

impl Store {
    /// Creates a merchant: `api_key_hash` is the SHA-256 (hex) of its API
    /// key, `webhook_secret_enc` its sealed webhook secret, `now` Unix
    /// milliseconds.
    ///
    /// # Errors
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when the id or
    /// the API key hash is taken; [`StoreError::Db`](super::StoreError::Db)
    /// on a database error.
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
    /// as the demo page's, whose key is derived at start-up. `now` is Unix
    /// milliseconds.
    ///
    /// # Errors
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when another
    /// merchant has this API key hash; [`StoreError::Db`](super::StoreError::Db)
    /// on a database error.
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

    /// Makes merchant `id`'s API key unusable: its stored hash is replaced
    /// by `revoked:<id>`, which no SHA-256 (hex) of a key can equal. For a
    /// merchant the daemon owns itself (the demo page's, when the demo is
    /// off). Returns whether a usable key was revoked (false when the
    /// merchant does not exist or its key was revoked already).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn revoke_own_merchant_key(&self, id: &str) -> Result<bool> {
        let revoked = format!("revoked:{id}");
        let done = sqlx::query(
            "UPDATE merchants SET api_key_hash = $1 WHERE id = $2 AND api_key_hash <> $1",
        )
        .bind(&revoked)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The merchant whose API key hashes to `hash` (SHA-256, hex), if any.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
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
