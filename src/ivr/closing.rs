//! The end of a call: the bank's answer, a timeout or a cancel becomes the
//! call's outcome and its closing prompt; the hang-up follows when that
//! prompt has played.

use super::retry::tries_left_media;
use super::speech::sound;
use super::{Action, CallOutcome, Ivr, Phase, Verdict};
use crate::domain::ResultCode;

impl Ivr {
    pub(super) fn on_result(&mut self, outcome: Verdict, out: &mut Vec<Action>) {
        if self.phase != Phase::Verifying {
            return;
        }
        match outcome {
            // A "failure" that says approved is still money taken: say so.
            Verdict::Approved | Verdict::Failed(ResultCode::Approved) => {
                self.end(&["success", "goodbye"], CallOutcome::Approved, out)
            }
            Verdict::WrongSecret { tries_left } => {
                self.bank_tries_left = Some(tries_left);
                let ours = self.config.secret_tries.saturating_sub(self.submitted);
                let left = tries_left.min(ours);
                let wrong = CallOutcome::Failed(ResultCode::WrongSecret);
                if left == 0 {
                    self.end(&["fail-wrong_secret", "goodbye"], wrong, out);
                } else if self.expired {
                    self.end(
                        &["fail-wrong_secret", "fail-input_timeout", "goodbye"],
                        CallOutcome::Failed(ResultCode::InputTimeout),
                        out,
                    );
                } else {
                    let mut lead = vec![sound("fail-wrong_secret")];
                    lead.extend(tries_left_media(left, self.call.language));
                    let field = self.first_field();
                    self.begin_entry(field, lead, out);
                }
            }
            // Never tell which half was wrong: an ID mismatch that reaches
            // the call anyway ends it as a wrong secret does.
            Verdict::Failed(ResultCode::IdMismatch) => {
                self.on_result(Verdict::Failed(ResultCode::WrongSecret), out)
            }
            Verdict::Failed(code) => {
                let prompt = fail_prompt(code);
                let names: Vec<&str> = prompt.iter().copied().chain(["goodbye"]).collect();
                self.end(&names, CallOutcome::Failed(code), out);
            }
        }
    }

    pub(super) fn end_timeout(&mut self, out: &mut Vec<Action>) {
        self.end(
            &["fail-input_timeout", "goodbye"],
            CallOutcome::Failed(ResultCode::InputTimeout),
            out,
        );
    }

    /// Reports the outcome and plays the closing prompt; the hang-up follows
    /// when it has played, so the caller hears it.
    pub(super) fn end(&mut self, prompts: &[&str], outcome: CallOutcome, out: &mut Vec<Action>) {
        self.buf.clear();
        self.expiry = None;
        self.cancel_input_timer(out);
        let id = self.play(prompts.iter().map(|p| sound(p)).collect(), out);
        self.phase = Phase::Ending { playback_id: id };
        if !self.finished {
            self.finished = true;
            out.push(Action::Finish(outcome));
        }
        let timer = self.new_timer();
        self.final_timer = Some(timer);
        out.push(Action::StartTimer {
            timer,
            after: self.config.final_prompt_limit,
        });
    }

    pub(super) fn hang_up(&mut self, out: &mut Vec<Action>) {
        self.prompt = None;
        out.push(Action::Hangup);
        self.cancel_all_timers(out);
        self.phase = Phase::Done;
    }
}

/// The recorded `fail-<code>` prompt for a code, if prompts.tsv has one.
/// Codes without one (call_failed, merchant_cancelled) end with goodbye only;
/// `id_mismatch` is never spoken: it plays the wrong secret's prompt.
/// `issuer_declined` (an ISO 8583 F39 voicepay's table does not know) says
/// the issuer declined, without a reason it does not have.
pub(super) fn fail_prompt(code: ResultCode) -> Option<&'static str> {
    use ResultCode::*;
    Some(match code {
        InvalidCard => "fail-invalid_card",
        InsufficientFunds => "fail-insufficient_funds",
        WrongSecret | IdMismatch => "fail-wrong_secret",
        PinTriesExceeded => "fail-pin_tries_exceeded",
        InputTimeout => "fail-input_timeout",
        CardExpired => "fail-card_expired",
        CardRestricted => "fail-card_restricted",
        OverLimit => "fail-over_limit",
        IssuerUnavailable => "fail-issuer_unavailable",
        IssuerDeclined => "fail-issuer_declined",
        NoAnswer => "fail-no_answer",
        Busy => "fail-busy",
        CallerHungUp => "fail-caller_hung_up",
        CallerCancelled => "fail-caller_cancelled",
        OrderExpired => "fail-order_expired",
        Approved | CallFailed | MerchantCancelled => return None,
    })
}
