//! `[bank]`: the issuer behind the adapter layer.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The issuing bank behind the adapter layer (`bank/`): the in-process stub
/// issuer, or an ISO 8583 acquirer link.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BankSettings {
    /// Which issuer authorizes: `stub` (default, in process, no
    /// configuration) or `iso8583` (the acquirer link of `[bank.iso8583]`,
    /// see [`BankKind::Iso8583`]).
    pub kind: BankKind,
    /// A TOML file of test banks and cards for the stub issuer, replacing the
    /// built-in table (`src/bank/test_cards.toml`). Empty: the built-in one.
    pub stub_cards: PathBuf,
    /// How long the matcher waits for an authorization's answer before it
    /// resolves the attempt by query (never by a second authorization).
    pub auth_timeout_secs: u64,
    /// The stub issuer's durable state (balances, the answer per
    /// idempotency key, wrong-PIN counts): a journal file, each answer
    /// flushed to it before it is given. Empty: see
    /// [`Settings::stub_state_path`](super::Settings::stub_state_path).
    pub stub_state: PathBuf,
    /// `[bank.iso8583]`: the acquirer link, used with `kind = "iso8583"`.
    pub iso8583: Iso8583Settings,
}

impl Default for BankSettings {
    fn default() -> Self {
        Self {
            kind: BankKind::Stub,
            stub_cards: PathBuf::new(),
            auth_timeout_secs: 10,
            stub_state: PathBuf::new(),
            iso8583: Iso8583Settings::default(),
        }
    }
}

impl BankSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.auth_timeout_secs == 0 {
            return invalid("bank.auth_timeout_secs", "must be at least 1");
        }
        self.iso8583.validate(self.kind == BankKind::Iso8583)
    }
}

/// `bank.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BankKind {
    /// The in-process stub issuer (test cards, durable journal).
    #[default]
    Stub,
    /// An ISO 8583 acquirer link configured by `[bank.iso8583]`
    /// (`bank::Bank::iso8583`: the link, the issuer over it and the
    /// reversal worker).
    Iso8583,
}

/// `[bank.iso8583]`: the ISO 8583 link to the acquirer host (and the keys
/// `voicepay bank serve` reads for its own zone PIN key). Every value's
/// shape is checked whatever `bank.kind` is; with `kind = "iso8583"` the
/// address, the zone PIN key and its id, F32 and F41 are required.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Iso8583Settings {
    /// `host:port` of the acquirer host (persistent TCP). Empty: none.
    pub address: String,
    /// The zone PIN key shared with the acquirer: a double-length TDES key
    /// as 32 hex digits, halves different, every byte of odd parity (see
    /// `crypto::Zpk`). Distinct from `crypto.zone_pin_key` (AES, voicepay's
    /// own format 4 blocks). A secret: `config check` masks it, the log
    /// shows only its check value.
    pub zone_pin_key: String,
    /// The id both sides know the zone PIN key by (1-32 of `A-Za-z0-9-_`),
    /// logged with its check value.
    pub zone_pin_key_id: String,
    /// F32, acquiring institution identification code: 1-11 digits.
    pub acquirer_id: String,
    /// F41, card acceptor terminal identification: exactly 8 printable
    /// ASCII characters.
    pub terminal_id: String,
    /// Seconds to wait for the answer (0210, 0430, 0810) to a request
    /// before its outcome is unknown (1-300).
    pub response_timeout_secs: u64,
    /// Seconds the link may be idle before an echo test (0800, F70 301) is
    /// sent (1-3600).
    pub echo_interval_secs: u64,
    /// Requests awaiting their answer at once on the link (1-1000); more
    /// wait their turn.
    pub max_in_flight: u32,
}

impl Default for Iso8583Settings {
    fn default() -> Self {
        Self {
            address: String::new(),
            zone_pin_key: String::new(),
            zone_pin_key_id: String::new(),
            acquirer_id: String::new(),
            terminal_id: String::new(),
            response_timeout_secs: 10,
            echo_interval_secs: 60,
            max_in_flight: 16,
        }
    }
}

