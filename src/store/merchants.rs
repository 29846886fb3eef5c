use super::{conflict_aware, Result, Store};
use crate::domain::AcceptorId;
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
    /// Set by `voicepay merchant disable`: the API refuses the merchant
    /// (403 `merchant_disabled`).
    pub disabled: bool,
    /// Its card acceptor id (ISO 8583 F42), when the operator set one.
    pub acceptor_id: Option<String>,
}

/// One merchant as `voicepay merchant list` shows it: no key, no secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MerchantSummary {
    /// voicepay's id (`mch_…`).
    pub merchant_id: String,
    /// Display name.
    pub name: String,
    /// The default webhook URL.
    pub notify_url: Option<String>,
    /// The card acceptor id (ISO 8583 F42).
    pub acceptor_id: Option<String>,
    /// Whether `voicepay merchant disable` holds.
    pub disabled: bool,
    /// Unix ms.
    pub created_at: i64,
}

/// A merchant's webhook signing secrets, sealed (`Vault`, column
/// `webhook_secret`): the current one, and the one a rotation replaced
/// while its overlap lasts.
#[derive(Debug, Clone)]
pub struct WebhookSecrets {
    /// The secret that signs every webhook, sealed.
    pub current_enc: String,
    /// The replaced secret and the end of its overlap (Unix ms).
    pub previous: Option<(String, i64)>,
}

/// What a key-lifecycle command changed: false when no merchant has the id.
pub type Found = bool;

