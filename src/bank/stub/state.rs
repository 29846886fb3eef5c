//! What the stub issuer remembers: money left, wrong PINs per day, the final
//! answer per idempotency key; and how an answer or a reversal changes it.
//! The same functions apply a new answer and replay a journal line.

use crate::bank::journal::Journal;
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
    pub(super) auth_codes: u32,
    pub(super) offline: bool,
    /// Where every change is written before it is answered; None: memory only.
    pub(super) journal: Option<Journal>,
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
}

pub(super) struct Recorded {
    /// `None` for a card not on file.
    pub(super) card: Option<usize>,
    pub(super) amount_fen: i64,
    pub(super) response: AuthResponse,
    pub(super) reversed: bool,
}

/// Applies a committed answer to memory.
pub(super) fn apply(st: &mut State, key: &str, effects: Effects) {
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
pub(super) fn reversible(st: &State, key: &str) -> Option<(usize, i64)> {
    match st.answers.get(key) {
        Some(r) if r.response.is_approved() && !r.reversed => r.card.map(|c| (c, r.amount_fen)),
        _ => None,
    }
}

/// Returns the money of `key`'s approved payment; whether it did.
pub(super) fn reverse_in_memory(st: &mut State, key: &str) -> bool {
    let Some((card, fen)) = reversible(st, key) else {
        return false;
    };
    if let Some(r) = st.answers.get_mut(key) {
        r.reversed = true;
    }
    *st.available.entry(card).or_default() += fen;
    true
}
