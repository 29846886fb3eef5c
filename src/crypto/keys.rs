use super::ZonePinKey;
use crate::config::CryptoSettings;
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// The data keys by id, which one seals new values, the fingerprint key and
/// the zone PIN key.
pub struct KeyRing {
    pub active_id: String,
    pub data_keys: BTreeMap<String, Zeroizing<Vec<u8>>>,
    pub fingerprint_key: Zeroizing<Vec<u8>>,
    /// AES key (16 or 32 bytes) for ISO 9564 format 4 PIN blocks, shared with
    /// the issuer link. From `crypto.zone_pin_key` or the key file; when
    /// neither has one (key files written before it existed), derived from
    /// the fingerprint key as HMAC-SHA256(fingerprint key, [`ZPK_LABEL`]), so
    /// old key files keep working and the key stays the same across starts.
    pub zone_pin_key: Zeroizing<Vec<u8>>,
}

/// The derivation label for a zone PIN key not given explicitly.
pub const ZPK_LABEL: &[u8] = b"voicepay zone PIN key v1";

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active_id", &self.active_id)
            .field("key_ids", &self.data_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// On-disk form of a generated key file. An unknown field (a misspelt
/// key name) is refused rather than silently ignored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    active_key: String,
    keys: BTreeMap<String, String>,
    fingerprint_key: String,
    /// Absent from files written before PIN blocks existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    zone_pin_key: String,
}

impl KeyRing {
    /// Keys from the configuration, or else from `crypto.key_file`, which is
    /// created with fresh random keys (mode 0600) the first time.
    pub fn load(cfg: &CryptoSettings) -> anyhow::Result<Self> {
        if !cfg.keys.is_empty() {
            // The key file's keys would be ignored, and what they sealed
            // could no longer be opened: say so rather than start.
            if cfg.key_file.exists() {
                bail!(
                    "crypto.key_file {} exists but is ignored because crypto.keys is set: \
                     move its keys into crypto.keys (same ids) and remove the file, \
                     or unset crypto.keys",
                    cfg.key_file.display()
                );
            }
            return Self::from_parts(
                &cfg.active_key,
                &cfg.keys,
                &cfg.fingerprint_key,
                &cfg.zone_pin_key,
            )
            .context("crypto settings");
        }
        let path = &cfg.key_file;
        if !path.exists() {
            let generated = KeyFile {
                active_key: "k1".into(),
                keys: BTreeMap::from([("k1".into(), STANDARD.encode(random32()))]),
                fingerprint_key: STANDARD.encode(random32()),
                zone_pin_key: STANDARD.encode(random32()),
            };
            write_private(path, &serde_json::to_vec_pretty(&generated)?)
                .with_context(|| format!("creating key file {}", path.display()))?;
            tracing::warn!(path = %path.display(), "generated new data keys; back this file up, or set crypto.keys in production");
        }
        refuse_loose_mode(path)?;
        let text =
            std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
        let file: KeyFile = serde_json::from_slice(&text)
            .with_context(|| format!("key file {} is not valid", path.display()))?;
        Self::from_parts(
            &file.active_key,
            &file.keys,
            &file.fingerprint_key,
            &file.zone_pin_key,
        )
        .with_context(|| format!("key file {}", path.display()))
    }

