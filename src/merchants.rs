//! Merchant on-boarding: credentials are generated here and shown once; only
//! a hash of the API key is kept, and the webhook secret is sealed.

use crate::crypto::{random_hex, random_token, sha256_hex, Vault};
use crate::domain::NotifyUrl;
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

pub async fn create(
    store: &Store,
    vault: &Vault,
    name: &str,
    notify_url: Option<&str>,
) -> anyhow::Result<NewMerchant> {
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 100,
        "--name must be 1 to 100 characters"
    );
    if let Some(url) = notify_url {
        NotifyUrl::parse(url).map_err(|e| anyhow::anyhow!("--notify-url: {}", e.message))?;
    }
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
            now_ms(),
        )
        .await
        .context("storing the merchant")?;
    Ok(creds)
}
