//! The bank adapter layer: what the matcher asks an issuer, and what it can
//! hear back. [`IssuerLink`] is the seam a real acquirer link (ISO 8583) will
//! implement; [`StubIssuer`] implements it with the test cards for the lab
//! and the tests.
//!
//! Contract every implementation keeps, and the matcher relies on:
//! - One idempotency key is one authorization attempt. Its first answer is
//!   final: a repeated `authorize` with the key returns that answer and never
//!   moves money again, and `query` returns it. A retry after a wrong secret
//!   is a new attempt, so it needs a new key (e.g. `{order id}:{attempt}`).
//! - `Err(IssuerError::Timeout)` means the outcome is unknown: the request may
//!   have been processed. Resolve it with `query`, never a second attempt
//!   under a new key.
//! - `Err(IssuerError::Unavailable)` means the request did not reach the
//!   issuer: nothing was processed.
//! - Requests and answers never carry a secret in clear: the PIN travels as a
//!   format 4 [`PinBlock`], and `Debug` of everything here is safe to log.

mod daemon;
mod fixtures;
pub mod iso8583;
mod journal;
mod stub;
#[cfg(test)]
mod tests;

pub use daemon::Bank;
pub use fixtures::FixtureError;
pub use stub::{CardState, Latency, StubIssuer};

use crate::crypto::PinBlock;
use crate::domain::{Amount, CardNumber, IdNumber, ResultCode};
use crate::domain::{Cvn2, Expiry};
use std::future::Future;
use std::sync::Arc;
use time::{Date, OffsetDateTime};

/// Wrong secret tries (PIN, or expiry and CVN2) a card gets per
/// Asia/Shanghai calendar day at the stub issuer; the last one locks the
/// card's payments until the next day (respCode 67). Tries whose cardholder
/// ID did not match are not counted.
pub const PIN_TRIES_PER_DAY: u8 = 3;

/// Largest single payment the issuers accept, in fen (¥50,000.00); more is
/// `over_limit` (33).
pub const SINGLE_PAYMENT_LIMIT_FEN: i64 = 5_000_000;

/// The Asia/Shanghai calendar day of `now`: the day the issuer's wrong-secret
/// allowance belongs to. China has one UTC+8 offset and no daylight saving.
pub fn shanghai_day(now: OffsetDateTime) -> Date {
    now.to_offset(time::macros::offset!(+8)).date()
}

/// The name of the bank that issued a card, by the BIN (leading digits) of
/// its full or masked number (`622200******0017`), from the built-in test
/// banks of `test_cards.toml`. `None` for a BIN outside that table; a real
/// deployment would read the acquirer's BIN file instead.
pub fn builtin_bank_name(card: &str) -> Option<&'static str> {
    static BUILTIN: std::sync::OnceLock<fixtures::Fixtures> = std::sync::OnceLock::new();
    let f = BUILTIN
        .get_or_init(|| fixtures::parse(fixtures::BUILTIN).expect("built-in test cards are valid"));
    fixtures::bank_for(&f.banks, card).map(|b| b.name.as_str())
}

/// The link to the card issuer: the in-process stub issuer, or an
/// acquirer's host (ISO 8583) that routes to the issuer. Async without
/// boxing: callers hold a concrete `I: IssuerLink` (generic, not `dyn`);
/// `Arc<I>` is one too, so a test can keep a handle on the stub it gave
/// the matcher.
pub trait IssuerLink: Send + Sync {
    /// Asks the issuer to approve and debit one payment.
    fn authorize(
        &self,
        req: AuthRequest,
    ) -> impl Future<Output = Result<AuthResponse, IssuerError>> + Send;

