//! What an assisted call's agent may learn of the capture while the
//! cardholder keys: the step and counts, never a digit (issue #16:
//! "PIN: 4 of 6 digits", "wrong PIN, 2 tries left", "authorizing").

use super::entry::Field;
use super::{Ivr, Phase};
use serde::Serialize;

/// The step of the call a [`Progress`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The amount and card are read; 1 confirms, 2 cancels.
    Confirm,
    /// The 6-digit PIN (debit card).
    Pin,
    /// The expiry, MMYY (credit card).
    Expiry,
    /// The CVN2 (credit card).
    Cvn2,
    /// The secret is with the issuer.
    Authorizing,
    /// The result is being said; the capture is over.
    Ended,
    /// The agent stopped the capture (`/capture/cancel`); never produced
    /// by the IVR itself.
    Cancelled,
}

/// One progress report: counts only. Serialized as the `capture.progress`
/// event's data: `{"step":"pin","digits_entered":4,"digits_expected":6,
/// "tries_left":3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Where the call is.
    pub step: Step,
    /// Digits keyed so far in this step (0 outside an entry).
    pub digits_entered: u8,
    /// Digits the step takes (1 for the confirmation, 0 outside an entry).
    pub digits_expected: u8,
    /// Secrets the cardholder may still submit on this capture (the
    /// call's tries, lowered by the issuer's count after a wrong one).
    pub tries_left: u8,
    /// Failed attempts in this step so far (kept for a restarted daemon's
    /// resume, `call_points.step_failures`; not part of the agent's event).
    #[serde(skip)]
    pub step_failures: u8,
}

impl Ivr {
    /// What the agent may see now; None before the first prompt.
    pub fn progress(&self) -> Option<Progress> {
        let (step, entered, expected) = match self.phase {
            Phase::NotStarted | Phase::Screening => return None,
            Phase::Confirm => (Step::Confirm, 0, 1),
            Phase::Entry(field) => {
                let step = match field {
                    Field::Pin => Step::Pin,
                    Field::Expiry => Step::Expiry,
                    Field::Cvn2 => Step::Cvn2,
                };
                (step, self.buf.len(), field.len())
            }
            Phase::Verifying => (Step::Authorizing, 0, 0),
            Phase::Ending { .. } | Phase::Done => (Step::Ended, 0, 0),
        };
        Some(Progress {
            step,
            digits_entered: u8::try_from(entered).unwrap_or(u8::MAX),
            digits_expected: u8::try_from(expected).unwrap_or(u8::MAX),
            tries_left: self.tries_left(),
            step_failures: self.attempts,
        })
    }

    /// The secrets the caller may still submit: the call's own tries, and
    /// never more than the issuer's count after a wrong secret.
    pub fn tries_left(&self) -> u8 {
        let ours = self.config.secret_tries.saturating_sub(self.submitted);
        self.bank_tries_left.map_or(ours, |b| b.min(ours))
    }

    /// Whether the call is still asking (nothing is with the issuer and
    /// no result is being said), so that it may be stopped without
    /// leaving a secret or a result behind.
    pub fn asking(&self) -> bool {
        matches!(
            self.phase,
            Phase::NotStarted | Phase::Screening | Phase::Confirm | Phase::Entry(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardKind, Language, YearMonth};
    use crate::ivr::{Action, CallInfo, Event, IvrConfig, Verdict};
    use std::time::Duration;

    fn ivr() -> Ivr {
        Ivr::new(
            IvrConfig::default(),
            CallInfo {
                language: Language::En,
                amount_fen: 100,
                card_last4: "0017".into(),
                card_kind: CardKind::Debit,
                bound: false,
                today: YearMonth {
                    year: 2026,
                    month: 11,
                },
            },
        )
    }

    fn played(actions: &[Action]) -> Option<String> {
        actions.iter().find_map(|a| match a {
            Action::Play { playback_id, .. } => Some(playback_id.clone()),
            _ => None,
        })
    }

    #[test]
    fn progress_counts_digits_and_tries_but_holds_none() {
        let mut m = ivr();
        let t = Duration::ZERO;
        assert_eq!(m.progress(), None);
        let _ = m.step(Event::Start, t);
        assert_eq!(m.progress().map(|p| p.step), Some(Step::Confirm));
        let _ = m.step(Event::Digit('1'), t);
        for d in "1234".chars() {
            let _ = m.step(Event::Digit(d), t);
        }
        let p = m.progress().unwrap();
        assert_eq!(
            (p.step, p.digits_entered, p.digits_expected, p.tries_left),
            (Step::Pin, 4, 6, 3)
        );
        assert!(m.asking());
        for d in "56".chars() {
            let _ = m.step(Event::Digit(d), t);
        }
        assert_eq!(m.progress().unwrap().step, Step::Authorizing);
        assert!(!m.asking());
        let a = m.step(
            Event::VerificationResult(Verdict::WrongSecret { tries_left: 1 }),
            t,
        );
        assert!(played(&a).is_some());
        let p = m.progress().unwrap();
        assert_eq!((p.step, p.digits_entered, p.tries_left), (Step::Pin, 0, 1));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"step":"pin","digits_entered":0,"digits_expected":6,"tries_left":1}"#
        );
    }
}
