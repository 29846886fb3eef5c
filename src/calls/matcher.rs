//! The interface between a call and the bank: the IVR hands over the sealed
//! secret, the matcher answers with the bank's [`Outcome`].
//!
//! [`PlaceholderMatcher`] stands in until the bank issue lands. It is NOT a
//! bank: it approves one fixed test PIN and one fixed expiry + CVN2 for
//! every order. The flows call it only through [`Matcher`], the interface the
//! real matcher (order window, PIN block, bank adapter, day-wide PIN-try
//! limit, binding) implements, so swapping it changes no flow code.

use crate::domain::{OrderStatus, ResultCode};
use crate::ivr::{Outcome, Verification};
use crate::store::{now_ms, Store, Transition};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// Joins an order (channel 1) with the secret keyed on the phone (channel
/// 2) and asks the issuer. Implementations must never log, store or echo
/// the secret; they drop it (zeroizing) as soon as the request is built.
///
/// Who moves the order: the call runner moves it `in_call` → `authorizing`
/// (a conditional move: the exactly-once guard, and an order cancelled or
/// expired meanwhile never gets here) and then calls `verify`; the matcher
/// settles it out of `authorizing` (`succeeded`, back to `in_call` after a
/// wrong secret, `failed` with the bank's code) or, when the bank's answer
/// is unknown, leaves it in `authorizing` for recovery by query. The runner
/// never moves an order out of `authorizing`. A caller that did not claim
/// the order first may still call `verify` on an `in_call` order: the
/// matcher then makes the move itself.
pub trait Matcher: Send + Sync {
    /// Verifies the secret for the order and returns the bank's answer.
    /// Called at most once per keyed secret; the call's IVR limits how many.
    fn verify(
        &self,
        order_id: &str,
        verification: Verification,
    ) -> impl Future<Output = Outcome> + Send;
}

/// The lab's test PIN, approved for every debit order.
const TEST_PIN: &[u8] = b"805137";
/// The lab's test expiry (MMYY) and CVN2, approved for every credit order.
const TEST_EXPIRY: &[u8] = b"1230";
const TEST_CVN2: &[u8] = b"123";

/// Placeholder until the bank adapter exists (see the module docs):
/// approves PIN `805137`, or expiry `1230` with CVN2 `123`; anything else is
/// [`Outcome::WrongSecret`] with the tries left out of [`TRIES`], counted
/// per order in memory. Moves the order like the real matcher does.
pub struct PlaceholderMatcher {
    store: Store,
    secrets: TestSecrets,
}

/// Wrong secrets allowed per order (the per-call limit of DESIGN.md).
pub const TRIES: u8 = 3;

/// The placeholder's whole "bank": the fixed test secrets and a per-order
/// count of wrong ones.
#[derive(Debug, Default)]
struct TestSecrets {
    wrong: Mutex<HashMap<String, u8>>,
}

impl PlaceholderMatcher {
    /// A matcher that moves orders in `store`, with no tries counted yet.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            secrets: TestSecrets::default(),
        }
    }

    async fn move_order(&self, order_id: &str, t: Transition<'_>) -> bool {
        match self.store.transition(order_id, t, now_ms()).await {
            Ok(moved) => moved,
            Err(e) => {
                tracing::error!(order = %order_id, error = %e, "cannot move the order");
                false
            }
        }
    }

    /// Whether the order is in `authorizing` (claimed by the runner).
    async fn authorizing(&self, order_id: &str) -> bool {
        matches!(
            self.store.order(order_id).await,
            Ok(Some(o)) if o.status() == OrderStatus::Authorizing
        )
    }

    /// Why an order is no longer payable: its own result code if it has one.
    async fn stopped_reason(&self, order_id: &str) -> ResultCode {
        match self.store.order(order_id).await {
            Ok(Some(o)) => o
                .result_code
                .as_deref()
                .and_then(ResultCode::parse)
                .unwrap_or(ResultCode::OrderExpired),
            _ => ResultCode::OrderExpired,
        }
    }
}

impl TestSecrets {
    fn decide(&self, order_id: &str, verification: &Verification) -> Outcome {
        let right = match verification {
            Verification::Pin(pin) => same(pin.expose(), TEST_PIN),
            Verification::Card { expiry, cvn2 } => {
                // Both compared, whatever the first says: no early exit.
                let e = same(expiry.expose(), TEST_EXPIRY);
                let c = same(cvn2.expose(), TEST_CVN2);
                e & c
            }
        };
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        if right {
            wrong.remove(order_id);
            return Outcome::Approved;
        }
        let n = wrong.entry(order_id.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let tries_left = TRIES.saturating_sub(*n);
        if tries_left == 0 {
            wrong.remove(order_id);
        }
        Outcome::WrongSecret { tries_left }
    }
}

impl Matcher for PlaceholderMatcher {
    async fn verify(&self, order_id: &str, verification: Verification) -> Outcome {
        let to_bank = Transition {
            from: OrderStatus::InCall,
            to: OrderStatus::Authorizing,
            result: None,
            detail: Some("secret submitted"),
        };
        if !self.move_order(order_id, to_bank).await && !self.authorizing(order_id).await {
            drop(verification);
            return Outcome::Failed(self.stopped_reason(order_id).await);
        }
        let outcome = self.secrets.decide(order_id, &verification);
        // Wipes the digits before anything else happens.
        drop(verification);
        tracing::info!(order = %order_id, ?outcome, "placeholder matcher answered");
        let (to, result, detail) = match outcome {
            Outcome::Approved => (OrderStatus::Succeeded, Some(ResultCode::Approved), None),
            Outcome::WrongSecret { .. } => (OrderStatus::InCall, None, Some("wrong secret")),
            Outcome::Failed(code) => (OrderStatus::Failed, Some(code), None),
        };
        let answered = Transition {
            from: OrderStatus::Authorizing,
            to,
            result,
            detail,
        };
        self.move_order(order_id, answered).await;
        outcome
    }
}

/// Constant-time comparison of two short digit strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::{Cvn2, Expiry, PinDigits};

    fn pin(s: &str) -> Verification {
        Verification::Pin(PinDigits::parse(s).unwrap())
    }

    #[test]
    fn approves_the_test_pin_and_counts_wrong_ones() {
        let m = TestSecrets::default();
        assert_eq!(
            m.decide("o1", &pin("111111")),
            Outcome::WrongSecret { tries_left: 2 }
        );
        assert_eq!(m.decide("o1", &pin("805137")), Outcome::Approved);
        for left in [2, 1, 0] {
            assert_eq!(
                m.decide("o2", &pin("000000")),
                Outcome::WrongSecret { tries_left: left }
            );
        }
    }

    #[test]
    fn approves_the_test_card_details() {
        let m = TestSecrets::default();
        let card = |e: &str, c: &str| Verification::Card {
            expiry: Expiry::parse(e).unwrap(),
            cvn2: Cvn2::parse(c).unwrap(),
        };
        assert_eq!(m.decide("o", &card("1230", "123")), Outcome::Approved);
        assert_eq!(
            m.decide("o", &card("1230", "124")),
            Outcome::WrongSecret { tries_left: 2 }
        );
    }
}