    fn from_parts(
        active: &str,
        keys: &BTreeMap<String, String>,
        fp: &str,
        zpk: &str,
    ) -> anyhow::Result<Self> {
        let mut data_keys = BTreeMap::new();
        for (id, b64) in keys {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bail!("key id `{id}` must be letters, digits, - or _");
            }
            data_keys.insert(
                id.clone(),
                decode32(b64).with_context(|| format!("key `{id}`"))?,
            );
        }
        if !data_keys.contains_key(active) {
            bail!("active key `{active}` is not among the keys");
        }
        let fingerprint_key = decode32(fp).context("fingerprint key")?;
        let zone_pin_key = if zpk.trim().is_empty() {
            derive_zpk(&fingerprint_key)
        } else {
            decode_aes_key(zpk).context("zone PIN key")?
        };
        Ok(Self {
            active_id: active.to_owned(),
            data_keys,
            fingerprint_key,
            zone_pin_key,
        })
    }

    /// Each key's check value, to compare with the key's custodians or
    /// the issuer link without showing the key: `(name, KCV)` with names
    /// `data:<id>` (AES-256), `fingerprint` (an HMAC-SHA256 key; its 32
    /// bytes checked as an AES-256 key) and `zone_pin` (AES-128 or -256).
    /// See [`kcv`].
    pub fn check_values(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .data_keys
            .iter()
            .map(|(id, k)| (format!("data:{id}"), kcv(k)))
            .collect();
        out.push(("fingerprint".into(), kcv(&self.fingerprint_key)));
        out.push(("zone_pin".into(), kcv(&self.zone_pin_key)));
        out
    }

    /// The zone PIN key ready for [`crate::crypto::PinBlock`].
    pub fn zpk(&self) -> ZonePinKey {
        ZonePinKey::from_bytes(&self.zone_pin_key).expect("key length checked at load")
    }

    /// Fixed keys for unit tests only.
    #[doc(hidden)]
    pub fn for_tests() -> Self {
        Self {
            active_id: "test".into(),
            data_keys: BTreeMap::from([("test".into(), Zeroizing::new(vec![1u8; 32]))]),
            fingerprint_key: Zeroizing::new(vec![2u8; 32]),
            zone_pin_key: Zeroizing::new(vec![3u8; 32]),
        }
    }
}

/// The key check value of an AES key (16, 24 or 32 bytes): the first three
/// bytes, as six upper-case hex digits, of the key encrypting an all-zero
/// block — the classic KCV of ANSI X9.24 and HSM practice (e.g. Thales
/// payShield's "KCV type 0" for AES). Three bytes identify a key without
/// revealing anything usable about it. `"-"` for any other length.
pub fn kcv(key: &[u8]) -> String {
    use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
    let mut block = GenericArray::from([0u8; 16]);
    match key.len() {
        16 => aes::Aes128::new_from_slice(key).map(|c| c.encrypt_block(&mut block)),
        24 => aes::Aes192::new_from_slice(key).map(|c| c.encrypt_block(&mut block)),
        32 => aes::Aes256::new_from_slice(key).map(|c| c.encrypt_block(&mut block)),
        _ => return "-".into(),
    }
    .expect("key length matched");
    hex::encode_upper(&block[..3])
}

