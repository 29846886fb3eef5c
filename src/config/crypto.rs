//! `[crypto]`: the data keys, the fingerprint key and the PIN-block key.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoSettings {
    /// The key id that new ciphertexts are sealed with.
    pub active_key: String,
    /// AES-256 data keys, base64 (32 bytes) by key id. Old ids stay for reading.
    pub keys: BTreeMap<String, String>,
    /// HMAC key (base64, 32 bytes) for card and ID fingerprints used in lookups.
    pub fingerprint_key: String,
    /// Used when `keys` is empty: a key file, generated on first start (0600).
    pub key_file: PathBuf,
    /// AES key (base64, 16 or 32 bytes) for ISO 9564 format 4 PIN blocks,
    /// shared with the issuer link. Empty: the key file's, else derived from
    /// the fingerprint key (see `KeyRing::zone_pin_key`).
    pub zone_pin_key: String,
}

impl Default for CryptoSettings {
    fn default() -> Self {
        Self {
            active_key: String::new(),
            keys: BTreeMap::new(),
            fingerprint_key: String::new(),
            key_file: PathBuf::from("voicepay.keys"),
            zone_pin_key: String::new(),
        }
    }
}

impl CryptoSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.keys.is_empty() {
            if !self.keys.contains_key(&self.active_key) {
                return invalid("crypto.active_key", "must name one of crypto.keys");
            }
            if self.fingerprint_key.is_empty() {
                return invalid(
                    "crypto.fingerprint_key",
                    "is required when crypto.keys is set",
                );
            }
        }
        Ok(())
    }
}