impl std::fmt::Debug for Iso8583Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iso8583Settings")
            .field("address", &self.address)
            .field("zone_pin_key_id", &self.zone_pin_key_id)
            .field("acquirer_id", &self.acquirer_id)
            .field("terminal_id", &self.terminal_id)
            .field("response_timeout_secs", &self.response_timeout_secs)
            .field("echo_interval_secs", &self.echo_interval_secs)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl Iso8583Settings {
    /// The keys the environment must give as text as they are (`00000001`
    /// is a terminal id, not the number 1), relative to `bank.iso8583`.
    pub(super) const TEXT_KEYS: [&'static str; 5] = [
        "address",
        "zone_pin_key",
        "zone_pin_key_id",
        "acquirer_id",
        "terminal_id",
    ];

    fn validate(&self, required: bool) -> Result<(), ConfigError> {
        let need = |key: &'static str, value: &str| {
            if required && value.is_empty() {
                invalid(key, "is required with bank.kind = \"iso8583\"")
            } else {
                Ok(())
            }
        };
        need("bank.iso8583.address", &self.address)?;
        need("bank.iso8583.zone_pin_key", &self.zone_pin_key)?;
        need("bank.iso8583.zone_pin_key_id", &self.zone_pin_key_id)?;
        need("bank.iso8583.acquirer_id", &self.acquirer_id)?;
        need("bank.iso8583.terminal_id", &self.terminal_id)?;
        if !self.address.is_empty() && !is_host_port(&self.address) {
            return invalid("bank.iso8583.address", "must be host:port");
        }
        let id = &self.zone_pin_key_id;
        if !id.is_empty() && !zpk_id_ok(id) {
            return invalid("bank.iso8583.zone_pin_key_id", &ZpkError::BadId.to_string());
        }
        if !self.zone_pin_key.is_empty() {
            if id.is_empty() {
                return invalid(
                    "bank.iso8583.zone_pin_key_id",
                    "is required with a zone_pin_key",
                );
            }
            if let Err(why) = zpk_bytes(id, &self.zone_pin_key) {
                return invalid("bank.iso8583.zone_pin_key", &why.to_string());
            }
        }
        let f32 = &self.acquirer_id;
        if !f32.is_empty() && (f32.len() > 11 || !f32.bytes().all(|b| b.is_ascii_digit())) {
            return invalid("bank.iso8583.acquirer_id", "must be 1 to 11 digits (F32)");
        }
        let f41 = &self.terminal_id;
        if !f41.is_empty()
            && (f41.len() != 8 || !f41.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        {
            return invalid(
                "bank.iso8583.terminal_id",
                "must be exactly 8 printable ASCII characters (F41)",
            );
        }
        if !(1..=300).contains(&self.response_timeout_secs) {
            return invalid("bank.iso8583.response_timeout_secs", "must be 1 to 300");
        }
        if !(1..=3600).contains(&self.echo_interval_secs) {
            return invalid("bank.iso8583.echo_interval_secs", "must be 1 to 3600");
        }
        if !(1..=1000).contains(&self.max_in_flight) {
            return invalid("bank.iso8583.max_in_flight", "must be 1 to 1000");
        }
        Ok(())
    }
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

/// Why a TDES zone PIN key (`bank.iso8583.zone_pin_key` and its id) was
/// refused. Never carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ZpkError {
    /// Not 32 characters (after trimming).
    #[error("must be 32 hex digits (a double-length TDES key), got {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("must be hex digits only")]
    NotHex,
    /// Halves equal: TDES with K1 = K2 is single DES.
    #[error("its two halves are equal, which makes it a single-length DES key")]
    EqualHalves,
    /// Byte `n` (0-based) does not have odd parity.
    #[error("byte {0} does not have odd parity (every byte of a DES key must have an odd number of 1 bits)")]
    Parity(usize),
    /// The key id is empty, too long or has other characters.
    #[error("the key id must be 1 to 32 letters, digits, - or _")]
    BadId,
}

