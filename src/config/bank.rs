//! `[bank]`: the issuer behind the adapter layer.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// [`Settings::stub_state_path`](super::Settings::stub_state_path).
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

impl BankSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.auth_timeout_secs == 0 {
            return invalid("bank.auth_timeout_secs", "must be at least 1");
        }
        Ok(())
    }
}
