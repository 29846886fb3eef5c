//! The stub's state file: every new answer (purchase or refund) and reversal is written to the
//! journal before it is given, and a journal is replayed at start.

use super::state::{apply, reverse_in_memory, Effects, State};
use super::StubIssuer;
use crate::bank::journal::{self, Journal, Line, Recorded as Written};
use crate::bank::{AuthResponse, IssuerError};
use anyhow::Context;
use std::collections::HashMap;
use std::path::Path;
use time::Date;

impl StubIssuer {
    /// Makes a new answer final: written to the journal first (when
    /// durable), then in memory. The answer may leave only after the
    /// journal's [`barrier`](State::barrier) taken after this has passed. A
    /// journal that cannot be written answers `Timeout` (the line may or
    /// may not have reached the disk) and changes nothing in memory.
    pub(super) fn commit(
        &self,
        st: &mut State,
        key: &str,
        effects: Effects,
    ) -> Result<AuthResponse, IssuerError> {
        if let Some(journal) = st.journal.as_mut() {
            let card = effects.card.map(|i| self.fixtures.cards[i].reference());
            let outcome = Written::from_decision(&effects.response.outcome);
            let line = match &effects.refund_of {
                Some(purchase) => Line::Refund {
                    key: key.to_owned(),
                    purchase: purchase.clone(),
                    card,
                    amount_fen: effects.amount_fen,
                    outcome,
                },
                None => Line::Answer {
                    key: key.to_owned(),
                    card,
                    amount_fen: effects.amount_fen,
                    outcome,
                    wrong_pins: effects.wrong_pins.map(|(day, n)| (day.to_string(), n)),
                },
            };
            if let Err(e) = journal.write(&line) {
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
                        response: AuthResponse::new(outcome.to_decision().with_context(at)?),
                        wrong_pins,
                        refund_of: None,
                    };
                    apply(&mut st, key, effects);
                }
                Line::Refund {
                    key,
                    purchase,
                    card,
                    amount_fen,
                    outcome,
                } => {
                    if st.answers.contains_key(key) {
                        continue;
                    }
                    let effects = Effects {
                        card: card.as_ref().and_then(|r| by_ref.get(r).copied()),
                        amount_fen: *amount_fen,
                        response: AuthResponse::new(outcome.to_decision().with_context(at)?),
                        wrong_pins: None,
                        refund_of: Some(purchase.clone()),
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
