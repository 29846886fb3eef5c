//! What the stub issuer remembers: money left, wrong PINs per day, the final
//! answer per idempotency key (a purchase attempt's, or a refund's under its
//! refund id), what has been refunded of each purchase; and how an answer or
//! a reversal changes it. The same functions apply a new answer and replay a
//! journal line.

use crate::bank::journal::{Barrier, Journal};
use crate::bank::AuthResponse;
use std::collections::HashMap;
use time::Date;

#[derive(Default)]
pub(super) struct State {
    /// Money left per card, by index.
    pub(super) available: HashMap<usize, i64>,
    /// Wrong secrets (PIN, or expiry and CVN2) per card on one Shanghai day.
    pub(super) pin_failures: HashMap<usize, (Date, u8)>,
    /// The final answer per idempotency key.
    pub(super) answers: HashMap<String, Recorded>,
    /// Fen given back per purchase key by approved, unreversed refunds.
    pub(super) refunded: HashMap<String, i64>,
    pub(super) auth_codes: u32,
    pub(super) offline: bool,
    /// Where every change is written before it is answered; None: memory only.
    pub(super) journal: Option<Journal>,
}

impl State {
    /// What an answer given now must wait for: every journal line written
    /// so far on disk (group commit, see `journal.rs`); `None` in memory.
    pub(super) fn barrier(&self) -> Option<Barrier> {
        self.journal.as_ref().map(Journal::barrier)
    }
}

/// Waits for `barrier` (when durable), then gives `answer`; a journal that
/// failed to sync answers `Timeout` instead.
pub(super) async fn durable<T>(
    barrier: Option<Barrier>,
    answer: Result<T, crate::bank::IssuerError>,
) -> Result<T, crate::bank::IssuerError> {
    if let Some(b) = barrier {
        if let Err(e) = b.wait().await {
            tracing::error!(error = %e, "stub issuer: its answer is not durable");
            return Err(crate::bank::IssuerError::Timeout);
        }
    }
    answer
}

/// What one new answer changes, decided before anything changes: written
/// to the journal first, then applied to memory (and applied the same way
/// when the journal is replayed).
pub(super) struct Effects {
    pub(super) card: Option<usize>,
    pub(super) amount_fen: i64,
    pub(super) response: AuthResponse,
    /// The card's wrong-secret count for the day after this answer, when it
    /// counted one.
    pub(super) wrong_pins: Option<(Date, u8)>,
    /// For a refund: the purchase key it gives money back on.
    pub(super) refund_of: Option<String>,
}

pub(super) struct Recorded {
    /// `None` for a card not on file.
    pub(super) card: Option<usize>,
    pub(super) amount_fen: i64,
    pub(super) response: AuthResponse,
    pub(super) reversed: bool,
    /// For a refund: the purchase key it gave money back on.
    pub(super) refund_of: Option<String>,
}

/// Applies a committed answer to memory.
pub(super) fn apply(st: &mut State, key: &str, effects: Effects) {
    let Effects {
        card,
        amount_fen,
        response,
        wrong_pins,
        refund_of,
    } = effects;
    // A purchase takes money from the card; a refund gives it back.
    let signed = if refund_of.is_some() {
        -amount_fen
    } else {
        amount_fen
    };
    if let Some(index) = card {
        if response.is_approved() {
            *st.available.entry(index).or_default() -= signed;
        }
        if let Some(v) = wrong_pins {
            st.pin_failures.insert(index, v);
        }
    }
    if response.is_approved() {
        st.auth_codes = st.auth_codes.wrapping_add(1);
        if let Some(purchase) = &refund_of {
            *st.refunded.entry(purchase.clone()).or_default() += amount_fen;
        }
    }
    st.answers.insert(
        key.to_owned(),
        Recorded {
            card,
            amount_fen,
            response,
            reversed: false,
            refund_of,
        },
    );
}

/// What a reversal of `key` would move, if anything: (card, fen). For a
/// purchase, the fen not yet refunded go back to the card; for a refund, its
/// fen are taken from the card again.
pub(super) fn reversible(st: &State, key: &str) -> Option<(usize, i64)> {
    let r = st.answers.get(key)?;
    if !r.response.is_approved() || r.reversed {
        return None;
    }
    let fen = match r.refund_of {
        Some(_) => r.amount_fen,
        None => r.amount_fen - st.refunded.get(key).copied().unwrap_or(0),
    };
    r.card.filter(|_| fen > 0).map(|c| (c, fen))
}

/// Undoes `key`'s approved purchase (what was not refunded of it goes back
/// to the card) or approved refund (its money is taken back and the
/// purchase may be refunded again by as much); whether it did.
pub(super) fn reverse_in_memory(st: &mut State, key: &str) -> bool {
    let Some((card, fen)) = reversible(st, key) else {
        return false;
    };
    let Some(r) = st.answers.get_mut(key) else {
        return false;
    };
    r.reversed = true;
    match r.refund_of.clone() {
        Some(purchase) => {
            *st.available.entry(card).or_default() -= fen;
            *st.refunded.entry(purchase).or_default() -= fen;
        }
        None => *st.available.entry(card).or_default() += fen,
    }
    true
}

/// What is left to refund of purchase `key`, in fen, with the purchase's
/// card: `None` when `key` is no approved, unreversed purchase.
pub(super) fn refundable(st: &State, key: &str) -> Option<(Option<usize>, i64)> {
    let r = st.answers.get(key)?;
    if !r.response.is_approved() || r.reversed || r.refund_of.is_some() {
        return None;
    }
    Some((
        r.card,
        r.amount_fen - st.refunded.get(key).copied().unwrap_or(0),
    ))
}