    /// The final answer recorded for `idempotency_key`, or `None` when the
    /// issuer never processed it.
    fn query(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<AuthResponse>, IssuerError>> + Send;

    /// Undoes the request sent under `idempotency_key` (a purchase attempt
    /// or a refund). `Ok(true)` when this call returned the money, or (for a
    /// link with store-and-forward reversals) queued the reversal that will;
    /// `Ok(false)` when there was nothing (left) to reverse.
    fn reverse(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<bool, IssuerError>> + Send;

    /// Returns part or all of an approved payment to the card. The refund's
    /// own key is `req.refund_id`: like an authorization's idempotency key,
    /// its first answer is final, and an unknown outcome
    /// (`Err(IssuerError::Timeout)`) is resolved as [`Self::unknown_outcome`]
    /// says, under that key. `Decision::WrongSecret` is never answered.
    fn refund(
        &self,
        req: RefundRequest,
    ) -> impl Future<Output = Result<AuthResponse, IssuerError>> + Send;

    /// How the matcher settles an attempt whose outcome is unknown (no
    /// answer in time, a link dropped with it in flight, a crash after
    /// sending it).
    fn unknown_outcome(&self) -> UnknownOutcome {
        UnknownOutcome::Query
    }
}

/// What the matcher does about an attempt (or refund) whose outcome is
/// unknown; a property of the issuer link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownOutcome {
    /// Ask for the key's final answer with [`IssuerLink::query`] and follow
    /// it (the stub issuer, which keeps every answer by key).
    Query,
    /// Undo it with [`IssuerLink::reverse`] and fail the order
    /// `issuer_unavailable`: ISO 8583 has no query, so the link sends a
    /// reversal advice (0420, repeated as 0421) until the issuer
    /// acknowledges it (0430). Never a second purchase.
    Reverse,
}

/// One refund of an approved payment (`POST /v1/orders/{id}/refunds`).
/// `Debug` shows the masked card only.
#[derive(Debug)]
pub struct RefundRequest {
    /// voicepay's refund id (`rfd_…`): the refund's key at the issuer.
    pub refund_id: String,
    /// The refunded order.
    pub order_id: String,
    /// The idempotency key of the order's approved attempt
    /// (`{order id}:{n}`): the purchase the refund names (F90 on ISO 8583).
    pub purchase_key: String,
    /// What to return, in fen: at most what is left of the payment.
    pub amount: Amount,
    /// The card paid with.
    pub card: CardNumber,
    /// The merchant's card acceptor id (ISO 8583 F42), when it has one.
    pub acceptor_id: Option<String>,
}

/// One authorization: the order's half (card, cardholder ID, amount) joined
/// with the call's half (the secret). `Debug` shows masked numbers only.
#[derive(Debug)]
pub struct AuthRequest {
    /// One per attempt; see the module's contract.
    pub idempotency_key: String,
    /// The order paid.
    pub order_id: String,
    /// The merchant's card acceptor id (ISO 8583 F42), when it has one.
    pub acceptor_id: Option<String>,
    /// What to debit.
    pub amount: Amount,
    /// The card from the order (or the binding).
    pub card: CardNumber,
    /// The cardholder ID number from the order; the issuer compares it with
    /// its records before the secret (`id_mismatch` 66, never counted
    /// against the card's daily tries).
    pub id_number: IdNumber,
    /// What the cardholder keyed.
    pub secret: Secret,
}

/// What the cardholder proved on the keypad.
#[derive(Debug)]
pub enum Secret {
    /// Debit card: the PIN, enciphered for this card with the zone PIN key.
    PinBlock(PinBlock),
    /// Debit card, as an ISO 8583 request carries it in F52: an ISO 9564
    /// format 0 block under the link's TDES zone PIN key
    /// (`bank.iso8583.zone_pin_key`). The stub issuer checks it only when it
    /// holds that key ([`StubIssuer::with_link_zpk`]); otherwise it is a
    /// wrong secret.
    PinBlock0(crate::crypto::PinBlock0),
    /// Credit card: zeroized on drop.
    Card {
        /// MMYY as keyed.
        expiry: Expiry,
        /// The 3 digits on the back.
        cvn2: Cvn2,
    },
}

/// The issuer's final answer to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResponse {
    /// What the issuer decided.
    pub outcome: Decision,
}

/// The issuer's decision on one attempt, in three kinds the matcher handles
/// differently: success, a retry in the same call, or a final failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved and debited.
    Approved {
        /// The issuer's approval code, for the merchant's records.
        auth_code: String,
    },
    /// The secret was wrong. `tries_left` is the card's remaining
    /// wrong-secret allowance today, when the issuer tells it (the stub
    /// does, for PINs and for expiry/CVN2 alike).
    WrongSecret { tries_left: Option<u8> },
    /// Refused for good, with the reason.
    Declined(ResultCode),
}

impl AuthResponse {
    /// A response with this outcome.
    pub fn new(outcome: Decision) -> Self {
        Self { outcome }
    }

    /// The result code the order records (with its respCode).
    pub fn result_code(&self) -> ResultCode {
        match self.outcome {
            Decision::Approved { .. } => ResultCode::Approved,
            Decision::WrongSecret { .. } => ResultCode::WrongSecret,
            Decision::Declined(code) => code,
        }
    }

    /// Whether money moved.
    pub fn is_approved(&self) -> bool {
        matches!(self.outcome, Decision::Approved { .. })
    }
}

/// The issuer could not give an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    /// No answer in time; the request may have been processed. Query it.
    #[error("the issuer did not answer in time")]
    Timeout,
    /// The request did not reach the issuer; nothing was processed.
    #[error("the issuer cannot be reached")]
    Unavailable,
}

impl<I: IssuerLink> IssuerLink for Arc<I> {
    fn authorize(
        &self,
        req: AuthRequest,
    ) -> impl Future<Output = Result<AuthResponse, IssuerError>> + Send {
        (**self).authorize(req)
    }

    fn query(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<AuthResponse>, IssuerError>> + Send {
        (**self).query(idempotency_key)
    }

    fn reverse(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<bool, IssuerError>> + Send {
        (**self).reverse(idempotency_key)
    }

    fn refund(
        &self,
        req: RefundRequest,
    ) -> impl Future<Output = Result<AuthResponse, IssuerError>> + Send {
        (**self).refund(req)
    }

    fn unknown_outcome(&self) -> UnknownOutcome {
        (**self).unknown_outcome()
    }
}
