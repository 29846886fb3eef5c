//! A test double for [`Matcher`]: fixed test secrets, no bank. Compiled for
//! unit tests only, so the daemon can never run with it.

use crate::domain::Verification;
use crate::domain::{OrderStatus, ResultCode};
use crate::ivr::Verdict;
use crate::matcher::{CallRef, Matcher};
use crate::store::{now_ms, Store, Transition};
use std::collections::HashMap;
use std::sync::Mutex;

/// The lab's test PIN, approved for every debit order.
const TEST_PIN: &[u8] = b"805137";
/// The lab's test expiry (MMYY) and CVN2, approved for every credit order.
const TEST_EXPIRY: &[u8] = b"1230";
const TEST_CVN2: &[u8] = b"123";

/// Test double (see the module docs):
/// approves PIN `805137`, or expiry `1230` with CVN2 `123`; anything else is
/// [`Verdict::WrongSecret`] with the tries left out of [`TRIES`], counted
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
    fn decide(&self, order_id: &str, verification: &Verification) -> Verdict {
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
            return Verdict::Approved;
        }
        let n = wrong.entry(order_id.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let tries_left = TRIES.saturating_sub(*n);
        if tries_left == 0 {
            wrong.remove(order_id);
        }
        Verdict::WrongSecret { tries_left }
    }
}

impl Matcher for PlaceholderMatcher {
    async fn verify(
        &self,
        order_id: &str,
        _call: CallRef<'_>,
        verification: Verification,
    ) -> Verdict {
        let to_bank = self
            .store
            .start_authorization(order_id, "secret submitted", now_ms())
            .await;
        if !matches!(to_bank, Ok(Some(_))) {
            drop(verification);
            return Verdict::Failed(self.stopped_reason(order_id).await);
        }
        let outcome = self.secrets.decide(order_id, &verification);
        // Wipes the digits before anything else happens.
        drop(verification);
        tracing::info!(order = %order_id, ?outcome, "placeholder matcher answered");
        let (to, result, detail) = match outcome {
            Verdict::Approved => (OrderStatus::Succeeded, Some(ResultCode::Approved), None),
            Verdict::WrongSecret { .. } => (OrderStatus::InCall, None, Some("wrong secret")),
            Verdict::Failed(code) => (OrderStatus::Failed, Some(code), None),
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
    use crate::domain::{Cvn2, Expiry, PinDigits};

    fn pin(s: &str) -> Verification {
        Verification::Pin(PinDigits::parse(s).unwrap())
    }

    #[test]
    fn approves_the_test_pin_and_counts_wrong_ones() {
        let m = TestSecrets::default();
        assert_eq!(
            m.decide("o1", &pin("111111")),
            Verdict::WrongSecret { tries_left: 2 }
        );
        assert_eq!(m.decide("o1", &pin("805137")), Verdict::Approved);
        for left in [2, 1, 0] {
            assert_eq!(
                m.decide("o2", &pin("000000")),
                Verdict::WrongSecret { tries_left: left }
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
        assert_eq!(m.decide("o", &card("1230", "123")), Verdict::Approved);
        assert_eq!(
            m.decide("o", &card("1230", "124")),
            Verdict::WrongSecret { tries_left: 2 }
        );
    }
}
