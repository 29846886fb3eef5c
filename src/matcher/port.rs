//! The matcher's port: what the call code calls. The IVR hands over the
//! secret with the identity of the call it was keyed on; the matcher
//! answers with a [`Verdict`]: the issuer's decision or its own refusal.
//!
//! The daemon's implementation is [`BankMatcher`](super::BankMatcher) (the
//! call belongs to the order, order window, PIN block, issuer link, day-wide
//! wrong-secret limits per card and per phone, binding); the flows only see
//! this trait, so unit tests of the runner use a fake.

use crate::domain::{Mode, Phone, Verification};
use crate::ivr::Verdict;
use std::future::Future;

/// How a call came to pay its order: what the matcher checks the call
/// against before any secret of it goes to the bank.
#[derive(Clone, PartialEq, Eq)]
pub enum Via {
    /// Our own originate for the order (callback): its channel must be one
    /// we placed for that order.
    Callback,
    /// A call centre's live call that presented this one-time code
    /// (transfer): the code must be the order's.
    Transfer {
        /// As presented in `Stasis(app, transfer, <code>)`.
        code: String,
    },
    /// A cardholder who dialled the access number (inbound): the caller ID
    /// must be the order's phone.
    Inbound {
        /// The mobile number the caller ID named, read once by the inbound
        /// flow with [`CallerNumber`](crate::domain::CallerNumber) (a
        /// trunk's `0`, `+86`, `0086` or `86` removed).
        caller: Phone,
    },
    /// A caller at the access number whose caller ID names no mobile
    /// (withheld, a landline) and who keyed the order's code (inbound):
    /// the code identified the order, whatever the caller ID, so only the
    /// call's claim on the order is checked.
    InboundByCode,
    /// The cardholder's channel of an assisted call that presented this
    /// one-time code (`Stasis(app, assisted, <code>, cardholder)`): the
    /// code must be the order's.
    Assisted {
        /// As presented in the Stasis arguments.
        code: String,
    },
}

impl Via {
    /// The order `mode` this kind of call pays.
    pub fn mode(&self) -> Mode {
        match self {
            Via::Callback => Mode::Callback,
            Via::Transfer { .. } => Mode::Transfer,
            Via::Inbound { .. } | Via::InboundByCode => Mode::Inbound,
            Via::Assisted { .. } => Mode::Assisted,
        }
    }
}

/// Shows the kind of call only: the transfer code is a bearer token and the
/// caller ID a phone number.
impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode().as_str())
    }
}

/// The call a verification was keyed on.
#[derive(Debug, Clone, Copy)]
pub struct CallRef<'a> {
    /// The ARI channel the digits came from.
    pub channel_id: &'a str,
    /// How the call reached the order.
    pub via: &'a Via,
}

/// Joins an order (channel 1) with the secret keyed on the phone (channel
/// 2) and asks the issuer. Implementations must never log, store or echo
/// the secret; they drop it (zeroizing) as soon as the request is built.
///
/// Who moves the order: the matcher alone. It moves it `in_call` →
/// `authorizing` with one conditional update (the exactly-once guard: an
/// order cancelled or expired meanwhile, or already with the issuer for
/// another verification, never gets a second authorization), then settles
/// it (`succeeded`, back to `in_call` after a wrong secret, `failed` with
/// the bank's code) or, when the bank's answer is unknown, leaves it in
/// `authorizing` for recovery by query. The call code never moves an order
/// into or out of `authorizing`.
///
/// `call` must belong to the order (a channel placed for it, its transfer
/// code, its phone as caller ID or, without one, its order code keyed);
/// otherwise the matcher refuses with
/// `order_expired` without asking the issuer and leaves the order as it
/// was.
pub trait Matcher: Send + Sync {
    /// Verifies the secret for the order and returns the bank's answer.
    /// Called at most once per keyed secret; the call's IVR limits how many.
    fn verify(
        &self,
        order_id: &str,
        call: CallRef<'_>,
        verification: Verification,
    ) -> impl Future<Output = Verdict> + Send;
}
