//! The confirmation step: the amount and the card's last four digits are
//! read back, and the caller presses 1 to go on or 2 to cancel.
//!
//! It is the IVR's one single-key menu (the secret and the order code are
//! fixed-length entries), so it is where a burst of keys lands as many
//! answers: a caller keying the PIN too early, or a handset's queued digits
//! after a resumed call re-asks the confirmation. A burst is one entry, as
//! on any IVR: after a wrong key, each further key less than
//! [`IvrConfig::burst_gap`] after the one before belongs to that entry and
//! is discarded (no failed attempt, no barge-in on the "invalid input"
//! prompt); a key after a longer pause is a fresh answer.
//!
//! [`IvrConfig::burst_gap`]: super::IvrConfig::burst_gap

use super::retry::Miss;
use super::speech::{self, sound};
use super::{Action, CallOutcome, Ivr};
use crate::domain::ResultCode;
use std::time::Duration;

impl Ivr {
    /// The confirmation prompt: amount, card ending, "press 1 or 2".
    pub(super) fn confirmation(&self) -> Vec<String> {
        let lang = self.call.language;
        let mut media = vec![sound("confirm-paying")];
        media.extend(speech::amount(self.call.amount_fen, lang));
        media.push(sound("confirm-card-ending"));
        media.extend(speech::digits(&self.call.card_last4, lang));
        media.push(sound("confirm-press"));
        media
    }

    /// Whether a key at `now` (since the call began) is the rest of the
    /// wrong entry already counted: it came less than the burst gap after
    /// that entry's previous key. Such a key extends the entry; the first
    /// key after the gap ends it and is taken as an answer.
    pub(super) fn in_wrong_burst(&mut self, now: Duration) -> bool {
        let Some(last) = self.burst_last else {
            return false;
        };
        if now.saturating_sub(last) < self.config.burst_gap {
            self.burst_last = Some(now);
            true
        } else {
            self.burst_last = None;
            false
        }
    }

    /// A key pressed while the confirmation is asked: 1 confirms, 2 cancels,
    /// anything else is a failed attempt and starts a wrong entry whose
    /// burst is discarded ([`Ivr::in_wrong_burst`]).
    pub(super) fn on_confirm_digit(&mut self, c: char, now: Duration, out: &mut Vec<Action>) {
        match c {
            '1' => {
                let field = self.first_field();
                self.begin_entry(field, Vec::new(), out);
            }
            '2' => self.end(
                &["fail-caller_cancelled", "goodbye"],
                CallOutcome::Failed(ResultCode::CallerCancelled),
                out,
            ),
            _ => {
                self.burst_last = Some(now);
                self.miss(Miss::Invalid, out);
            }
        }
    }
}
