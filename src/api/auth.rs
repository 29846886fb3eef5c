use super::{ApiError, AppState};
use crate::crypto::sha256_hex;
use crate::store::MerchantRow;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
                // A wrong key tried again costs no database read.
                let failed = &state.limits.failed_keys;
                if failed.remembers(&hash) {
                    return Err(ApiError::Unauthorized);
                }
                state.metrics.api_key_lookups.inc();
                let found = state
                    .store
                    .merchant_by_key_hash(&hash, crate::store::now_ms())
                    .await?;
                let Some(m) = found else {
                    failed.remember(hash);
                    return Err(ApiError::Unauthorized);
                };
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

/// Wrong API keys (by hash), answered 401 from memory so that a client
/// repeating one costs no database read after the first. A key is
/// remembered `limits.failed_key_initial_secs`; looked up again after that
/// and still wrong, twice as long, up to `limits.failed_key_max_secs`. At
/// most `limits.failed_key_cache_size` keys: past it the expired ones, then
/// the one that expires first, are forgotten.
pub struct FailedKeys {
    max: usize,
    initial: Duration,
    longest: Duration,
    map: Mutex<HashMap<String, Strike>>,
}

/// How long a wrong key is answered from memory, and from when.
#[derive(Clone, Copy)]
struct Strike {
    until: Instant,
    ttl: Duration,
}

impl FailedKeys {
    pub fn new(limits: &crate::config::LimitSettings) -> Self {
        Self {
            max: limits.failed_key_cache_size,
            initial: Duration::from_secs(limits.failed_key_initial_secs),
            longest: Duration::from_secs(limits.failed_key_max_secs),
            map: Mutex::default(),
        }
    }

    /// The key hash is known to be wrong right now.
    fn remembers(&self, hash: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash).is_some_and(|s| s.until > Instant::now())
    }

    /// The key hash was just looked up and is wrong.
    fn remember(&self, hash: String) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = match map.get(&hash) {
            Some(s) => (s.ttl * 2).min(self.longest),
            None => {
                if map.len() >= self.max {
                    // Expired strikes are kept (for the doubling) only while
                    // there is room.
                    map.retain(|_, s| s.until > now);
                }
                if map.len() >= self.max {
                    if let Some(first) = map
                        .iter()
                        .min_by_key(|(_, s)| s.until)
                        .map(|(k, _)| k.clone())
                    {
                        map.remove(&first);
                    }
                }
                self.initial
            }
        };
        map.insert(
            hash,
            Strike {
                until: now + ttl,
                ttl,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(max: usize) -> FailedKeys {
        FailedKeys::new(&crate::config::LimitSettings {
            failed_key_cache_size: max,
            ..Default::default()
        })
    }

    #[test]
    fn a_wrong_key_is_remembered_and_its_time_doubles_up_to_the_longest() {
        let k = keys(10);
        assert!(!k.remembers("a"));
        k.remember("a".into());
        assert!(k.remembers("a"));
        let ttl = |k: &FailedKeys| k.map.lock().unwrap()["a"].ttl.as_secs();
        assert_eq!(ttl(&k), 5);
        for want in [10, 20, 40, 80, 160, 300, 300] {
            k.remember("a".into());
            assert_eq!(ttl(&k), want);
        }
    }

    #[test]
    fn the_memory_is_bounded() {
        let k = keys(3);
        for i in 0..10 {
            k.remember(format!("k{i}"));
        }
        assert_eq!(k.map.lock().unwrap().len(), 3);
        assert!(k.remembers("k9"));
    }
}
