//! Typed settings, layered: built-in defaults, then an optional TOML file
//! (`--config PATH`), then `VOICEPAY__SECTION__KEY` environment variables.
//! Every value is checked at start-up; an error names the key at fault.
//!
//! One file per section (`[http]` in `http.rs`, …): its struct, its
//! defaults and the checks of its values.

mod ari;
mod bank;
mod crypto;
mod database;
mod demo;
mod http;
mod inbound;
mod ivr;
mod limits;
mod log;
mod orders;
mod telephony;
mod velocity;
mod webhooks;

pub use ari::{AriSettings, RestTransport, WebsocketMode};
pub use bank::{zpk_bytes, BankKind, BankSettings, Iso8583Settings, ZpkError};
pub use crypto::CryptoSettings;
pub use database::{redact_url_password, DatabaseSettings};
pub use demo::DemoSettings;
pub use http::HttpSettings;
pub use inbound::InboundSettings;
pub use ivr::IvrSettings;
pub use limits::LimitSettings;
pub use log::LogSettings;
pub use orders::OrderSettings;
pub use telephony::{MachineDetectionSettings, TelephonySettings};
pub use velocity::VelocityLimits;
pub use webhooks::{normal_host, WebhookSettings};

use database::sqlite_file;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every setting of the daemon, one field per `[section]` of the file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub ari: AriSettings,
    pub telephony: TelephonySettings,
    pub orders: OrderSettings,
    pub crypto: CryptoSettings,
    pub log: LogSettings,
    pub bank: BankSettings,
    pub demo: DemoSettings,
    pub ivr: IvrSettings,
    pub webhooks: WebhookSettings,
    /// `[limits]`: HTTP, stream and order rates (`limits.rs`) and the
    /// wrong-secret velocity limits (`velocity.rs`).
    pub limits: LimitSettings,
    pub inbound: InboundSettings,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or parsed.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of its range; `key` is its dotted name.
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The error for `key`'s value, for the sections' checks.
fn invalid(key: &'static str, message: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        message: message.to_owned(),
    })
}

impl Settings {
    /// Defaults, then the file (if any), then `VOICEPAY__…` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let env = config::Environment::with_prefix("VOICEPAY")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            // A list from one variable: `VOICEPAY__WEBHOOKS__ALLOWED_PRIVATE_TARGETS=a:1,b:2`.
            .list_separator(",")
            .with_list_parse_key("webhooks.allowed_private_targets");
        let settings: Settings = builder
            .add_source(env)
            .add_source(text_env())
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every section; the first value at fault is the error.
    fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        self.ari.validate()?;
        self.telephony.validate()?;
        self.bank.validate()?;
        self.ivr.validate()?;
        self.orders.validate()?;
        self.http.validate()?;
        self.webhooks.validate()?;
        self.demo.validate()?;
        self.inbound.validate()?;
        self.log.validate()?;
        self.limits.validate()?;
        self.crypto.validate()
    }

    /// Where the stub issuer keeps its state: `bank.stub_state`, or when
    /// that is empty `<database file stem>.stub-bank.jsonl` next to a SQLite
    /// database file, else `stub-bank.jsonl` next to `crypto.key_file`
    /// (the daemon's data folder).
    pub fn stub_state_path(&self) -> PathBuf {
        if !self.bank.stub_state.as_os_str().is_empty() {
            return self.bank.stub_state.clone();
        }
        if let Some(db) = sqlite_file(&self.database.url) {
            let stem = db
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "voicepay".into());
            return db.with_file_name(format!("{stem}.stub-bank.jsonl"));
        }
        self.crypto.key_file.with_file_name("stub-bank.jsonl")
    }

    /// The settings as TOML with every secret replaced by `****`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let hide = |s: &mut String| {
            if !s.is_empty() {
                *s = "****".into();
            }
        };
        hide(&mut shown.ari.password);
        hide(&mut shown.crypto.fingerprint_key);
        hide(&mut shown.crypto.zone_pin_key);
        hide(&mut shown.bank.iso8583.zone_pin_key);
        shown.crypto.keys.values_mut().for_each(hide);
        shown.database.url = redact_url_password(&shown.database.url);
        toml_string(&shown)
    }
}

/// The `VOICEPAY__BANK__ISO8583__…` variables that are text whatever they
/// look like (a terminal id `00000001`, an all-digit hex key), read again
/// without the number parsing of the main environment source, which would
/// turn them into numbers and drop their leading zeros.
fn text_env() -> config::Environment {
    let names: Vec<String> = bank::Iso8583Settings::TEXT_KEYS
        .iter()
        .map(|k| format!("VOICEPAY__BANK__ISO8583__{}", k.to_uppercase()))
        .collect();
    let vars = std::env::vars()
        .filter(|(name, _)| names.contains(name))
        .collect();
    config::Environment::with_prefix("VOICEPAY")
        .prefix_separator("__")
        .separator("__")
        .source(Some(vars))
}

