//! How the stub decides a new attempt (see the order of checks in the
//! module documentation of `stub`), and when its answer leaves.

use super::state::{Effects, State};
use super::StubIssuer;
use crate::bank::fixtures::{Behaviour, Status, TestCard};
use crate::bank::journal::Barrier;
use crate::bank::{
    shanghai_day, AuthRequest, AuthResponse, Decision, IssuerError, Secret, PIN_TRIES_PER_DAY,
    SINGLE_PAYMENT_LIMIT_FEN,
};
use crate::domain::CardKind;
use crate::domain::ResultCode;
use std::time::Duration;
use time::OffsetDateTime;

/// What `authorize` does after deciding, outside the lock.
pub(super) enum Reply {
    Now(Result<AuthResponse, IssuerError>),
    After(Duration, Result<AuthResponse, IssuerError>),
}

impl StubIssuer {
    /// Decides (and journals) the answer to `req`, with the barrier it
    /// must pass before it leaves.
    pub(super) fn decide(&self, req: &AuthRequest) -> (Reply, Option<Barrier>) {
        let mut st = self.lock();
        let reply = self.decide_locked(&mut st, req);
        (reply, st.barrier())
    }

    fn decide_locked(&self, st: &mut State, req: &AuthRequest) -> Reply {
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
                response: AuthResponse::new(Decision::Declined(ResultCode::InvalidCard)),
                wrong_pins: None,
                refund_of: None,
            };
            return Reply::Now(self.commit(st, &req.idempotency_key, effects));
        };
        let card = &self.fixtures.cards[index];
        if card.behaviour == Behaviour::Unavailable {
            // the switch answers for an issuer that is down: nothing recorded
            let response = AuthResponse::new(Decision::Declined(ResultCode::IssuerUnavailable));
            return Reply::Now(Ok(response));
        }
        let now = self.clock.now();
        let effects = self.evaluate(st, index, card, req, now);
        // Recorded (on disk first, when durable) before any answer leaves.
        let response = match self.commit(st, &req.idempotency_key, effects) {
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
            response: AuthResponse::new(Decision::Declined(CardRestricted)),
            wrong_pins: None,
            refund_of: None,
        };
        let decided = |mut e: Effects, outcome| {
            e.response = AuthResponse::new(outcome);
            e
        };
        if card.status == Status::Restricted {
            return decided(effects, Decision::Declined(CardRestricted));
        }
        // The cardholder first: a call whose ID does not match learns
        // nothing about the secret and never counts against the card, so a
        // stranger holding only the card number cannot lock it.
        if req.id_number != card.holder_id {
            return decided(effects, Decision::Declined(IdMismatch));
        }
        let today = shanghai_day(now);
        let failures = match st.pin_failures.get(&index) {
            Some(&(day, n)) if day == today => n,
            _ => 0,
        };
        if failures >= PIN_TRIES_PER_DAY {
            return decided(effects, Decision::Declined(PinTriesExceeded));
        }
        if !self.secret_right(card, &req.secret) {
            let failures = failures + 1;
            effects.wrong_pins = Some((today, failures));
            let outcome = if failures >= PIN_TRIES_PER_DAY {
                Decision::Declined(PinTriesExceeded)
            } else {
                Decision::WrongSecret {
                    tries_left: Some(PIN_TRIES_PER_DAY - failures),
                }
            };
            return decided(effects, outcome);
        }
        if card.status == Status::Expired {
            return decided(effects, Decision::Declined(CardExpired));
        }
        let amount = req.amount.fen();
        if amount > SINGLE_PAYMENT_LIMIT_FEN {
            return decided(effects, Decision::Declined(OverLimit));
        }
        let available = st
            .available
            .get(&index)
            .copied()
            .unwrap_or(card.available_fen);
        if available < amount {
            return decided(effects, Decision::Declined(InsufficientFunds));
        }
        let auth_code = format!("{:06}", st.auth_codes.wrapping_add(1) % 1_000_000);
        decided(effects, Decision::Approved { auth_code })
    }

    /// Whether the secret is the card's: the PIN of a debit card, expiry and
    /// CVN2 of a credit card. A block that does not decipher (wrong key or
    /// PAN, tampered) or the wrong kind of secret is wrong: fail closed.
    fn secret_right(&self, card: &TestCard, secret: &Secret) -> bool {
        match (card.kind, secret) {
            (CardKind::Debit, Secret::PinBlock(block)) => block
                .decipher(card.pan.expose(), &self.zpk)
                .is_ok_and(|pin| card.secret_matches(&pin)),
            (CardKind::Debit, Secret::PinBlock0(block)) => {
                self.link_zpk.as_ref().is_some_and(|zpk| {
                    block
                        .decipher(card.pan.expose(), zpk)
                        .is_ok_and(|pin| card.secret_matches(&pin))
                })
            }
            (CardKind::Credit, Secret::Card { expiry, cvn2 }) => {
                let mut both = zeroize::Zeroizing::new([0u8; 7]);
                both[..4].copy_from_slice(expiry.expose());
                both[4..].copy_from_slice(cvn2.expose());
                card.secret_matches(&*both)
            }
            _ => false,
        }
    }
}
