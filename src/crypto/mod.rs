//! Protection of card data at rest: AES-256-GCM sealing with rotating key ids,
//! keyed fingerprints for lookups, and zeroizing key material; and ISO 9564
//! format 4 PIN blocks under the zone PIN key ([`PinBlock`]); and their
//! translation to the ISO 9564 format 0 blocks of the ISO 8583 link under a
//! TDES zone PIN key ([`translate_format4_to_format0`], [`Zpk`],
//! [`PinBlock0`]), the job of an HSM in production.
//!
//! A sealed value is `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`; the
//! field name is bound in as associated data so a ciphertext cannot be moved
//! from one column to another.

mod format0;
mod keys;
mod pinblock;

pub use format0::{translate_format4_to_format0, PinBlock0, Zpk, ZpkError};

pub use keys::KeyRing;
pub use pinblock::{PinBlock, PinBlockError, ZonePinKey};

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("no key with id {0}")]
    UnknownKey(String),
    #[error("sealed value failed authentication")]
    Tampered,
}

/// Seals and opens card data with the configured keys.
pub struct Vault {
    active_id: String,
    ciphers: HashMap<String, Aes256Gcm>,
    fingerprint_key: Zeroizing<Vec<u8>>,
    /// Keys the fingerprints of idempotent requests; derived from the
    /// fingerprint key ([`derive_request_key`]) so neither key is used for
    /// two purposes.
    request_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("active_id", &self.active_id)
            .finish_non_exhaustive()
    }
}

impl Vault {
    pub fn new(ring: &KeyRing) -> Self {
        let ciphers = ring
            .data_keys
            .iter()
            .map(|(id, key)| {
                let cipher =
                    Aes256Gcm::new_from_slice(key).expect("32-byte key checked by KeyRing");
                (id.clone(), cipher)
            })
            .collect();
        Self {
            active_id: ring.active_id.clone(),
            ciphers,
            fingerprint_key: ring.fingerprint_key.clone(),
            request_key: derive_request_key(&ring.fingerprint_key),
        }
    }

    /// The fingerprint of a request that an `Idempotency-Key` is bound to:
    /// HMAC-SHA256 (hex, 64 characters) under a dedicated key, over the
    /// merchant id and the request's canonical bytes. Keyed, so a stored
    /// print cannot be checked offline against guessed card and ID numbers;
    /// scoped to the merchant, so equal bodies of two merchants differ.
    pub fn request_fingerprint(&self, merchant_id: &str, canonical: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.request_key)
            .expect("HMAC takes any key length");
        mac.update(merchant_id.as_bytes());
        mac.update(&[0]);
        mac.update(canonical);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Encrypts `plain` for the column `field` with the active key.
    pub fn seal(&self, field: &str, plain: &[u8]) -> String {
        let cipher = &self.ciphers[&self.active_id];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: field.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("v1.{}.{}", self.active_id, B64.encode(blob))
    }

    /// Decrypts a value sealed by [`Vault::seal`] with any known key id.
    pub fn open(&self, field: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let cipher = self
            .ciphers
            .get(id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?;
        let blob = B64.decode(body).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = blob.split_at(12);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: field.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
    }

    /// A stable keyed fingerprint (HMAC-SHA256, hex) for equality lookups
    /// without storing the value: the same card always gives the same print.
    pub fn fingerprint(&self, field: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key)
            .expect("HMAC takes any key length");
        mac.update(field.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The request-fingerprint key: HMAC-SHA256(fingerprint key, a fixed label),
/// the one-step HKDF-Expand of RFC 5869 §2.3 with a single block. A new
/// label gives an unrelated key, so the key file needs no new entry.
fn derive_request_key(fingerprint_key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(fingerprint_key).expect("HMAC takes any key length");
    mac.update(b"voicepay idempotency request fingerprint v1");
    mac.update(&[1]);
    Zeroizing::new(mac.finalize().into_bytes().to_vec())
}

/// SHA-256 in hex: for API keys (high-entropy, so no slow hash is needed).
/// Never for anything holding card data: use [`Vault::fingerprint`] or
/// [`Vault::request_fingerprint`].
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `len` random bytes as URL-safe base64, for ids, keys and secrets.
pub fn random_token(len: usize) -> String {
    use rand::RngCore;
    let mut buf = Zeroizing::new(vec![0u8; len]);
    OsRng.fill_bytes(&mut buf);
    B64.encode(&*buf)
}

/// A random lowercase hex string of `2 * len` characters.
pub fn random_hex(len: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; len];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new(&KeyRing::for_tests())
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_value() {
        let v = vault();
        let sealed = v.seal("card_number", b"6222000000000017");
        assert!(sealed.starts_with("v1.test."));
        assert!(!sealed.contains("6222000000000017"));
        assert_eq!(
            &**v.open("card_number", &sealed).unwrap(),
            b"6222000000000017"
        );
        // a fresh nonce each time
        assert_ne!(sealed, v.seal("card_number", b"6222000000000017"));
    }

    #[test]
    fn ciphertext_is_bound_to_its_field_and_key() {
        let v = vault();
        let sealed = v.seal("card_number", b"6222000000000017");
        assert!(matches!(
            v.open("id_number", &sealed),
            Err(CryptoError::Tampered)
        ));
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(v
            .open("card_number", std::str::from_utf8(&flipped).unwrap())
            .is_err());
        let other = sealed.replacen("v1.test.", "v1.gone.", 1);
        assert!(matches!(
            v.open("card_number", &other),
            Err(CryptoError::UnknownKey(_))
        ));
        assert!(matches!(
            v.open("card_number", "garbage"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn rotated_keys_still_open_old_values() {
        let old = KeyRing::for_tests();
        let sealed = Vault::new(&old).seal("card_number", b"x");
        let mut new = KeyRing::for_tests();
        new.data_keys
            .insert("k2".into(), Zeroizing::new(vec![7u8; 32]));
        new.active_id = "k2".into();
        let v = Vault::new(&new);
        assert_eq!(&**v.open("card_number", &sealed).unwrap(), b"x");
        assert!(v.seal("card_number", b"x").starts_with("v1.k2."));
    }

    #[test]
    fn request_fingerprints_are_keyed_and_merchant_scoped() {
        let v = vault();
        let body = br#"{"amount":1}"#;
        let print = v.request_fingerprint("m1", body);
        assert_eq!(print, v.request_fingerprint("m1", body));
        assert_eq!(print.len(), 64);
        assert_ne!(print, sha256_hex(body));
        assert_ne!(print, v.request_fingerprint("m2", body));
        // Not the card-fingerprint key either.
        assert_ne!(print, v.fingerprint("m1", r#"{"amount":1}"#));
        let mut other = KeyRing::for_tests();
        other.fingerprint_key = Zeroizing::new(vec![9u8; 32]);
        assert_ne!(print, Vault::new(&other).request_fingerprint("m1", body));
    }

    #[test]
    fn fingerprints_are_stable_and_field_scoped() {
        let v = vault();
        assert_eq!(
            v.fingerprint("card", "6222000000000017"),
            v.fingerprint("card", "6222000000000017")
        );
        assert_ne!(
            v.fingerprint("card", "6222000000000017"),
            v.fingerprint("id", "6222000000000017")
        );
        assert!(!v.fingerprint("card", "6222000000000017").contains("6222"));
    }
}