fn toml_string(s: &Settings) -> String {
    // Nested tables (`[telephony.machine_detection]`) come out as tables,
    // in the shape `voicepay.example.toml` and `--config` files use.
    toml::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url, "sqlite://voicepay.db");
        assert_eq!(s.ari.app, "voicepay");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut s = Settings::default();
        s.telephony.callback_endpoint = "PJSIP/carrier".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("telephony.callback_endpoint"), "{err}");
    }

    #[test]
    fn the_claim_renewal_interval_is_bounded() {
        let mut s = Settings::default();
        assert_eq!(s.telephony.claim_renew_secs, 30);
        for bad in [0, 61] {
            s.telephony.claim_renew_secs = bad;
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("telephony.claim_renew_secs"), "{err}");
        }
        s.telephony.claim_renew_secs = 1;
        s.validate().unwrap();
    }

    #[test]
    fn the_claim_margin_and_the_drain_are_bounded() {
        let mut s = Settings::default();
        assert_eq!(
            (s.telephony.claim_margin_secs, s.telephony.drain_secs),
            (60, 240)
        );
        for bad in [29, 3601] {
            s.telephony.claim_margin_secs = bad;
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("telephony.claim_margin_secs"), "{err}");
        }
        s.telephony.claim_margin_secs = 30;
        s.telephony.drain_secs = 3601;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("telephony.drain_secs"), "{err}");
        s.telephony.drain_secs = 0;
        s.validate().unwrap();
    }

    #[test]
    fn ivr_settings_reach_the_machine() {
        let mut s = Settings::default();
        assert_eq!(
            crate::ivr::IvrConfig::from(&s.ivr),
            crate::ivr::IvrConfig::default()
        );
        s.ivr.first_digit_timeout_secs = 7;
        s.ivr.max_call_secs = 240;
        s.validate().unwrap();
        let c = crate::ivr::IvrConfig::from(&s.ivr);
        assert_eq!(c.first_digit_timeout.as_secs(), 7);
        assert_eq!(c.max_call.as_secs(), 240);
        s.ivr.secret_tries = 4;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("ivr.secret_tries"), "{err}");
    }

    #[test]
    fn inbound_callers_key_the_order_code_by_default() {
        let mut s = Settings::default();
        assert!(s.inbound.require_order_code);
        assert_eq!(s.inbound.wrong_codes_per_day, 5);
        for bad in [0, 101] {
            s.inbound.wrong_codes_per_day = bad;
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("inbound.wrong_codes_per_day"), "{err}");
        }
    }

    #[test]
    fn stub_state_defaults_next_to_the_database_or_the_key_file() {
        let mut s = Settings::default();
        assert_eq!(
            s.stub_state_path(),
            PathBuf::from("voicepay.stub-bank.jsonl")
        );
        s.database.url = "sqlite:///var/lib/vp/main.db?mode=rwc".into();
        assert_eq!(
            s.stub_state_path(),
            PathBuf::from("/var/lib/vp/main.stub-bank.jsonl")
        );
        s.database.url = "postgres://vp@db/vp".into();
        s.crypto.key_file = "/etc/vp/voicepay.keys".into();
        assert_eq!(
            s.stub_state_path(),
            PathBuf::from("/etc/vp/stub-bank.jsonl")
        );
        s.database.url = "sqlite::memory:".into();
        assert_eq!(
            s.stub_state_path(),
            PathBuf::from("/etc/vp/stub-bank.jsonl")
        );
        s.bank.stub_state = "/tmp/x.jsonl".into();
        assert_eq!(s.stub_state_path(), PathBuf::from("/tmp/x.jsonl"));
    }

    #[test]
    fn limits_are_checked_and_name_their_key() {
        let mut s = Settings::default();
        assert_eq!(s.limits.orders_per_phone_per_day, 10);
        s.limits.max_streams_per_merchant = s.limits.max_streams + 1;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_streams_per_merchant"), "{err}");
        s.limits.max_streams_per_merchant = 1;
        s.limits.header_read_timeout_secs = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("limits.header_read_timeout_secs"), "{err}");
        s.limits.header_read_timeout_secs = 1;
        s.limits.orders_per_phone_per_day = 0;
        s.validate().unwrap();
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut s = Settings::default();
        s.ari.password = "hunter2".into();
        s.database.url = "postgres://vp:dbsecret@localhost/vp".into();
        s.crypto.keys.insert("k1".into(), "c2VjcmV0".into());
        s.bank.iso8583.zone_pin_key = "0123456789ABCDEFFEDCBA9876543210".into();
        s.bank.iso8583.zone_pin_key_id = "zpk-2026".into();
        let shown = s.redacted_toml();
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("dbsecret")
                && !shown.contains("c2VjcmV0")
                && !shown.contains("0123456789ABCDEF")
                && !format!("{s:?}").contains("0123456789ABCDEF")
        );
        assert!(shown.contains("[ari]"));
        assert!(shown.contains("[bank.iso8583]") && shown.contains("zpk-2026"));
    }
}
