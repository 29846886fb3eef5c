//! The stub issuer's banks and test cards, read from TOML (the format is
//! described at the top of `test_cards.toml`, the built-in table). Every row
//! is checked at load; an error names the row, never a card number in clear.

use crate::domain::{CardKind, CardNumber, IdNumber};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashSet;

/// The table shipped with the project: the default test cards (README, "Test cards").
pub(crate) const BUILTIN: &str = include_str!("test_cards.toml");

/// A fixtures file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("test cards file is not valid TOML for the expected shape: {0}")]
    Toml(String),
    #[error("bank {index}: {message}")]
    Bank { index: usize, message: String },
    #[error("card {index}: {message}")]
    Card { index: usize, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRows {
    banks: Vec<BankRow>,
    cards: Vec<CardRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BankRow {
    id: String,
    name: String,
    bins: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardRow {
    pan: String,
    kind: CardKind,
    holder_id: String,
    available_fen: i64,
    #[serde(default)]
    status: Status,
    #[serde(default)]
    behaviour: Behaviour,
    salt: String,
    secret_hash: String,
}

/// The issuer's record of the card itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    #[default]
    Active,
    Restricted,
    Expired,
}

/// How the stub answers for this card, to exercise the caller's handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Behaviour {
    #[default]
    Normal,
    Slow,
    NoAnswer,
    Unavailable,
}

pub(crate) struct Bank {
    pub id: String,
    pub name: String,
    pub bins: Vec<String>,
}

pub(crate) struct TestCard {
    pub pan: CardNumber,
    pub bank: String,
    pub kind: CardKind,
    pub holder_id: IdNumber,
    pub available_fen: i64,
    pub status: Status,
    pub behaviour: Behaviour,
    salt: Vec<u8>,
    secret_hash: Vec<u8>,
}

impl TestCard {
    /// How the stub's durable state names this card: an HMAC of the number
    /// keyed with the card's salt, so the state file never holds the number
    /// and a reordered fixtures table still finds its cards.
    pub fn reference(&self) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.salt).expect("HMAC takes any key length");
        mac.update(b"voicepay stub card reference:");
        mac.update(self.pan.expose().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Whether `secret` (PIN digits, or MMYY then CVN2) hashes to the stored
    /// hash, compared in constant time.
    pub fn secret_matches(&self, secret: &[u8]) -> bool {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.salt).expect("HMAC takes any key length");
        mac.update(secret);
        mac.verify_slice(&self.secret_hash).is_ok()
    }
}

pub(crate) struct Fixtures {
    pub banks: Vec<Bank>,
    pub cards: Vec<TestCard>,
}

pub(crate) fn parse(text: &str) -> Result<Fixtures, FixtureError> {
    let rows: FileRows = toml::from_str(text).map_err(|e| FixtureError::Toml(e.to_string()))?;
    let mut banks = Vec::new();
    let mut ids = HashSet::new();
    for (index, row) in rows.banks.into_iter().enumerate() {
        let bad = |message: &str| FixtureError::Bank {
            index,
            message: message.to_owned(),
        };
        if row.id.is_empty() || !ids.insert(row.id.clone()) {
            return Err(bad("id must be present and unique"));
        }
        if row.bins.is_empty()
            || !row
                .bins
                .iter()
                .all(|b| (4..=11).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_digit()))
        {
            return Err(bad("bins must be a list of 4 to 11 digit prefixes"));
        }
        banks.push(Bank {
            id: row.id,
            name: row.name,
            bins: row.bins,
        });
    }
    let mut cards = Vec::new();
    let mut pans = HashSet::new();
    for (index, row) in rows.cards.into_iter().enumerate() {
        let bad = |message: String| FixtureError::Card { index, message };
        let pan = CardNumber::parse(&row.pan).map_err(|e| bad(e.message))?;
        if !pans.insert(row.pan.clone()) {
            return Err(bad(format!("{} appears twice", pan.masked())));
        }
        let bank = bank_for(&banks, pan.expose())
            .ok_or_else(|| bad(format!("no bank has a BIN for {}", pan.masked())))?;
        let holder_id = IdNumber::parse(&row.holder_id).map_err(|e| bad(e.message))?;
        if row.available_fen < 0 {
            return Err(bad("available_fen must not be negative".into()));
        }
        let salt = hex::decode(&row.salt)
            .ok()
            .filter(|s| s.len() >= 8)
            .ok_or_else(|| bad("salt must be at least 8 bytes of hex".into()))?;
        let secret_hash = hex::decode(&row.secret_hash)
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or_else(|| bad("secret_hash must be 32 bytes of hex".into()))?;
        if row.kind == CardKind::Unknown {
            return Err(bad("kind must be debit or credit".into()));
        }
        cards.push(TestCard {
            pan,
            bank: bank.id.clone(),
            kind: row.kind,
            holder_id,
            available_fen: row.available_fen,
            status: row.status,
            behaviour: row.behaviour,
            salt,
            secret_hash,
        });
    }
    Ok(Fixtures { banks, cards })
}

/// The bank with the longest BIN prefix of `pan`.
pub(crate) fn bank_for<'a>(banks: &'a [Bank], pan: &str) -> Option<&'a Bank> {
    banks
        .iter()
        .flat_map(|b| b.bins.iter().map(move |bin| (b, bin)))
        .filter(|(_, bin)| pan.starts_with(bin.as_str()))
        .max_by_key(|(_, bin)| bin.len())
        .map(|(b, _)| b)
}
