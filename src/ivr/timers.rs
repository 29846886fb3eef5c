//! The call's timers: the digit timer (first-digit or inter-digit, armed
//! only while no prompt plays), the maximum call length and the closing
//! prompt's limit. Every arming gets a new [`TimerId`].

use super::{Action, Ivr, TimerId, Wait};

impl Ivr {
    pub(super) fn new_timer(&mut self) -> TimerId {
        self.timers += 1;
        TimerId(self.timers)
    }

    /// Arms the digit timer if no prompt is playing: first-digit when nothing
    /// is keyed yet, inter-digit otherwise.
    pub(super) fn arm_input_timer(&mut self, out: &mut Vec<Action>) {
        self.cancel_input_timer(out);
        if self.prompt.is_some() {
            return; // armed when the prompt finishes
        }
        let (wait, after) = if self.buf.is_empty() {
            (Wait::FirstDigit, self.config.first_digit_timeout)
        } else {
            (Wait::InterDigit, self.config.inter_digit_timeout)
        };
        let timer = self.new_timer();
        self.input_timer = Some((timer, wait));
        out.push(Action::StartTimer { timer, after });
    }

    pub(super) fn cancel_input_timer(&mut self, out: &mut Vec<Action>) {
        if let Some((timer, _)) = self.input_timer.take() {
            out.push(Action::CancelTimer { timer });
        }
    }

    pub(super) fn cancel_all_timers(&mut self, out: &mut Vec<Action>) {
        self.cancel_input_timer(out);
        for timer in [self.max_timer.take(), self.final_timer.take()]
            .into_iter()
            .flatten()
        {
            out.push(Action::CancelTimer { timer });
        }
    }
}
