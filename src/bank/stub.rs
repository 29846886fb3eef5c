//! The stub issuer: several test banks in one process, cards from a fixtures
//! table, state in memory. It keeps the rules of a real issuer that the rest
//! of voicepay must handle: the first answer per idempotency key is final,
//! wrong PINs are counted per Asia/Shanghai calendar day, and some cards
//! answer late, never, or not at all (see `test_cards.toml`).
//!
//! Order of checks for a new attempt: card known (61), issuer up (03), card
//! not restricted (63), PIN not locked today (67), secret (65, or 67 on the
//! last try), cardholder ID (66), card not expired (73), single-payment limit
//! (33), funds (64); then debit and approve. Only wrong PINs count towards
//! the daily lock, and a right PIN does not reset it.

use super::fixtures::{self, Behaviour, Fixtures, Kind, Status, TestCard};
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
            let response = AuthResponse::new(Outcome::Declined(ResultCode::InvalidCard));
            self.record(&mut st, req, None, &response);
            return Reply::Now(Ok(response));
        };
        let card = &self.fixtures.cards[index];
        if card.behaviour == Behaviour::Unavailable {
            // the switch answers for an issuer that is down: nothing recorded
            let response = AuthResponse::new(Outcome::Declined(ResultCode::IssuerUnavailable));
            return Reply::Now(Ok(response));
        }
        let now = (self.clock)();
        let outcome = self.evaluate(&mut st, index, card, req, now);
        let response = AuthResponse::new(outcome);
        self.record(&mut st, req, Some(index), &response);
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

    fn evaluate(
        &self,
        st: &mut State,
        index: usize,
        card: &TestCard,
        req: &AuthRequest,
        now: OffsetDateTime,
    ) -> Outcome {
        use ResultCode::*;
        if card.status == Status::Restricted {
            return Outcome::Declined(CardRestricted);
        }
        match (card.kind, &req.secret) {
            (Kind::Debit, Secret::PinBlock(block)) => {
                let today = shanghai_day(now);
                let failures = match st.pin_failures.get(&index) {
                    Some(&(day, n)) if day == today => n,
                    _ => 0,
                };
                if failures >= PIN_TRIES_PER_DAY {
                    return Outcome::Declined(PinTriesExceeded);
                }
                // a block that does not decipher (wrong key or PAN, tampered)
                // counts as a wrong PIN: fail closed
                let right = block
                    .decipher(card.pan.expose(), &self.zpk)
                    .is_ok_and(|pin| card.secret_matches(&pin));
                if !right {
                    let failures = failures + 1;
                    st.pin_failures.insert(index, (today, failures));
                    return if failures >= PIN_TRIES_PER_DAY {
                        Outcome::Declined(PinTriesExceeded)
                    } else {
                        Outcome::WrongSecret {
                            tries_left: Some(PIN_TRIES_PER_DAY - failures),
                        }
                    };
                }
            }
            (Kind::Credit, Secret::Card { expiry, cvn2 }) => {
                let mut both = zeroize::Zeroizing::new([0u8; 7]);
                both[..4].copy_from_slice(expiry.expose());
                both[4..].copy_from_slice(cvn2.expose());
                if !card.secret_matches(&*both) {
                    return Outcome::WrongSecret { tries_left: None };
                }
            }
            // a PIN for a credit card or expiry+CVN2 for a debit card
            _ => return Outcome::WrongSecret { tries_left: None },
        }
        if req.id_number != card.holder_id {
            return Outcome::Declined(IdMismatch);
        }
        if card.status == Status::Expired {
            return Outcome::Declined(CardExpired);
        }
        let amount = req.amount.fen();
        if amount > SINGLE_PAYMENT_LIMIT_FEN {
            return Outcome::Declined(OverLimit);
        }
        let available = st.available.entry(index).or_insert(card.available_fen);
        if *available < amount {
            return Outcome::Declined(InsufficientFunds);
        }
        *available -= amount;
        st.auth_codes += 1;
        Outcome::Approved {
            auth_code: format!("{:06}", st.auth_codes % 1_000_000),
        }
    }

    fn record(
        &self,
        st: &mut State,
        req: &AuthRequest,
        card: Option<usize>,
        response: &AuthResponse,
    ) {
        st.answers.insert(
            req.idempotency_key.clone(),
            Recorded {
                card,
                amount_fen: req.amount.fen(),
                response: response.clone(),
                reversed: false,
            },
        );
    }
}

impl Issuer for StubIssuer {
    // Decided at the first poll, so a caller that gives up while the answer
    // is "on the wire" still finds the attempt processed by `query`.
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
        } else {
            let returned = match st.answers.get_mut(idempotency_key) {
                Some(r) if r.response.is_approved() && !r.reversed => {
                    r.reversed = true;
                    r.card.map(|card| (card, r.amount_fen))
                }
                _ => None,
            };
            if let Some((card, fen)) = returned {
                *st.available.entry(card).or_default() += fen;
                tracing::info!(key = %idempotency_key, "stub issuer reversed a payment");
            }
            Ok(returned.is_some())
        };
        drop(st);
        std::future::ready(answer)
    }
}