/// Refuses a key file that the group or others may read or write: the
/// keys in it open every sealed card and ID number.
fn refuse_loose_mode(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading key file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "crypto.key_file {} is open to group or others (mode {:03o}); \
             allow its owner only: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

fn decode32(b64: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let raw = Zeroizing::new(STANDARD.decode(b64.trim()).context("must be base64")?);
    if raw.len() != 32 {
        bail!("must decode to 32 bytes, got {}", raw.len());
    }
    Ok(raw)
}

fn decode_aes_key(b64: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let raw = Zeroizing::new(STANDARD.decode(b64.trim()).context("must be base64")?);
    if raw.len() != 16 && raw.len() != 32 {
        bail!("must decode to 16 or 32 bytes, got {}", raw.len());
    }
    Ok(raw)
}

fn derive_zpk(fingerprint_key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(fingerprint_key).expect("HMAC takes any key length");
    mac.update(ZPK_LABEL);
    Zeroizing::new(mac.finalize().into_bytes().to_vec())
}

fn random32() -> Zeroizing<Vec<u8>> {
    use rand::RngCore;
    let mut k = Zeroizing::new(vec![0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CryptoSettings {
            key_file: dir.path().join("keys.json"),
            ..CryptoSettings::default()
        };
        let a = KeyRing::load(&cfg).unwrap();
        let b = KeyRing::load(&cfg).unwrap();
        assert_eq!(a.data_keys["k1"], b.data_keys["k1"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg.key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn kcv_is_aes_of_a_zero_block() {
        // FIPS-197 / NIST AESAVS zero-key vectors: AES-128(0, 0) =
        // 66e94bd4…, AES-256(0, 0) = dc95c078…
        assert_eq!(kcv(&[0u8; 16]), "66E94B");
        assert_eq!(kcv(&[0u8; 32]), "DC95C0");
        assert_eq!(kcv(&[0u8; 5]), "-");
        // openssl enc -aes-{128,256}-ecb -nopad over 16 zero bytes
        let k: Vec<u8> = (0u8..32).collect();
        assert_eq!(kcv(&k), "F29000");
        let zpk = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        assert_eq!(kcv(&zpk), "7DF76B");
        let ring = KeyRing::for_tests();
        let names: Vec<String> = ring.check_values().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["data:test", "fingerprint", "zone_pin"]);
    }

    #[test]
    fn a_key_file_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = CryptoSettings {
            key_file: dir.path().join("keys.json"),
            ..CryptoSettings::default()
        };
        KeyRing::load(&cfg).unwrap();
        for mode in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&cfg.key_file, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = format!("{:#}", KeyRing::load(&cfg).unwrap_err());
            assert!(
                err.contains("crypto.key_file") && err.contains("chmod 600"),
                "{err}"
            );
        }
        std::fs::set_permissions(&cfg.key_file, std::fs::Permissions::from_mode(0o400)).unwrap();
        KeyRing::load(&cfg).unwrap();
    }

    #[test]
    fn a_key_file_that_would_be_ignored_or_misspelt_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        let mut cfg = CryptoSettings {
            key_file: file.clone(),
            ..CryptoSettings::default()
        };
        KeyRing::load(&cfg).unwrap();
        cfg.active_key = "k1".into();
        cfg.keys = BTreeMap::from([("k1".into(), STANDARD.encode([4u8; 32]))]);
        cfg.fingerprint_key = STANDARD.encode([5u8; 32]);
        let err = format!("{:#}", KeyRing::load(&cfg).unwrap_err());
        assert!(
            err.contains("crypto.key_file") && err.contains("ignored"),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
        KeyRing::load(&cfg).unwrap();

        let fp = STANDARD.encode([5u8; 32]);
        let k = STANDARD.encode([4u8; 32]);
        std::fs::write(
            &file,
            format!(
                r#"{{"active_key":"k1","keys":{{"k1":"{k}"}},"fingerprint_key":"{fp}","zone_pinkey":"{k}"}}"#
            ),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let only_file = CryptoSettings {
            key_file: file,
            ..CryptoSettings::default()
        };
        let err = format!("{:#}", KeyRing::load(&only_file).err().unwrap());
        assert!(err.contains("zone_pinkey"), "{err}");
    }

    #[test]
    fn short_keys_are_refused() {
        let keys = BTreeMap::from([("k1".to_string(), STANDARD.encode([0u8; 16]))]);
        let err = KeyRing::from_parts("k1", &keys, &STANDARD.encode([0u8; 32]), "").unwrap_err();
        assert!(format!("{err:#}").contains("32 bytes"));
    }

    #[test]
    fn zone_pin_key_is_generated_given_or_derived() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CryptoSettings {
            key_file: dir.path().join("keys.json"),
            ..CryptoSettings::default()
        };
        let fresh = KeyRing::load(&cfg).unwrap();
        assert_eq!(fresh.zone_pin_key.len(), 32);
        assert_ne!(fresh.zone_pin_key, derive_zpk(&fresh.fingerprint_key));
        let _ = fresh.zpk();

        // a key file from before PIN blocks: no zone_pin_key field
        let old = dir.path().join("old.json");
        let fp = STANDARD.encode([5u8; 32]);
        std::fs::write(
            &old,
            format!(
                r#"{{"active_key":"k1","keys":{{"k1":"{}"}},"fingerprint_key":"{fp}"}}"#,
                STANDARD.encode([4u8; 32])
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg_old = CryptoSettings {
            key_file: old,
            ..CryptoSettings::default()
        };
        let a = KeyRing::load(&cfg_old).unwrap();
        let b = KeyRing::load(&cfg_old).unwrap();
        assert_eq!(a.zone_pin_key, b.zone_pin_key);
        assert_eq!(a.zone_pin_key, derive_zpk(&[5u8; 32]));

        let keys = BTreeMap::from([("k1".to_string(), STANDARD.encode([4u8; 32]))]);
        let given = KeyRing::from_parts("k1", &keys, &fp, &STANDARD.encode([6u8; 16])).unwrap();
        assert_eq!(&**given.zone_pin_key, &[6u8; 16]);
        let err = KeyRing::from_parts("k1", &keys, &fp, &STANDARD.encode([6u8; 20])).unwrap_err();
        assert!(format!("{err:#}").contains("zone PIN key"), "{err:#}");
    }
}
