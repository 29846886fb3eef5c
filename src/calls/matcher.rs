//! The interface between a call and the bank: the IVR hands over the sealed
//! secret, the matcher answers with the bank's [`Outcome`].
//!
//! [`PlaceholderMatcher`] stands in until the bank issue lands. It is NOT a
//! bank: it approves one fixed test PIN and one fixed expiry + CVN2 for
//! every order. The flows call it only through [`Matcher`], the interface the
//! real matcher (order window, PIN block, bank adapter, day-wide PIN-try
//! limit, binding) implements, so swapping it changes no flow code.

use crate::ivr::{Outcome, Verification};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// Joins an order (channel 1) with the secret keyed on the phone (channel
/// 2) and asks the issuer. Implementations must never log, store or echo
/// the secret; they drop it (zeroizing) as soon as the request is built.
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
/// [`Outcome::WrongSecret`] with the tries left out of
/// [`PlaceholderMatcher::TRIES`], counted per order in memory.
#[derive(Debug, Default)]
pub struct PlaceholderMatcher {
    wrong: Mutex<HashMap<String, u8>>,
}

impl PlaceholderMatcher {
    /// Wrong secrets allowed per order (the per-call limit of DESIGN.md).
    pub const TRIES: u8 = 3;

    /// A matcher with no tries counted yet.
    pub fn new() -> Self {
        Self::default()
    }

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
        let tries_left = Self::TRIES.saturating_sub(*n);
        if tries_left == 0 {
            wrong.remove(order_id);
        }
        Outcome::WrongSecret { tries_left }
    }
}

impl Matcher for PlaceholderMatcher {
    async fn verify(&self, order_id: &str, verification: Verification) -> Outcome {
        let outcome = self.decide(order_id, &verification);
        // `verification` drops here and wipes the digits.
        drop(verification);
        tracing::info!(order = %order_id, ?outcome, "placeholder matcher answered");
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

    #[tokio::test]
    async fn approves_the_test_pin_and_counts_wrong_ones() {
        let m = PlaceholderMatcher::new();
        assert_eq!(
            m.verify("o1", pin("111111")).await,
            Outcome::WrongSecret { tries_left: 2 }
        );
        assert_eq!(m.verify("o1", pin("805137")).await, Outcome::Approved);
        for left in [2, 1, 0] {
            assert_eq!(
                m.verify("o2", pin("000000")).await,
                Outcome::WrongSecret { tries_left: left }
            );
        }
    }

    #[tokio::test]
    async fn approves_the_test_card_details() {
        let m = PlaceholderMatcher::new();
        let card = |e: &str, c: &str| Verification::Card {
            expiry: Expiry::parse(e).unwrap(),
            cvn2: Cvn2::parse(c).unwrap(),
        };
        assert_eq!(m.verify("o", card("1230", "123")).await, Outcome::Approved);
        assert_eq!(
            m.verify("o", card("1230", "124")).await,
            Outcome::WrongSecret { tries_left: 2 }
        );
    }
}
