//! Typed settings, layered: built-in defaults, then an optional TOML file
//! (`--config PATH`), then `VOICEPAY__SECTION__KEY` environment variables.
//! Every value is checked at start-up; an error names the key at fault.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address the merchant API listens on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How often a live status stream (`/v1/orders/{id}/events`) looks for
    /// new events in the database, in milliseconds. Polling the shared
    /// database is what lets a stream on one node see another node's calls.
    pub events_poll_ms: u64,
    /// Seconds between keep-alive comments on an idle status stream.
    pub events_keepalive_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path.db` (created if missing) or `postgres://user:pass@host/db`.
    pub url: String,
    /// Connections for readers (SQLite always writes through one connection).
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AriSettings {
    pub url: String,
    pub username: String,
    pub password: String,
    /// The Stasis application name; each node sharing one Asterisk needs its own.
    pub app: String,
    /// How long `POST /channels` (an originate) may take, in seconds. Other
    /// requests answer in milliseconds; placing a call can take seconds on a
    /// busy Asterisk, and a timed-out originate must be checked before it is
    /// sent again.
    pub originate_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelephonySettings {
    /// Dial string for callbacks; `{phone}` is replaced by the cardholder's number.
    pub callback_endpoint: String,
    /// Caller ID presented on callbacks.
    pub caller_id: String,
    /// How long a callback rings before it counts as no answer, in seconds.
    pub ring_timeout_secs: u64,
    /// Callback attempts per order (first call included).
    pub max_attempts: u32,
    /// Pause between callback attempts, in seconds.
    pub retry_interval_secs: u64,
    /// Calls this node runs at once, ringing or answered; further due
    /// callback orders wait in `pending` until one ends (never failed).
    pub max_concurrent_calls: usize,
    /// Callback originates (`POST /channels`) this node has in flight at
    /// once; more due orders wait their turn.
    pub max_concurrent_originates: usize,
    /// How often a node renews its claims on the orders whose calls it is
    /// placing or running (whether or not ARI is connected), and looks for
    /// calls abandoned by a stopped node, in seconds.
    pub claim_renew_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderSettings {
    /// Largest amount accepted, in fen.
    pub max_amount: i64,
    /// How long an order waits to be paid before it expires, in seconds.
    pub expiry_secs: u64,
    /// How long an `Idempotency-Key` is remembered, in seconds.
    pub idempotency_ttl_secs: u64,
    /// How often expired orders and keys are swept, in seconds.
    pub sweep_interval_secs: u64,
}

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `voicepay=debug,info`.
    pub level: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            events_poll_ms: 250,
            events_keepalive_secs: 15,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://voicepay.db".into(),
            max_connections: 8,
        }
    }
}

impl Default for AriSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8088".into(),
            username: "voicepay".into(),
            password: String::new(),
            app: "voicepay".into(),
            originate_timeout_secs: 15,
        }
    }
}

impl Default for TelephonySettings {
    fn default() -> Self {
        Self {
            callback_endpoint: "PJSIP/{phone}@carrier".into(),
            caller_id: "voicepay <95516>".into(),
            ring_timeout_secs: 30,
            max_attempts: 3,
            retry_interval_secs: 60,
            max_concurrent_calls: 100,
            max_concurrent_originates: 8,
            claim_renew_secs: 30,
        }
    }
}

impl Default for OrderSettings {
    fn default() -> Self {
        Self {
            max_amount: 100_000_000,
            expiry_secs: 900,
            idempotency_ttl_secs: 24 * 3600,
            sweep_interval_secs: 5,
        }
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

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// The issuing bank behind the adapter layer (`bank/`). Only the stub issuer
/// exists so far.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BankSettings {
    /// A TOML file of test banks and cards for the stub issuer, replacing the
    /// built-in table (`src/bank/test_cards.toml`). Empty: the built-in one.
    pub stub_cards: PathBuf,
    /// How long the matcher waits for an authorization's answer before it
    /// resolves the attempt by query (never by a second authorization).
    pub auth_timeout_secs: u64,
    /// The stub issuer's durable state (balances, the answer per
    /// idempotency key, wrong-PIN counts): a journal file, each answer
    /// flushed to it before it is given. Empty: see
    /// [`Settings::stub_state_path`].
    pub stub_state: PathBuf,
}

impl Default for BankSettings {
    fn default() -> Self {
        Self {
            stub_cards: PathBuf::new(),
            auth_timeout_secs: 10,
            stub_state: PathBuf::new(),
        }
    }
}

/// The demo checkout page (`/demo`): a small merchant front end for the lab.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Serve `/demo`. The daemon then keeps a demo merchant whose API key
    /// never leaves the server. Off by default; `scripts/run` turns it on.
    pub enabled: bool,
}