fn zpk_id_ok(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The 16 key bytes of a double-length TDES zone PIN key given as 32 hex
/// digits (either case, surrounding blanks ignored), with its id: the one
/// check of the key's shape, made when the configuration is read and again
/// by `crypto::Zpk::from_hex` when the key is loaded. Halves must differ
/// and every byte must have odd parity (ANSI X9.24-1 / ISO 11568 DES key
/// bytes), so a mistyped digit is refused at start.
///
/// # Errors
/// [`ZpkError`], naming what is wrong, never the key.
pub fn zpk_bytes(id: &str, hex_key: &str) -> Result<zeroize::Zeroizing<[u8; 16]>, ZpkError> {
    if !zpk_id_ok(id) {
        return Err(ZpkError::BadId);
    }
    let hex_key = hex_key.trim();
    if hex_key.len() != 32 {
        return Err(ZpkError::Length(hex_key.len()));
    }
    let mut raw = zeroize::Zeroizing::new([0u8; 16]);
    hex::decode_to_slice(hex_key, &mut *raw).map_err(|_| ZpkError::NotHex)?;
    if raw[..8] == raw[8..] {
        return Err(ZpkError::EqualHalves);
    }
    match raw.iter().position(|b| b.count_ones() % 2 == 0) {
        Some(i) => Err(ZpkError::Parity(i)),
        None => Ok(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> BankSettings {
        BankSettings {
            kind: BankKind::Iso8583,
            iso8583: Iso8583Settings {
                address: "acquirer.example:8583".into(),
                zone_pin_key: "0123456789ABCDEFFEDCBA9876543210".into(),
                zone_pin_key_id: "zpk-2026".into(),
                acquirer_id: "00012345".into(),
                terminal_id: "VP000001".into(),
                ..Iso8583Settings::default()
            },
            ..BankSettings::default()
        }
    }

    fn key_at_fault(b: &BankSettings) -> String {
        match b.validate() {
            Err(ConfigError::Invalid { key, .. }) => key.to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn iso8583_settings_are_checked() {
        BankSettings::default().validate().unwrap();
        link().validate().unwrap();
        type Edit = fn(&mut Iso8583Settings);
        let cases: [(Edit, &str); 14] = [
            (|s| s.address.clear(), "address"),
            (|s| s.address = "no-port".into(), "address"),
            (|s| s.address = "host:0".into(), "address"),
            (|s| s.zone_pin_key.clear(), "zone_pin_key"),
            (
                |s| s.zone_pin_key = "0123456789ABCDEF".into(),
                "zone_pin_key",
            ),
            (
                |s| s.zone_pin_key = "0123456789ABCDEF0123456789ABCDEF".into(),
                "zone_pin_key",
            ),
            (
                |s| s.zone_pin_key = "0123456789ABCDEFFEDCBA9876543211".into(),
                "zone_pin_key",
            ),
            (|s| s.zone_pin_key_id.clear(), "zone_pin_key_id"),
            (|s| s.zone_pin_key_id = "a b".into(), "zone_pin_key_id"),
            (|s| s.acquirer_id = "123456789012".into(), "acquirer_id"),
            (|s| s.terminal_id = "VP00001".into(), "terminal_id"),
            (|s| s.response_timeout_secs = 0, "response_timeout_secs"),
            (|s| s.echo_interval_secs = 0, "echo_interval_secs"),
            (|s| s.max_in_flight = 0, "max_in_flight"),
        ];
        for (edit, key) in cases {
            let mut b = link();
            edit(&mut b.iso8583);
            assert_eq!(key_at_fault(&b), format!("bank.iso8583.{key}"));
        }
        // with the stub, nothing is required, but what is given is checked
        let mut stub = link();
        stub.kind = BankKind::Stub;
        stub.iso8583.address.clear();
        stub.iso8583.zone_pin_key.clear();
        stub.validate().unwrap();
        stub.iso8583.terminal_id = "x".into();
        assert_eq!(key_at_fault(&stub), "bank.iso8583.terminal_id");
    }

    #[test]
    fn debug_hides_the_zone_pin_key() {
        let shown = format!("{:?}", link());
        assert!(shown.contains("zpk-2026"), "{shown}");
        assert!(!shown.contains("0123456789ABCDEF"), "{shown}");
    }
}
