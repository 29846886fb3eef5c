//! `[crypto]`: the data keys, the fingerprint key and the PIN-block key.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `Debug` shows key ids and which keys are set, never a key.
#[derive(Clone, Deserialize, Serialize)]
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

impl std::fmt::Debug for CryptoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "(empty)" } else { "****" };
        f.debug_struct("CryptoSettings")
            .field("active_key", &self.active_key)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("fingerprint_key", &set(&self.fingerprint_key))
            .field("key_file", &self.key_file)
            .field("zone_pin_key", &set(&self.zone_pin_key))
            .finish()
    }
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
        if self.keys.is_empty() {
            // The keys then come from `key_file`: key material given here
            // would be silently ignored, and data sealed under keys the
            // operator believes are in use.
            for (key, value) in [
                ("crypto.active_key", &self.active_key),
                ("crypto.fingerprint_key", &self.fingerprint_key),
                ("crypto.zone_pin_key", &self.zone_pin_key),
            ] {
                if !value.trim().is_empty() {
                    return invalid(
                        key,
                        "is ignored unless crypto.keys is set (the keys come from \
                         crypto.key_file then): set crypto.keys too, or remove it",
                    );
                }
            }
        } else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_that_would_be_ignored_is_refused_by_name() {
        for key in [
            "crypto.active_key",
            "crypto.fingerprint_key",
            "crypto.zone_pin_key",
        ] {
            let mut s = CryptoSettings::default();
            let field = match key {
                "crypto.active_key" => &mut s.active_key,
                "crypto.fingerprint_key" => &mut s.fingerprint_key,
                _ => &mut s.zone_pin_key,
            };
            *field = "AAAA".into();
            match s.validate() {
                Err(ConfigError::Invalid { key: k, message }) => {
                    assert_eq!(k, key);
                    assert!(message.contains("crypto.keys"), "{message}");
                }
                other => panic!("{key} alone accepted: {other:?}"),
            }
        }
        assert!(CryptoSettings::default().validate().is_ok());
    }

    #[test]
    fn debug_never_shows_a_key() {
        let s = CryptoSettings {
            active_key: "k1".into(),
            keys: BTreeMap::from([("k1".into(), "S0VZMQ==".into())]),
            fingerprint_key: "RlBLRVk=".into(),
            zone_pin_key: "WlBLRVk=".into(),
            ..CryptoSettings::default()
        };
        let shown = format!("{s:?}");
        for key in ["S0VZMQ==", "RlBLRVk=", "WlBLRVk="] {
            assert!(!shown.contains(key), "{shown}");
        }
        assert!(shown.contains("k1"), "{shown}");
    }
}