/// The payment call's timing and retry limits (`ivr::IvrConfig`), so
/// operators can fit them to their callers without a rebuild.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvrSettings {
    /// Seconds a caller may wait after a prompt ends before the first digit.
    pub first_digit_timeout_secs: u64,
    /// Seconds a caller may pause between two digits of one entry.
    pub inter_digit_timeout_secs: u64,
    /// Failed attempts (invalid input or a timeout) per step before the call
    /// ends with `input_timeout`.
    pub attempts_per_step: u8,
    /// Secrets a caller may submit in one call; the bank's daily count can
    /// only lower it.
    pub secret_tries: u8,
    /// The longest a payment call may last from the answer, in seconds.
    pub max_call_secs: u64,
    /// The longest the closing prompt may play before the call is hung up
    /// anyway, in seconds.
    pub final_prompt_limit_secs: u64,
}

impl Default for IvrSettings {
    fn default() -> Self {
        let d = crate::ivr::IvrConfig::default();
        Self {
            first_digit_timeout_secs: d.first_digit_timeout.as_secs(),
            inter_digit_timeout_secs: d.inter_digit_timeout.as_secs(),
            attempts_per_step: d.attempts_per_step,
            secret_tries: d.secret_tries,
            max_call_secs: d.max_call.as_secs(),
            final_prompt_limit_secs: d.final_prompt_limit.as_secs(),
        }
    }
}

impl From<&IvrSettings> for crate::ivr::IvrConfig {
    fn from(s: &IvrSettings) -> Self {
        use std::time::Duration;
        Self {
            first_digit_timeout: Duration::from_secs(s.first_digit_timeout_secs),
            inter_digit_timeout: Duration::from_secs(s.inter_digit_timeout_secs),
            attempts_per_step: s.attempts_per_step,
            max_call: Duration::from_secs(s.max_call_secs),
            secret_tries: s.secret_tries,
            final_prompt_limit: Duration::from_secs(s.final_prompt_limit_secs),
        }
    }
}

