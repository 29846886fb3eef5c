//! The interface between a call and the bank: the IVR hands over the sealed
//! secret, the matcher answers with the bank's [`Outcome`].
//!
//! The daemon's implementation is `crate::matcher::BankMatcher` (order
//! window, PIN block, bank adapter, day-wide PIN-try limit, binding); the
//! flows only see this trait, so unit tests of the runner use a fake.

use crate::ivr::{Outcome, Verification};
use std::future::Future;

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
