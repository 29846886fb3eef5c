//! The confirmation step: the amount and the card's last four digits are
//! read back, and the caller presses 1 to go on or 2 to cancel.

use super::retry::Miss;
use super::speech::{self, sound};
use super::{Action, CallOutcome, Ivr};
use crate::domain::ResultCode;

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

    /// A key pressed while the confirmation is asked: 1 confirms, 2 cancels,
    /// anything else is a failed attempt.
    pub(super) fn on_confirm_digit(&mut self, c: char, out: &mut Vec<Action>) {
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
            _ => self.miss(Miss::Invalid, out),
        }
    }
}
