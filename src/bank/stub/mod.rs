//! The stub issuer: several test banks in one process, cards from a fixtures
//! table. It keeps the rules of a real issuer that the rest of voicepay must
//! handle: the first answer per idempotency key is final, wrong PINs are
//! counted per Asia/Shanghai calendar day, and some cards answer late, never,
//! or not at all (see `test_cards.toml`).
//!
//! State: in memory, and, with [`StubIssuer::with_state_file`] (what
//! `voicepay serve` does, `bank.stub_state`), in a journal on disk
//! (`journal.rs`): every answer is written and flushed to disk *before* it
//! is given, so a daemon killed while an answer is on its way (the slow
//! card's 5 s) finds the debit, the answer per key and the day's wrong PINs
//! again when it starts, and settles the order by query.
//!
//! Order of checks for a new attempt: card known (61), issuer up (03), card
//! not restricted (63), PIN not locked today (67), secret (65, or 67 on the
//! last try), cardholder ID (66), card not expired (73), single-payment limit
//! (33), funds (64); then debit and approve. Only wrong PINs count towards
//! the daily lock, and a right PIN does not reset it.

use super::fixtures::{self, Behaviour, Fixtures, Kind, Status, TestCard};
use super::journal::{self, Journal, Line, Recorded as Written};
use super::{
    shanghai_day, AuthRequest, AuthResponse, Issuer, IssuerError, Outcome, Secret,
    PIN_TRIES_PER_DAY, SINGLE_PAYMENT_LIMIT_FEN,
};
use crate::crypto::ZonePinKey;
use crate::domain::{CardNumber, ResultCode};
use anyhow::Context;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::{Date, OffsetDateTime};

/// The wall clock, injectable so tests can cross midnight in Shanghai.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

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
    /// Wrong PINs counted today (Asia/Shanghai); 3 locks PIN payments.
    pub wrong_pins_today: u8,
}

/// See the module documentation.
pub struct StubIssuer {
    fixtures: Fixtures,
    /// Index into `fixtures.cards` by card number.
    by_pan: HashMap<String, usize>,
    zpk: ZonePinKey,
    clock: Clock,
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

#[derive(Default)]
struct State {
    /// Money left per card, by index.
    available: HashMap<usize, i64>,
    /// Wrong PINs per card on one Shanghai day.
    pin_failures: HashMap<usize, (Date, u8)>,
    /// The final answer per idempotency key.
    answers: HashMap<String, Recorded>,
    auth_codes: u32,
    offline: bool,
    /// Where every change is written before it is answered; None: memory only.
    journal: Option<Journal>,
}

/// What one new answer changes, decided before anything changes: written
/// to the journal first, then applied to memory (and applied the same way
/// when the journal is replayed).
struct Effects {
    card: Option<usize>,
    amount_fen: i64,
    response: AuthResponse,
    /// The card's wrong-PIN count for the day after this answer, when it
    /// counted one.
    wrong_pins: Option<(Date, u8)>,
}

struct Recorded {
    /// `None` for a card not on file.
    card: Option<usize>,
    amount_fen: i64,
    response: AuthResponse,
    reversed: bool,
}

/// What `authorize` does after deciding, outside the lock.
enum Reply {
    Now(Result<AuthResponse, IssuerError>),
    After(Duration, Result<AuthResponse, IssuerError>),
}

impl StubIssuer {
    /// The built-in test cards (the table).
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
            clock: Arc::new(OffsetDateTime::now_utc),
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

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

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
        let today = shanghai_day((self.clock)());
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
                kind: match c.kind {
                    Kind::Debit => "debit",
                    Kind::Credit => "credit",
                },
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

    fn decide(&self, req: &AuthRequest) -> Reply {
        let mut st = self.lock();
        if st.offline {
            return Reply::Now(Err(IssuerError::Unavailable));
        }
        if let Some(done) = st.answers.get(&req.idempotency_key) {
            return Reply::Now(Ok(done.response.clone()));
        }
        let Some(&index) = self.by_pan.get(req.card.expose()) else {
            // unknown cards still get a final, recorded answer
            let effects = Effects {
                card: None,
                amount_fen: req.amount.fen(),
                response: AuthResponse::new(Outcome::Declined(ResultCode::InvalidCard)),
                wrong_pins: None,
            };
            return Reply::Now(self.commit(&mut st, &req.idempotency_key, effects));
        };
        let card = &self.fixtures.cards[index];
        if card.behaviour == Behaviour::Unavailable {
            // the switch answers for an issuer that is down: nothing recorded
            let response = AuthResponse::new(Outcome::Declined(ResultCode::IssuerUnavailable));
            return Reply::Now(Ok(response));
        }
        let now = (self.clock)();
        let effects = self.evaluate(&st, index, card, req, now);
        // Recorded (on disk first, when durable) before any answer leaves.
        let response = match self.commit(&mut st, &req.idempotency_key, effects) {
            Ok(r) => r,
            Err(e) => return Reply::Now(Err(e)),
        };
        tracing::info!(
            card = %req.card.masked(),
            bank = %card.bank,
            key = %req.idempotency_key,
            result = response.result_code().code(),
            "stub issuer answered"
        );
        match card.behaviour {
            Behaviour::Slow => Reply::After(self.latency.slow, Ok(response)),
            Behaviour::NoAnswer => Reply::After(self.latency.no_answer, Err(IssuerError::Timeout)),
            Behaviour::Normal | Behaviour::Unavailable => Reply::Now(Ok(response)),
        }
    }

