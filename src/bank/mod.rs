//! The bank adapter layer: what the matcher asks an issuer, and what it can
//! hear back. [`Issuer`] is the seam a real acquirer link (ISO 8583) will
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

mod fixtures;
mod stub;
#[cfg(test)]
mod tests;

pub use fixtures::FixtureError;
pub use stub::{Clock, Latency, StubIssuer};

use crate::crypto::PinBlock;
use crate::domain::{Amount, CardNumber, IdNumber, ResultCode};
use crate::ivr::{Cvn2, Expiry};
use std::future::Future;

/// Wrong PIN tries a card gets per Asia/Shanghai calendar day; the last one
/// locks PIN payments until the next day (respCode 67).
pub const PIN_TRIES_PER_DAY: u8 = 3;

/// Largest single payment the issuers accept, in fen (¥50,000.00); more is
/// `over_limit` (33).
pub const SINGLE_PAYMENT_LIMIT_FEN: i64 = 5_000_000;

/// An issuing bank, reached through some protocol. Async without boxing:
/// callers hold a concrete `I: Issuer` (generic, not `dyn`).
pub trait Issuer: Send + Sync {
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

    /// Undoes an approved payment. `Ok(true)` when this call returned the
    /// money; `Ok(false)` when there was nothing (left) to reverse.
    fn reverse(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<bool, IssuerError>> + Send;
}

/// One authorization: the order's half (card, cardholder ID, amount) joined
/// with the call's half (the secret). `Debug` shows masked numbers only.
#[derive(Debug)]
pub struct AuthRequest {
    /// One per attempt; see the module's contract.
    pub idempotency_key: String,
    pub amount: Amount,
    pub card: CardNumber,
    pub id_number: IdNumber,
    pub secret: Secret,
}

/// What the cardholder proved on the keypad.
#[derive(Debug)]
pub enum Secret {
    /// Debit card: the PIN, enciphered for this card with the zone PIN key.
    PinBlock(PinBlock),
    /// Credit card: the expiry (MMYY) and the CVN2, zeroized on drop.
    Card { expiry: Expiry, cvn2: Cvn2 },
}

/// The issuer's final answer to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResponse {
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Approved and debited.
    Approved { auth_code: String },
    /// The secret was wrong. `tries_left` is the card's remaining wrong-PIN
    /// allowance today (PIN only); `None` for expiry/CVN2.
    WrongSecret { tries_left: Option<u8> },
    /// Refused for good, with the reason.
    Declined(ResultCode),
}

impl AuthResponse {
    pub fn new(outcome: Outcome) -> Self {
        Self { outcome }
    }

    /// The result code the order records (with its respCode).
    pub fn result_code(&self) -> ResultCode {
        match self.outcome {
            Outcome::Approved { .. } => ResultCode::Approved,
            Outcome::WrongSecret { .. } => ResultCode::WrongSecret,
            Outcome::Declined(code) => code,
        }
    }

    pub fn is_approved(&self) -> bool {
        matches!(self.outcome, Outcome::Approved { .. })
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
