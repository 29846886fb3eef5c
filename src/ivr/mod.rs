//! The IVR for one payment call, as a pure state machine: `step(event, now)`
//! returns the actions to take. It never touches a socket, a clock or a
//! database (STYLE.md rule 2), so every prompt, timeout, retry and barge-in
//! is unit-tested with a fake clock; the runner turns the actions into ARI
//! calls and feeds ARI events and fired timers back in.
//!
//! The call: welcome and confirmation (amount, card's last four; 1 confirms,
//! 2 cancels), then the secret (a 6-digit PIN for a debit card, expiry MMYY
//! and CVN2 for a credit card), then `please-wait` while the matcher asks
//! the bank, then the result. Digits barge in on prompts and count; digit
//! timers run only while no prompt plays; each step allows
//! [`IvrConfig::attempts_per_step`] failed attempts.
//!
//! This file holds the machine's state; the other files follow the call:
//! `config` ([`IvrConfig`], [`CallInfo`]), `machine` (building, `step` and
//! the routing of each event), `screen` (listening for an answering
//! machine before a callback's first prompt), `confirm` (the confirmation), `entry` (the
//! secret, digit by digit), `retry` (failed attempts), `closing` (the
//! outcome and its closing prompt), and the `prompt` and `timers` they
//! share; `event` is the contract with the runner. `order_code` is the
//! gate an inbound caller passes before any order is spoken of; `repeat`
//! tells a key press from the same press reported twice, before any stage
//! sees a key.

#![warn(missing_docs)]

mod closing;
mod config;
mod confirm;
mod digits;
mod entry;
mod event;
mod machine;
pub mod order_code;
mod progress;
mod prompt;
pub mod repeat;
mod resume;
mod retry;
mod screen;
pub mod speech;
#[cfg(test)]
mod tests;
mod timers;

pub use config::{CallInfo, IvrConfig};
pub use event::{Action, CallOutcome, Event, TimerId, Verdict};
pub use progress::{Progress, Step};
pub use resume::Resume;
pub use screen::MachineScreen;

use crate::domain::Expiry;
use digits::DigitBuf;
use entry::Field;
use screen::Screen;
use std::time::Duration;

// What tests.rs reads through `use super::*` besides the items above.
#[cfg(test)]
use {
    crate::domain::{CardKind, Language, ResultCode},
    closing::fail_prompt,
    speech::sound,
};

/// An IVR for the unit tests of its parts (progress, resume): an English
/// call for ¥1.00 on a `kind` card ending 0017, today November 2026.
#[cfg(test)]
fn test_ivr(kind: CardKind) -> Ivr {
    Ivr::new(
        IvrConfig::default(),
        CallInfo {
            language: Language::En,
            amount_fen: 100,
            card_last4: "0017".into(),
            card_kind: kind,
            bound: false,
            today: crate::domain::YearMonth {
                year: 2026,
                month: 11,
            },
        },
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
    /// A callback listens for an answering machine; nothing plays yet.
    Screening,
    /// Waiting for 1 (confirm) or 2 (cancel).
    Confirm,
    Entry(Field),
    /// The secret is with the matcher.
    Verifying,
    /// The outcome is reported; the closing prompt plays, then we hang up.
    Ending {
        playback_id: String,
    },
    Done,
}

/// Which digit timer is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    FirstDigit,
    InterDigit,
}

/// Our playback that has not finished yet.
#[derive(Debug)]
struct Prompt {
    id: String,
    /// We already asked for it to stop.
    stopping: bool,
}

/// The IVR of one call. Its `Debug` shows the phase and counters, never a
/// keyed digit; buffers are wiped on clear and on drop.
#[derive(Debug)]
pub struct Ivr {
    config: IvrConfig,
    call: CallInfo,
    phase: Phase,
    /// Failed attempts in the current step.
    attempts: u8,
    /// Secrets sent to the matcher in this call.
    submitted: u8,
    buf: DigitBuf,
    /// A keyed, valid expiry waiting for its CVN2.
    expiry: Option<Expiry>,
    prompt: Option<Prompt>,
    playbacks: u32,
    timers: u64,
    input_timer: Option<(TimerId, Wait)>,
    max_timer: Option<TimerId>,
    final_timer: Option<TimerId>,
    started_at: Option<Duration>,
    /// The maximum call length has passed.
    expired: bool,
    /// Answering-machine screening (callbacks).
    screen: Screen,
    finished: bool,
    /// The issuer's count of secrets left after a wrong one.
    bank_tries_left: Option<u8>,
    /// Where a resumed call starts ([`Ivr::resumed`]).
    resume: Option<Resume>,
    /// When the last key of a wrong confirmation entry came (`confirm`):
    /// keys within [`IvrConfig::burst_gap`] of it belong to that entry.
    /// A time, never the key.
    burst_last: Option<Duration>,
}