    /// What a new attempt gets and changes; changes nothing itself.
    fn evaluate(
        &self,
        st: &State,
        index: usize,
        card: &TestCard,
        req: &AuthRequest,
        now: OffsetDateTime,
    ) -> Effects {
        use ResultCode::*;
        let mut effects = Effects {
            card: Some(index),
            amount_fen: req.amount.fen(),
            response: AuthResponse::new(Outcome::Declined(CardRestricted)),
            wrong_pins: None,
        };
        let decided = |mut e: Effects, outcome| {
            e.response = AuthResponse::new(outcome);
            e
        };
        if card.status == Status::Restricted {
            return decided(effects, Outcome::Declined(CardRestricted));
        }
        match (card.kind, &req.secret) {
            (Kind::Debit, Secret::PinBlock(block)) => {
                let today = shanghai_day(now);
                let failures = match st.pin_failures.get(&index) {
                    Some(&(day, n)) if day == today => n,
                    _ => 0,
                };
                if failures >= PIN_TRIES_PER_DAY {
                    return decided(effects, Outcome::Declined(PinTriesExceeded));
                }
                // a block that does not decipher (wrong key or PAN, tampered)
                // counts as a wrong PIN: fail closed
                let right = block
                    .decipher(card.pan.expose(), &self.zpk)
                    .is_ok_and(|pin| card.secret_matches(&pin));
                if !right {
                    let failures = failures + 1;
                    effects.wrong_pins = Some((today, failures));
                    let outcome = if failures >= PIN_TRIES_PER_DAY {
                        Outcome::Declined(PinTriesExceeded)
                    } else {
                        Outcome::WrongSecret {
                            tries_left: Some(PIN_TRIES_PER_DAY - failures),
                        }
                    };
                    return decided(effects, outcome);
                }
            }
            (Kind::Credit, Secret::Card { expiry, cvn2 }) => {
                let mut both = zeroize::Zeroizing::new([0u8; 7]);
                both[..4].copy_from_slice(expiry.expose());
                both[4..].copy_from_slice(cvn2.expose());
                if !card.secret_matches(&*both) {
                    return decided(effects, Outcome::WrongSecret { tries_left: None });
                }
            }
            // a PIN for a credit card or expiry+CVN2 for a debit card
            _ => return decided(effects, Outcome::WrongSecret { tries_left: None }),
        }
        if req.id_number != card.holder_id {
            return decided(effects, Outcome::Declined(IdMismatch));
        }
        if card.status == Status::Expired {
            return decided(effects, Outcome::Declined(CardExpired));
        }
        let amount = req.amount.fen();
        if amount > SINGLE_PAYMENT_LIMIT_FEN {
            return decided(effects, Outcome::Declined(OverLimit));
        }
        let available = st
            .available
            .get(&index)
            .copied()
            .unwrap_or(card.available_fen);
        if available < amount {
            return decided(effects, Outcome::Declined(InsufficientFunds));
        }
        let auth_code = format!("{:06}", st.auth_codes.wrapping_add(1) % 1_000_000);
        decided(effects, Outcome::Approved { auth_code })
    }

    /// Makes a new answer final: on disk first (when durable), then in
    /// memory. A journal that cannot be written answers `Timeout` (the line
    /// may or may not have reached the disk) and changes nothing in memory.
    fn commit(
        &self,
        st: &mut State,
        key: &str,
        effects: Effects,
    ) -> Result<AuthResponse, IssuerError> {
        if let Some(journal) = st.journal.as_mut() {
            let line = Line::Answer {
                key: key.to_owned(),
                card: effects.card.map(|i| self.fixtures.cards[i].reference()),
                amount_fen: effects.amount_fen,
                outcome: Written::from_outcome(&effects.response.outcome),
                wrong_pins: effects.wrong_pins.map(|(day, n)| (day.to_string(), n)),
            };
            if let Err(e) = journal.append(&line) {
                tracing::error!(key = %key, error = %e, "stub issuer cannot write its state");
                return Err(IssuerError::Timeout);
            }
        }
        let response = effects.response.clone();
        apply(st, key, effects);
        Ok(response)
    }

