//! Merchant on-boarding: credentials are generated here and shown once; only
//! a hash of the API key is kept, and the webhook secret is sealed.

use crate::crypto::{random_hex, random_token, sha256_hex, Vault};
use crate::domain::{AcceptorId, NotifyUrl};
use crate::store::{now_ms, Store};
use anyhow::Context;
use serde::Serialize;

/// What `voicepay merchant add` prints, once.
#[derive(Debug, Serialize)]
pub struct NewMerchant {
    pub merchant_id: String,
    pub api_key: String,
    pub webhook_secret: String,
}

/// Creates a merchant with no card acceptor id; see [`create_with`].
///
/// # Errors
/// As [`create_with`].
pub async fn create(
    store: &Store,
    vault: &Vault,
    name: &str,
    notify_url: Option<&str>,
) -> anyhow::Result<NewMerchant> {
    create_with(store, vault, name, notify_url, None).await
}

/// Creates a merchant (`voicepay merchant add`): `name` 1-100 characters,
/// an optional default webhook URL and an optional card acceptor id (ISO
/// 8583 F42, `--acceptor-id`: 1-15 printable ASCII characters, see
/// [`AcceptorId`]). Everything is checked before anything is stored.
///
/// # Errors
/// A bad name, URL or acceptor id (nothing stored), or a database error.
pub async fn create_with(
    store: &Store,
    vault: &Vault,
    name: &str,
    notify_url: Option<&str>,
    acceptor_id: Option<&str>,
) -> anyhow::Result<NewMerchant> {
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 100,
        "--name must be 1 to 100 characters"
    );
    if let Some(url) = notify_url {
        NotifyUrl::parse(url).map_err(|e| anyhow::anyhow!("--notify-url: {}", e.message))?;
    }
    let acceptor_id = acceptor_id.map(parse_acceptor_id).transpose()?;
    let creds = NewMerchant {
        merchant_id: format!("mch_{}", random_hex(8)),
        api_key: format!("vpk_{}", random_token(32)),
        webhook_secret: format!("whsec_{}", random_token(32)),
    };
    store
        .insert_merchant(
            &creds.merchant_id,
            name,
            &sha256_hex(creds.api_key.as_bytes()),
            &vault.seal("webhook_secret", creds.webhook_secret.as_bytes()),
            notify_url,
            acceptor_id.as_ref(),
            now_ms(),
        )
        .await
        .context("storing the merchant")?;
    Ok(creds)
}

/// What `voicepay merchant rotate-key` prints, once.
#[derive(Debug, Serialize)]
pub struct RotatedKey {
    pub merchant_id: String,
    pub api_key: String,
    /// Until when the replaced key still works (Unix ms); None: it stopped
    /// at once.
    pub old_key_valid_until_ms: Option<i64>,
}

/// What `voicepay merchant rotate-webhook-secret` prints, once.
#[derive(Debug, Serialize)]
pub struct RotatedSecret {
    pub merchant_id: String,
    pub webhook_secret: String,
    /// Until when webhooks also carry a signature with the replaced secret
    /// (Unix ms).
    pub old_secret_signs_until_ms: i64,
}

fn found(merchant_id: &str, found: bool) -> anyhow::Result<()> {
    anyhow::ensure!(found, "no merchant {merchant_id}");
    Ok(())
}

/// Gives the merchant a new API key, shown once (only its hash is kept).
/// The replaced key keeps working for `overlap_secs` seconds (0: it stops
/// at once); a revoked key never comes back.
///
/// # Errors
/// An unknown merchant, or a database error.
pub async fn rotate_key(
    store: &Store,
    merchant_id: &str,
    overlap_secs: u64,
) -> anyhow::Result<RotatedKey> {
    let api_key = format!("vpk_{}", random_token(32));
    let until = (overlap_secs > 0).then(|| now_ms() + overlap_secs as i64 * 1000);
    let done = store
        .rotate_merchant_key(merchant_id, &sha256_hex(api_key.as_bytes()), until)
        .await
        .context("storing the new key")?;
    found(merchant_id, done)?;
    Ok(RotatedKey {
        merchant_id: merchant_id.to_owned(),
        api_key,
        old_key_valid_until_ms: until,
    })
}

/// Makes the merchant's API key unusable now (and a replaced key still in
/// its overlap); with `previous_only`, only ends that overlap.
///
/// # Errors
/// An unknown merchant, or a database error.
pub async fn revoke_key(
    store: &Store,
    merchant_id: &str,
    previous_only: bool,
) -> anyhow::Result<()> {
    let done = store
        .revoke_merchant_key(merchant_id, previous_only, now_ms())
        .await
        .context("revoking the key")?;
    found(merchant_id, done)
}

/// Disables (or with `enabled`, enables again) the merchant: its API calls
/// are refused (403 `merchant_disabled`), no call is started for its
/// pending orders, and its webhooks are held; calls already under way end
/// as usual (README, "Key lifecycle").
///
/// # Errors
/// An unknown merchant, or a database error.
pub async fn set_enabled(store: &Store, merchant_id: &str, enabled: bool) -> anyhow::Result<()> {
    let at = (!enabled).then(now_ms);
    let done = store
        .set_merchant_disabled(merchant_id, at)
        .await
        .context("storing the merchant's state")?;
    found(merchant_id, done)
}

/// Gives the merchant a new webhook secret, shown once (stored sealed);
/// for `overlap_secs` seconds webhooks carry a second `v1=` signature with
/// the replaced secret.
///
/// # Errors
/// An unknown merchant, or a database error.
pub async fn rotate_webhook_secret(
    store: &Store,
    vault: &Vault,
    merchant_id: &str,
    overlap_secs: u64,
) -> anyhow::Result<RotatedSecret> {
    let webhook_secret = format!("whsec_{}", random_token(32));
    let until = now_ms() + overlap_secs as i64 * 1000;
    let done = store
        .rotate_webhook_secret(
            merchant_id,
            &vault.seal("webhook_secret", webhook_secret.as_bytes()),
            until,
        )
        .await
        .context("storing the new secret")?;
    found(merchant_id, done)?;
    Ok(RotatedSecret {
        merchant_id: merchant_id.to_owned(),
        webhook_secret,
        old_secret_signs_until_ms: until,
    })
}

fn parse_acceptor_id(s: &str) -> anyhow::Result<AcceptorId> {
    AcceptorId::parse(s).map_err(|e| anyhow::anyhow!("--acceptor-id: {}", e.message))
}

/// Sets the merchant's card acceptor id (ISO 8583 F42; `voicepay merchant
/// set-acceptor-id`), or with `None` clears it. It goes out with the
/// merchant's next purchase or refund.
///
/// # Errors
/// A bad acceptor id or an unknown merchant (nothing changed), or a
/// database error.
pub async fn set_acceptor_id(
    store: &Store,
    merchant_id: &str,
    acceptor_id: Option<&str>,
) -> anyhow::Result<()> {
    let acceptor_id = acceptor_id.map(parse_acceptor_id).transpose()?;
    let done = store
        .set_merchant_acceptor_id(merchant_id, acceptor_id.as_ref())
        .await
        .context("storing the acceptor id")?;
    found(merchant_id, done)
}
