use super::{ApiError, AppState};
use crate::crypto::sha256_hex;
use crate::store::MerchantRow;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};

/// How long a running daemon trusts a key it has looked up: the bound on
/// how late `voicepay merchant revoke-key | rotate-key | disable`, run
/// against the database from another process, takes effect on it.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The merchant that the request's `Authorization: Bearer <api key>` names.
/// Handlers that take it can only ever touch that merchant's data. A
/// revoked key, or a replaced one past its overlap, is 401 `unauthorized`;
/// a disabled merchant's key is 403 `merchant_disabled`.
#[derive(Debug, Clone)]
pub struct Merchant(pub MerchantRow);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        let hash = sha256_hex(key.as_bytes());
        let merchant = match state.merchant_cache.get(&hash) {
            Some(m) => m,
            None => {
                let m = state
                    .store
                    .merchant_by_key_hash(&hash, crate::store::now_ms())
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                state.merchant_cache.put(hash, m.clone());
                m
            }
        };
        if merchant.disabled {
            return Err(ApiError::MerchantDisabled);
        }
        Ok(Merchant(merchant))
    }
}

/// Remembers recent key → merchant lookups for a short while so that every
/// request does not cost a database read. Bounded; entries live `ttl`.
pub struct MerchantCache {
    ttl: std::time::Duration,
    map: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, MerchantRow)>>,
}

impl MerchantCache {
    const MAX: usize = 10_000;

    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl,
            map: Default::default(),
        }
    }

    fn get(&self, hash: &str) -> Option<MerchantRow> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, m)| m.clone())
    }

    fn put(&self, hash: String, m: MerchantRow) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if map.len() >= Self::MAX {
                map.clear();
            }
        }
        map.insert(hash, (std::time::Instant::now(), m));
    }
}
