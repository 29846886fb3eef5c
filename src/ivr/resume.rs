//! A call resumed by a restarted daemon (README "Daemon restarts that drop
//! no call", issue #15): the machine starts at the step the previous run
//! had reached rather than at the welcome. Never a digit carries over: an
//! entry step is asked again from its first digit (a credit card from its
//! expiry), the confirmation needs its "1" again. Failed attempts and the
//! tries left do carry over, so a restart never gives the caller more.

use super::speech::sound;
use super::{Action, Ivr, Phase, Step};

/// Where a resumed call starts, as its previous run last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The step the previous run was at. `Expiry` and `Cvn2` both ask the
    /// expiry again; `Cancelled` is asked as the confirmation.
    pub step: Step,
    /// Failed attempts in that step so far.
    pub step_failures: u8,
    /// Secrets the caller may still submit.
    pub tries_left: u8,
}

impl Ivr {
    /// This machine, started at `resume` instead of the welcome: on
    /// [`Event::Start`](super::Event::Start) it plays the step's prompt
    /// (the confirmation, the first secret's prompt, or `please-wait` at
    /// `Authorizing`). At `Authorizing` and `Ended` it then waits for an
    /// [`Event::VerificationResult`](super::Event::VerificationResult)
    /// that the runner derives from the order as settled elsewhere (the
    /// matcher's recovery; never a second submission), and says it.
    pub fn resumed(mut self, resume: Resume) -> Self {
        self.resume = Some(resume);
        self
    }

    /// The step a resumed call starts at, once started.
    pub(super) fn start_resumed(&mut self, r: Resume, out: &mut Vec<Action>) {
        self.submitted = self.config.secret_tries.saturating_sub(r.tries_left);
        match r.step {
            Step::Confirm | Step::Cancelled => {
                self.phase = Phase::Confirm;
                let media = self.confirmation();
                self.play(media, out);
            }
            Step::Pin | Step::Expiry | Step::Cvn2 => {
                let field = self.first_field();
                self.begin_entry(field, Vec::new(), out);
            }
            Step::Authorizing => {
                self.phase = Phase::Verifying;
                self.play(vec![sound("please-wait")], out);
                return;
            }
            Step::Ended => {
                // The outcome is the order's: said again (and reported
                // again, which settles nothing twice).
                self.phase = Phase::Verifying;
                return;
            }
        }
        let allowed = self.config.attempts_per_step.max(1);
        self.attempts = r.step_failures.min(allowed - 1);
    }

    /// [`Event::NotSubmitted`](super::Event::NotSubmitted): the secret is
    /// asked again from its first field, the try given back.
    pub(super) fn on_not_submitted(&mut self, out: &mut Vec<Action>) {
        if self.phase != Phase::Verifying || self.resume.is_none() {
            return;
        }
        self.submitted = self.submitted.saturating_sub(1);
        let field = self.first_field();
        self.begin_entry(field, Vec::new(), out);
    }

    /// Whether this call resumed at a step whose result the runner must
    /// fetch from the order (`Authorizing` or `Ended`).
    pub fn awaits_settled_order(&self) -> bool {
        self.resume
            .is_some_and(|r| matches!(r.step, Step::Authorizing | Step::Ended))
            && self.phase == Phase::Verifying
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardKind, Language, ResultCode, YearMonth};
    use crate::ivr::{CallInfo, CallOutcome, Event, IvrConfig, Verdict};
    use std::time::Duration;

    fn ivr(kind: CardKind) -> Ivr {
        Ivr::new(
            IvrConfig::default(),
            CallInfo {
                language: Language::En,
                amount_fen: 100,
                card_last4: "0017".into(),
                card_kind: kind,
                bound: false,
                today: YearMonth {
                    year: 2026,
                    month: 11,
                },
            },
        )
    }

    fn played(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Play { media, .. } => Some(media.join(",")),
                _ => None,
            })
            .collect()
    }

    const T: Duration = Duration::ZERO;

    #[test]
    fn a_credit_card_stopped_at_its_cvn2_is_asked_its_expiry_again() {
        let mut m = ivr(CardKind::Credit).resumed(Resume {
            step: Step::Cvn2,
            step_failures: 0,
            tries_left: 2,
        });
        let a = m.step(Event::Start, T);
        assert_eq!(played(&a), ["sound:voicepay/enter-expiry"]);
        let p = m.progress().unwrap();
        assert_eq!(
            (p.step, p.tries_left, p.step_failures),
            (Step::Expiry, 2, 0)
        );
    }

    #[test]
    fn failures_carry_over_and_the_last_one_ends_the_call() {
        let mut m = ivr(CardKind::Debit).resumed(Resume {
            step: Step::Pin,
            step_failures: 2,
            tries_left: 3,
        });
        let a = m.step(Event::Start, T);
        assert_eq!(played(&a), ["sound:voicepay/enter-pin"]);
        assert_eq!(m.progress().unwrap().step_failures, 2);
        let a = m.step(Event::Digit('#'), T);
        assert!(a.is_empty(), "a lone # is ignored: {a:?}");
        for d in "12#".chars() {
            let _ = m.step(Event::Digit(d), T);
        }
        assert_eq!(m.progress().unwrap().step, Step::Ended);
    }

    #[test]
    fn a_call_resumed_while_authorizing_says_the_settled_result_once() {
        let mut m = ivr(CardKind::Debit).resumed(Resume {
            step: Step::Authorizing,
            step_failures: 0,
            tries_left: 2,
        });
        let a = m.step(Event::Start, T);
        assert_eq!(played(&a), ["sound:voicepay/please-wait"]);
        assert!(m.awaits_settled_order());
        assert!(!a.iter().any(|a| matches!(a, Action::Submit(_))));
        let a = m.step(Event::VerificationResult(Verdict::Approved), T);
        assert_eq!(
            played(&a),
            ["sound:voicepay/success,sound:voicepay/goodbye"]
        );
        assert!(a.contains(&Action::Finish(CallOutcome::Approved)));
    }

    #[test]
    fn a_secret_that_never_reached_the_matcher_is_asked_again_with_its_try_back() {
        let mut m = ivr(CardKind::Debit).resumed(Resume {
            step: Step::Authorizing,
            step_failures: 0,
            tries_left: 2,
        });
        let _ = m.step(Event::Start, T);
        let a = m.step(Event::NotSubmitted, T);
        assert_eq!(
            played(&a),
            ["sound:voicepay/enter-pin"],
            "no wrong-PIN prompt"
        );
        let p = m.progress().unwrap();
        assert_eq!((p.step, p.tries_left), (Step::Pin, 3));
        // Never outside a resumed call's wait.
        let mut fresh = ivr(CardKind::Debit);
        let _ = fresh.step(Event::Start, T);
        assert!(fresh.step(Event::NotSubmitted, T).is_empty());
    }

    #[test]
    fn a_call_resumed_while_closing_says_the_result_again() {
        let mut m = ivr(CardKind::Debit).resumed(Resume {
            step: Step::Ended,
            step_failures: 0,
            tries_left: 0,
        });
        assert!(m
            .step(Event::Start, T)
            .iter()
            .all(|a| !matches!(a, Action::Play { .. })));
        let a = m.step(
            Event::VerificationResult(Verdict::Failed(ResultCode::CallerCancelled)),
            T,
        );
        assert_eq!(
            played(&a),
            ["sound:voicepay/fail-caller_cancelled,sound:voicepay/goodbye"]
        );
        let finish = Action::Finish(CallOutcome::Failed(ResultCode::CallerCancelled));
        assert!(a.contains(&finish));
    }
}