/// Webhook delivery (`notify`): timeouts, the retry schedule, fairness.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Whether this node runs the delivery worker (events are queued either
    /// way; another node sharing the database may send them).
    pub enabled: bool,
    /// Per-request timeout, connecting included, in seconds.
    pub timeout_secs: u64,
    /// Delay before the first retry; each further retry doubles it.
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts.
    pub retry_max_ms: u64,
    /// Each delay is multiplied by a random factor in `1 ± retry_jitter`.
    pub retry_jitter: f64,
    /// After this long without a 2xx the event is marked `failed`.
    pub max_age_secs: u64,
    /// Deliveries to one merchant in flight at once on this node.
    pub max_in_flight_per_merchant: usize,
    /// How often the worker looks for due events.
    pub poll_interval_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout_secs: 10,
            retry_initial_ms: 30_000,
            retry_max_ms: 3_600_000,
            retry_jitter: 0.2,
            max_age_secs: 86_400,
            max_in_flight_per_merchant: 4,
            poll_interval_ms: 1000,
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
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
            .try_parsing(true);
        let settings: Settings = builder.add_source(env).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return invalid("database.url", "must start with sqlite: or postgres://");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        match reqwest::Url::parse(&self.ari.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return invalid("ari.url", "must be an http:// or https:// URL"),
        }
        if self.ari.app.is_empty()
            || !self
                .ari
                .app
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return invalid("ari.app", "must be letters, digits, - or _");
        }
        if !(1..=120).contains(&self.ari.originate_timeout_secs) {
            return invalid("ari.originate_timeout_secs", "must be 1 to 120");
        }
        if !self.telephony.callback_endpoint.contains("{phone}") {
            return invalid("telephony.callback_endpoint", "must contain {phone}");
        }
        if self.telephony.max_attempts == 0 {
            return invalid("telephony.max_attempts", "must be at least 1");
        }
        if self.bank.auth_timeout_secs == 0 {
            return invalid("bank.auth_timeout_secs", "must be at least 1");
        }
        if self.telephony.max_concurrent_calls == 0 {
            return invalid("telephony.max_concurrent_calls", "must be at least 1");
        }
        if self.telephony.max_concurrent_originates == 0 {
            return invalid("telephony.max_concurrent_originates", "must be at least 1");
        }
        if self.telephony.ring_timeout_secs == 0 {
            return invalid("telephony.ring_timeout_secs", "must be at least 1");
        }
        // Well under the shortest claim (ring + 30 s call + 1 s prompt + 60 s).
        if !(1..=60).contains(&self.telephony.claim_renew_secs) {
            return invalid("telephony.claim_renew_secs", "must be 1 to 60");
        }
        let ivr = &self.ivr;
        if !(1..=60).contains(&ivr.first_digit_timeout_secs) {
            return invalid("ivr.first_digit_timeout_secs", "must be 1 to 60");
        }
        if !(1..=30).contains(&ivr.inter_digit_timeout_secs) {
            return invalid("ivr.inter_digit_timeout_secs", "must be 1 to 30");
        }
        if !(1..=9).contains(&ivr.attempts_per_step) {
            return invalid("ivr.attempts_per_step", "must be 1 to 9");
        }
        // DESIGN.md: at most 3 secret tries per call.
        if !(1..=3).contains(&ivr.secret_tries) {
            return invalid("ivr.secret_tries", "must be 1 to 3");
        }
        if !(30..=1800).contains(&ivr.max_call_secs) {
            return invalid("ivr.max_call_secs", "must be 30 to 1800");
        }
        if !(1..=120).contains(&ivr.final_prompt_limit_secs) {
            return invalid("ivr.final_prompt_limit_secs", "must be 1 to 120");
        }
        if self.orders.max_amount < 1 {
            return invalid("orders.max_amount", "must be at least 1 fen");
        }
        if self.orders.expiry_secs < 60 {
            return invalid("orders.expiry_secs", "must be at least 60");
        }
        if self.orders.sweep_interval_secs == 0 {
            return invalid("orders.sweep_interval_secs", "must be at least 1");
        }
        if self.http.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes", "must be at least 1024");
        }
        if !(10..=60_000).contains(&self.http.events_poll_ms) {
            return invalid("http.events_poll_ms", "must be 10 to 60000");
        }
        if !(1..=300).contains(&self.http.events_keepalive_secs) {
            return invalid("http.events_keepalive_secs", "must be 1 to 300");
        }
        let w = &self.webhooks;
        if w.timeout_secs == 0 {
            return invalid("webhooks.timeout_secs", "must be at least 1");
        }
        if w.retry_initial_ms == 0 {
            return invalid("webhooks.retry_initial_ms", "must be at least 1");
        }
        if w.retry_max_ms < w.retry_initial_ms {
            return invalid(
                "webhooks.retry_max_ms",
                "must be at least webhooks.retry_initial_ms",
            );
        }
        if !(0.0..1.0).contains(&w.retry_jitter) {
            return invalid("webhooks.retry_jitter", "must be at least 0 and below 1");
        }
        if w.max_age_secs == 0 {
            return invalid("webhooks.max_age_secs", "must be at least 1");
        }
        if w.max_in_flight_per_merchant == 0 {
            return invalid("webhooks.max_in_flight_per_merchant", "must be at least 1");
        }
        if w.poll_interval_ms < 10 {
            return invalid("webhooks.poll_interval_ms", "must be at least 10");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be text or json");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid("log.level", "is not a valid tracing filter");
        }
        if !self.crypto.keys.is_empty() {
            if !self.crypto.keys.contains_key(&self.crypto.active_key) {
                return invalid("crypto.active_key", "must name one of crypto.keys");
            }
            if self.crypto.fingerprint_key.is_empty() {
                return invalid(
                    "crypto.fingerprint_key",
                    "is required when crypto.keys is set",
                );
            }
        }
        Ok(())
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
        shown.crypto.keys.values_mut().for_each(hide);
        shown.database.url = redact_url_password(&shown.database.url);
        toml_string(&shown)
    }
}

/// The file of a `sqlite:` database URL; None for an in-memory one or
/// another database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// The URL with its password (if any) replaced by `****`.
pub fn redact_url_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn toml_string(s: &Settings) -> String {
    // serde_json -> a simple TOML rendering keeps us off a second TOML crate.
    let value = serde_json::to_value(s).unwrap_or_default();
    let mut out = String::new();
    if let serde_json::Value::Object(sections) = value {
        for (section, body) in sections {
            out.push_str(&format!("[{section}]\n"));
            if let serde_json::Value::Object(keys) = body {
                for (k, v) in keys {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
            out.push('\n');
        }
    }
    out
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
    fn redaction_hides_secrets() {
        let mut s = Settings::default();
        s.ari.password = "hunter2".into();
        s.database.url = "postgres://vp:dbsecret@localhost/vp".into();
        s.crypto.keys.insert("k1".into(), "c2VjcmV0".into());
        let shown = s.redacted_toml();
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("dbsecret")
                && !shown.contains("c2VjcmV0")
        );
        assert!(shown.contains("[ari]"));
    }
}
