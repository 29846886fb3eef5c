//! What a call is given before it starts: the operator's timing and retry
//! limits, and the order behind the call.

use crate::domain::{CardKind, Language, YearMonth};
use std::time::Duration;

/// Timing and retry limits for a call; from the daemon's config so operators
/// can tune them to their callers without a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrConfig {
    /// How long a caller may wait after a prompt ends before the first digit.
    pub first_digit_timeout: Duration,
    /// How long a caller may pause between two digits of one entry.
    pub inter_digit_timeout: Duration,
    /// Failed attempts (invalid input or a timeout) allowed per step before
    /// the call ends with `input_timeout`.
    pub attempts_per_step: u8,
    /// The longest a call may last from `Start`; it then ends like a timeout,
    /// so a caller who never finishes cannot hold a line forever.
    pub max_call: Duration,
    /// Secrets the caller may submit in one call (DESIGN.md: 3 tries per
    /// call); the bank's own count can only lower it.
    pub secret_tries: u8,
    /// The longest the closing prompt may take before we hang up anyway, in
    /// case its `PlaybackFinished` never arrives.
    pub final_prompt_limit: Duration,
    /// After a wrong key at a single-key menu (the confirmation), further
    /// keys each less than this after the one before are the same entry
    /// (a burst, e.g. a PIN keyed too early): discarded, no further failed
    /// attempt. A key after a longer pause is a fresh answer. Zero: every
    /// key is an answer of its own.
    pub burst_gap: Duration,
}

impl Default for IvrConfig {
    fn default() -> Self {
        Self {
            first_digit_timeout: Duration::from_secs(10),
            inter_digit_timeout: Duration::from_secs(5),
            attempts_per_step: 3,
            max_call: Duration::from_secs(180),
            secret_tries: 3,
            final_prompt_limit: Duration::from_secs(30),
            burst_gap: Duration::from_millis(1500),
        }
    }
}

/// What the IVR needs to know about the order behind the call. Nothing here
/// is secret: the card appears only as its last four digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The order's prompt language.
    pub language: Language,
    /// The amount read in the confirmation, in fen.
    pub amount_fen: i64,
    /// The card's last four digits, read in the confirmation.
    pub card_last4: String,
    /// Debit asks for the PIN, credit for expiry and CVN2. An unknown BIN is
    /// treated as debit: UnionPay cards outside the BIN table are verified by
    /// PIN, and the bank refuses a wrong kind with a result code.
    pub card_kind: CardKind,
    /// The phone is bound to the card (bound payment): the order carried no
    /// card number, so the confirmation's last four digits are the only sign
    /// of which card pays. The flow is otherwise the same.
    pub bound: bool,
    /// The current month, to refuse an expiry in the past without a clock.
    pub today: YearMonth,
}
