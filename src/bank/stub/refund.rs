//! Refunds at the stub issuer. A refund names the purchase it gives money
//! back on by that purchase's idempotency key; its own key is the refund id,
//! whose first answer is final (a repeated refund returns it and moves no
//! money again, and `query(refund_id)` finds it).
//!
//! Decided in this order, every answer recorded (on disk first, when
//! durable) before it is given:
//! - the refund id was answered already: that answer;
//! - no approved, unreversed purchase under the key, or the refund's card
//!   is not the purchase's: declined `invalid_card` (61; ISO 8583 F39 14);
//! - more than what is left of the purchase (its amount less its approved,
//!   unreversed refunds): declined `over_limit` (33; F39 61);
//! - otherwise approved: the card's balance (debit) or open credit (credit)
//!   grows by the amount.
//!
//! A refund does not check the cardholder or a secret (the merchant asks
//! for it, not the cardholder) and answers at once whatever the card's
//! behaviour. `reverse(refund_id)` takes an approved refund's money back.

use super::state::{refundable, Effects, State};
use super::StubIssuer;
use crate::bank::journal::Barrier;
use crate::bank::{AuthResponse, Decision, IssuerError, RefundRequest};
use crate::domain::ResultCode;

impl StubIssuer {
    /// Decides (and journals) the refund's answer, with the barrier it must
    /// pass before it leaves.
    pub(super) fn decide_refund(
        &self,
        req: &RefundRequest,
    ) -> (Result<AuthResponse, IssuerError>, Option<Barrier>) {
        let mut st = self.lock();
        let answer = self.decide_refund_locked(&mut st, req);
        (answer, st.barrier())
    }

    fn decide_refund_locked(
        &self,
        st: &mut State,
        req: &RefundRequest,
    ) -> Result<AuthResponse, IssuerError> {
        if st.offline {
            return Err(IssuerError::Unavailable);
        }
        if let Some(done) = st.answers.get(&req.refund_id) {
            return Ok(done.response.clone());
        }
        let card = self.by_pan.get(req.card.expose()).copied();
        let amount_fen = req.amount.fen();
        let outcome = match refundable(st, &req.purchase_key) {
            Some((paid_with, _)) if paid_with.is_none() || paid_with != card => {
                Decision::Declined(ResultCode::InvalidCard)
            }
            None => Decision::Declined(ResultCode::InvalidCard),
            Some((_, left)) if amount_fen > left => Decision::Declined(ResultCode::OverLimit),
            Some(_) => Decision::Approved {
                auth_code: format!("{:06}", st.auth_codes.wrapping_add(1) % 1_000_000),
            },
        };
        let effects = Effects {
            card,
            amount_fen,
            response: AuthResponse::new(outcome),
            wrong_pins: None,
            refund_of: Some(req.purchase_key.clone()),
        };
        let response = self.commit(st, &req.refund_id, effects)?;
        tracing::info!(
            card = %req.card.masked(),
            refund = %req.refund_id,
            purchase = %req.purchase_key,
            amount = amount_fen,
            result = response.result_code().code(),
            "stub issuer answered a refund"
        );
        Ok(response)
    }
}
