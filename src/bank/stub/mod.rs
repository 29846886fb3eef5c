//! The stub issuer: several test banks in one process, cards from a fixtures
//! table. It keeps the rules of a real issuer that the rest of voicepay must
//! handle: the first answer per idempotency key is final, wrong PINs are
//! counted per Asia/Shanghai calendar day, and some cards answer late, never,
//! or not at all (see `test_cards.toml`).
//!
//! State: in memory, and, with [`StubIssuer::with_state_file`] (what
//! `voicepay serve` does, `bank.stub_state`), in a journal on disk
//! (`journal.rs`): every answer is written and flushed to disk *before* it
//! is given (answers waiting at the same moment share one `fsync`, and an
//! answer that reads state, a query, also waits until that state is on
//! disk), so a daemon killed while an answer is on its way (the slow
//! card's 5 s) finds the debit, the answer per key and the day's wrong PINs
//! again when it starts, and settles the order by query.
//!
//! Order of checks for a new attempt: card known (61), issuer up (03), card
//! not restricted (63), cardholder ID (66), secrets not locked today (67),
//! secret (65, or 67 on the last try), card not expired (73),
//! single-payment limit (33), funds (64); then debit and approve. Wrong
//! secrets count towards the daily lock whatever the card's kind (PINs, and
//! expiry and CVN2), three per card per day ([`PIN_TRIES_PER_DAY`]); a right
//! one does not reset it. The ID comes before the secret so that a caller
//! with the wrong ID learns nothing about the secret and never counts
//! against the card: a stranger holding only the card number cannot lock it.
//!
//! [`PIN_TRIES_PER_DAY`]: super::PIN_TRIES_PER_DAY
//!
//! Refunds (`refund.rs`) name the approved purchase by its idempotency key
//! and give back at most what is left of it; `reverse` of a refund id takes
//! an approved refund's money back.
//!
//! Here: the issuer, its set-up and the [`IssuerLink`] calls; `rules.rs`
//! decides a new attempt, `refund.rs` a refund, `state.rs` is what the issuer remembers in memory,
//! `state_file.rs` makes it durable through the journal.

mod refund;
mod rules;
mod state;
mod state_file;

use super::fixtures::{self, Fixtures};
use super::journal::Line;
use super::{shanghai_day, AuthRequest, AuthResponse, IssuerError, IssuerLink, RefundRequest};
use crate::clock::{SharedClock, SystemClock};
use crate::crypto::{ZonePinKey, Zpk};
use crate::domain::CardNumber;
use anyhow::Context;
use rules::Reply;
use state::{durable, reverse_in_memory, reversible, State};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the slow and silent cards take. Tests shorten these.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Before a `slow` card's answer.
    pub slow: Duration,
    /// Before a `no_answer` card's first attempt gives up with `Timeout`
    /// (longer than any sane caller timeout).
    pub no_answer: Duration,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            slow: Duration::from_secs(5),
            no_answer: Duration::from_secs(60),
        }
    }
}

/// One test card's state, masked: what `voicepay bank cards` prints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardState {
    /// First 6 and last 4 digits.
    pub card: String,
    /// The issuing test bank's name.
    pub bank: String,
    /// `debit` or `credit`.
    pub kind: &'static str,
    /// Balance (debit) or open credit (credit) now, in fen.
    pub available_fen: i64,
    /// Wrong secrets (PIN, or expiry and CVN2) counted today
    /// (Asia/Shanghai); 3 lock the card's payments until the next day.
    pub wrong_pins_today: u8,
}

/// See the module documentation.
pub struct StubIssuer {
    fixtures: Fixtures,
    /// Index into `fixtures.cards` by card number.
    by_pan: HashMap<String, usize>,
    zpk: ZonePinKey,
    /// The ISO 8583 link's TDES zone PIN key, for [`Secret::PinBlock0`].
    link_zpk: Option<Zpk>,
    clock: SharedClock,
    latency: Latency,
    state: Mutex<State>,
}

impl std::fmt::Debug for StubIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubIssuer")
            .field("banks", &self.fixtures.banks.len())
            .field("cards", &self.fixtures.cards.len())
            .finish_non_exhaustive()
    }
}

impl StubIssuer {
    /// Checks debit PINs that arrive as ISO 9564 format 0 blocks
    /// ([`Secret::PinBlock0`], F52 of an ISO 8583 purchase) under `zpk`, the
    /// link's TDES zone PIN key: what `voicepay bank serve` needs.
    #[must_use]
    pub fn with_link_zpk(mut self, zpk: Zpk) -> Self {
        self.link_zpk = Some(zpk);
        self
    }

    /// The built-in test cards (`test_cards.toml`).
    pub fn builtin(zpk: ZonePinKey) -> Self {
        Self::from_toml(fixtures::BUILTIN, zpk).expect("built-in test cards are valid")
    }