    /// Makes the stub durable: replays the journal at `path` (created when
    /// missing) over the fixtures' opening balances, then writes every
    /// later answer and reversal there before giving it. One process at a
    /// time may own a journal.
    pub fn with_state_file(self, path: &Path) -> anyhow::Result<Self> {
        let (journal, lines) = Journal::open(path).context("bank.stub_state")?;
        self.replay(&lines)
            .with_context(|| format!("replaying {}", path.display()))?;
        self.lock().journal = Some(journal);
        Ok(self)
    }

    /// The stub as the journal at `path` left it, without taking the
    /// journal over (it stays memory-only): what tests and tools use to see
    /// what a running or stopped daemon's issuer recorded.
    pub fn inspect_state_file(self, path: &Path) -> anyhow::Result<Self> {
        let lines = journal::read(path)?;
        self.replay(&lines)
            .with_context(|| format!("replaying {}", path.display()))?;
        Ok(self)
    }

    fn replay(&self, lines: &[Line]) -> anyhow::Result<()> {
        let by_ref: HashMap<String, usize> = self
            .fixtures
            .cards
            .iter()
            .enumerate()
            .map(|(i, c)| (c.reference(), i))
            .collect();
        let day_format = time::macros::format_description!("[year]-[month]-[day]");
        let mut st = self.lock();
        for (n, line) in lines.iter().enumerate() {
            let at = || format!("record {}", n + 1);
            match line {
                Line::Answer {
                    key,
                    card,
                    amount_fen,
                    outcome,
                    wrong_pins,
                } => {
                    if st.answers.contains_key(key) {
                        continue;
                    }
                    // a card no longer on file keeps its answers, not its money
                    let card = card.as_ref().and_then(|r| by_ref.get(r).copied());
                    let wrong_pins = match wrong_pins {
                        Some((day, tries)) => {
                            Some((Date::parse(day, day_format).with_context(at)?, *tries))
                        }
                        None => None,
                    };
                    let effects = Effects {
                        card,
                        amount_fen: *amount_fen,
                        response: AuthResponse::new(outcome.to_outcome().with_context(at)?),
                        wrong_pins,
                    };
                    apply(&mut st, key, effects);
                }
                Line::Reverse { key } => {
                    reverse_in_memory(&mut st, key);
                }
            }
        }
        Ok(())
    }
}

/// Applies a committed answer to memory.
fn apply(st: &mut State, key: &str, effects: Effects) {
    let Effects {
        card,
        amount_fen,
        response,
        wrong_pins,
    } = effects;
    if let Some(index) = card {
        if response.is_approved() {
            *st.available.entry(index).or_default() -= amount_fen;
        }
        if let Some(v) = wrong_pins {
            st.pin_failures.insert(index, v);
        }
    }
    if response.is_approved() {
        st.auth_codes = st.auth_codes.wrapping_add(1);
    }
    st.answers.insert(
        key.to_owned(),
        Recorded {
            card,
            amount_fen,
            response,
            reversed: false,
        },
    );
}

/// What a reversal of `key` would return: (card, fen), if anything.
fn reversible(st: &State, key: &str) -> Option<(usize, i64)> {
    match st.answers.get(key) {
        Some(r) if r.response.is_approved() && !r.reversed => r.card.map(|c| (c, r.amount_fen)),
        _ => None,
    }
}

/// Returns the money of `key`'s approved payment; whether it did.
fn reverse_in_memory(st: &mut State, key: &str) -> bool {
    let Some((card, fen)) = reversible(st, key) else {
        return false;
    };
    if let Some(r) = st.answers.get_mut(key) {
        r.reversed = true;
    }
    *st.available.entry(card).or_default() += fen;
    true
}

impl Issuer for StubIssuer {
    // Decided (and recorded) at the first poll, so a caller that gives up
    // while the answer is "on the wire" still finds the attempt processed
    // by `query`, and so does a daemon restarted meanwhile.
    async fn authorize(&self, req: AuthRequest) -> Result<AuthResponse, IssuerError> {
        match self.decide(&req) {
            Reply::Now(answer) => answer,
            Reply::After(delay, answer) => {
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
        drop(st);
        std::future::ready(answer)
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
            match st.journal.as_mut().map(|j| j.append(&line)) {
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
        drop(st);
        std::future::ready(answer)
    }
}