impl Store {
    /// Creates a merchant: `api_key_hash` is the SHA-256 (hex) of its API
    /// key, `webhook_secret_enc` its sealed webhook secret, `now` Unix
    /// milliseconds; `acceptor_id` its card acceptor id (ISO 8583 F42),
    /// validated by the caller.
    ///
    /// # Errors
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when the id or
    /// the API key hash is taken; [`StoreError::Db`](super::StoreError::Db)
    /// on a database error.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_merchant(
        &self,
        id: &str,
        name: &str,
        api_key_hash: &str,
        webhook_secret_enc: &str,
        notify_url: Option<&str>,
        acceptor_id: Option<&AcceptorId>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO merchants (id, name, api_key_hash, webhook_secret_enc, notify_url, \
                acceptor_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(name)
        .bind(api_key_hash)
        .bind(webhook_secret_enc)
        .bind(notify_url)
        .bind(acceptor_id.map(AcceptorId::as_str))
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

    /// The merchant whose API key hashes to `hash` (SHA-256, hex) at `now`
    /// (Unix ms): its current key unless revoked, or the key a rotation
    /// replaced while its overlap lasts. A disabled merchant is returned
    /// with `disabled` set (the API refuses it with its own code).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn merchant_by_key_hash(&self, hash: &str, now: i64) -> Result<Option<MerchantRow>> {
        let row = sqlx::query(
            "SELECT id, name, notify_url, webhook_secret_enc, disabled_at, acceptor_id FROM merchants \
             WHERE (api_key_hash = $1 AND key_revoked_at IS NULL) \
                OR (prev_api_key_hash = $1 AND prev_api_key_until > $2)",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(MerchantRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                notify_url: super::opt(&r, "notify_url")?,
                webhook_secret_enc: r.try_get("webhook_secret_enc")?,
                disabled: super::opt::<i64>(&r, "disabled_at")?.is_some(),
                acceptor_id: super::opt(&r, "acceptor_id")?,
            })
        })
        .transpose()
    }

    /// Gives merchant `id` the API key hashing to `new_hash` and clears a
    /// revocation. The key it replaces keeps working until `old_until`
    /// (Unix ms) when that is given and the key was not revoked; otherwise
    /// it stops at once (as does any older key still in its overlap).
    ///
    /// # Errors
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when another
    /// merchant has this hash; [`StoreError::Db`](super::StoreError::Db) on
    /// a database error.
    pub async fn rotate_merchant_key(
        &self,
        id: &str,
        new_hash: &str,
        old_until: Option<i64>,
    ) -> Result<Found> {
        let done = sqlx::query(
            "UPDATE merchants SET \
                prev_api_key_hash = CASE WHEN $3 IS NULL OR key_revoked_at IS NOT NULL \
                    THEN NULL ELSE api_key_hash END, \
                prev_api_key_until = CASE WHEN $3 IS NULL OR key_revoked_at IS NOT NULL \
                    THEN NULL ELSE $3 END, \
                api_key_hash = $2, key_revoked_at = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .bind(new_hash)
        .bind(old_until)
        .execute(&self.write)
        .await
        .map_err(conflict_aware)?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes merchant `id`'s API keys at `now` (Unix ms): the key a
    /// rotation replaced (its overlap ends), and unless `previous_only` the
    /// current key too, until the next rotation.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn revoke_merchant_key(
        &self,
        id: &str,
        previous_only: bool,
        now: i64,
    ) -> Result<Found> {
        let q = if previous_only {
            sqlx::query(
                "UPDATE merchants SET prev_api_key_hash = NULL, prev_api_key_until = NULL \
                 WHERE id = $1",
            )
            .bind(id)
        } else {
            sqlx::query(
                "UPDATE merchants SET prev_api_key_hash = NULL, prev_api_key_until = NULL, \
                    key_revoked_at = COALESCE(key_revoked_at, $2) WHERE id = $1",
            )
            .bind(id)
            .bind(now)
        };
        let done = q.execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables merchant `id` at `now` (Unix ms), or with `now` None enables
    /// it again.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn set_merchant_disabled(&self, id: &str, now: Option<i64>) -> Result<Found> {
        let done = sqlx::query("UPDATE merchants SET disabled_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces merchant `id`'s webhook secret with `new_enc` (sealed); the
    /// secret it replaces still signs webhooks, beside the new one, until
    /// `old_until` (Unix ms).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        new_enc: &str,
        old_until: i64,
    ) -> Result<Found> {
        let done = sqlx::query(
            "UPDATE merchants SET prev_webhook_secret_enc = webhook_secret_enc, \
                prev_webhook_secret_until = $3, webhook_secret_enc = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(new_enc)
        .bind(old_until)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The merchant's webhook secrets (see [`WebhookSecrets`]); `None` for
    /// an unknown merchant.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn merchant_webhook_secrets(&self, id: &str) -> Result<Option<WebhookSecrets>> {
        let row = sqlx::query(
            "SELECT webhook_secret_enc, prev_webhook_secret_enc, prev_webhook_secret_until \
             FROM merchants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let prev: Option<String> = super::opt(&r, "prev_webhook_secret_enc")?;
            let until: Option<i64> = super::opt(&r, "prev_webhook_secret_until")?;
            Ok(WebhookSecrets {
                current_enc: r.try_get("webhook_secret_enc")?,
                previous: prev.zip(until),
            })
        })
        .transpose()
    }

    /// Sets (or with `None` clears) merchant `id`'s card acceptor id (ISO
    /// 8583 F42), used from the next purchase or refund on.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn set_merchant_acceptor_id(
        &self,
        id: &str,
        acceptor_id: Option<&AcceptorId>,
    ) -> Result<Found> {
        let done = sqlx::query("UPDATE merchants SET acceptor_id = $2 WHERE id = $1")
            .bind(id)
            .bind(acceptor_id.map(AcceptorId::as_str))
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Merchant `id`'s card acceptor id (ISO 8583 F42); `None` when it has
    /// none or does not exist.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn merchant_acceptor_id(&self, id: &str) -> Result<Option<String>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT acceptor_id FROM merchants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        Ok(v.flatten())
    }

    /// Every merchant, oldest first, for the operator.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn merchants(&self) -> Result<Vec<MerchantSummary>> {
        let rows = sqlx::query(
            "SELECT id, name, notify_url, acceptor_id, disabled_at, created_at FROM merchants \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MerchantSummary {
                    merchant_id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    notify_url: super::opt(r, "notify_url")?,
                    acceptor_id: super::opt(r, "acceptor_id")?,
                    disabled: super::opt::<i64>(r, "disabled_at")?.is_some(),
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