    /// Cards from fixtures text in the `test_cards.toml` format.
    pub fn from_toml(text: &str, zpk: ZonePinKey) -> Result<Self, super::FixtureError> {
        let fixtures = fixtures::parse(text)?;
        let by_pan = fixtures
            .cards
            .iter()
            .enumerate()
            .map(|(i, c)| (c.pan.expose().to_owned(), i))
            .collect();
        let available = fixtures
            .cards
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.available_fen))
            .collect();
        Ok(Self {
            fixtures,
            by_pan,
            zpk,
            link_zpk: None,
            clock: Arc::new(SystemClock),
            latency: Latency::default(),
            state: Mutex::new(State {
                available,
                ..State::default()
            }),
        })
    }

    /// The cards file named by `bank.stub_cards`, or the built-in table
    /// when the path is empty.
    pub fn load(stub_cards: &Path, zpk: ZonePinKey) -> anyhow::Result<Self> {
        if stub_cards.as_os_str().is_empty() {
            return Ok(Self::builtin(zpk));
        }
        let text = std::fs::read_to_string(stub_cards)
            .with_context(|| format!("reading test cards {}", stub_cards.display()))?;
        Self::from_toml(&text, zpk).with_context(|| format!("test cards {}", stub_cards.display()))
    }

    /// The issuer with `clock` instead of the wall clock (tests cross
    /// midnight in Shanghai with it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The issuer with other delays for the slow and silent cards.
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Takes the whole issuer off the network (every call gets
    /// `Unavailable`) or back, for outage tests.
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    /// The card's balance or open credit now, in fen.
    pub fn available_fen(&self, card: &CardNumber) -> Option<i64> {
        let i = *self.by_pan.get(card.expose())?;
        self.lock().available.get(&i).copied()
    }

    /// The name of the bank that issued `card`, by BIN.
    pub fn bank_name(&self, card: &CardNumber) -> Option<&str> {
        fixtures::bank_for(&self.fixtures.banks, card.expose()).map(|b| b.name.as_str())
    }

    /// Every test card as the issuer sees it now (`voicepay bank cards`).
    pub fn cards(&self) -> Vec<CardState> {
        let today = shanghai_day(self.clock.now());
        let st = self.lock();
        self.fixtures
            .cards
            .iter()
            .enumerate()
            .map(|(i, c)| CardState {
                card: c.pan.masked(),
                bank: fixtures::bank_for(&self.fixtures.banks, c.pan.expose())
                    .map(|b| b.name.clone())
                    .unwrap_or_default(),
                kind: c.kind.as_str(),
                available_fen: st.available.get(&i).copied().unwrap_or(c.available_fen),
                wrong_pins_today: match st.pin_failures.get(&i) {
                    Some(&(day, n)) if day == today => n,
                    _ => 0,
                },
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn fixtures_for_tests(&self) -> &Fixtures {
        &self.fixtures
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IssuerLink for StubIssuer {
    // Decided (and recorded) at the first poll, so a caller that gives up
    // while the answer is "on the wire" still finds the attempt processed
    // by `query`, and so does a daemon restarted meanwhile.
    async fn authorize(&self, req: AuthRequest) -> Result<AuthResponse, IssuerError> {
        let (reply, barrier) = self.decide(&req);
        match reply {
            Reply::Now(answer) => durable(barrier, answer).await,
            Reply::After(delay, answer) => {
                let answer = durable(barrier, answer).await;
                tokio::time::sleep(delay).await;
                answer
            }
        }
    }

    fn query(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<AuthResponse>, IssuerError>> + Send {
        let st = self.lock();
        let answer = if st.offline {
            Err(IssuerError::Unavailable)
        } else {
            Ok(st.answers.get(idempotency_key).map(|r| r.response.clone()))
        };
        // The answer read may be one whose line is still being synced.
        let barrier = st.barrier();
        drop(st);
        durable(barrier, answer)
    }

    fn reverse(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<bool, IssuerError>> + Send {
        let mut st = self.lock();
        let answer = if st.offline {
            Err(IssuerError::Unavailable)
        } else if reversible(&st, idempotency_key).is_none() {
            Ok(false)
        } else {
            let line = Line::Reverse {
                key: idempotency_key.to_owned(),
            };
            match st.journal.as_mut().map(|j| j.write(&line)) {
                Some(Err(e)) => {
                    tracing::error!(key = %idempotency_key, error = %e, "stub issuer cannot write its state");
                    Err(IssuerError::Timeout)
                }
                _ => {
                    reverse_in_memory(&mut st, idempotency_key);
                    tracing::info!(key = %idempotency_key, "stub issuer reversed a payment");
                    Ok(true)
                }
            }
        };
        let barrier = st.barrier();
        drop(st);
        durable(barrier, answer)
    }

    fn refund(
        &self,
        req: RefundRequest,
    ) -> impl Future<Output = Result<AuthResponse, IssuerError>> + Send {
        let (answer, barrier) = self.decide_refund(&req);
        durable(barrier, answer)
    }
}
