//! Failed attempts: each step allows [`IvrConfig::attempts_per_step`] of
//! them, re-prompting with the tries left, before the call ends.
//!
//! [`IvrConfig::attempts_per_step`]: super::IvrConfig::attempts_per_step

use super::speech::{self, sound};
use super::{Action, CallOutcome, Ivr, Phase};
use crate::domain::{Language, ResultCode};

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Miss {
    Invalid,
    Timeout,
}

impl Ivr {
    /// The prompt that asks for the current step's input again.
    pub(super) fn step_prompt(&self) -> Vec<String> {
        match self.phase {
            Phase::Confirm => self.confirmation(),
            Phase::Entry(field) => vec![sound(field.prompt())],
            _ => Vec::new(),
        }
    }

    /// A failed attempt: re-prompt with the tries left, or end the call.
    pub(super) fn miss(&mut self, miss: Miss, out: &mut Vec<Action>) {
        self.buf.clear();
        self.attempts = self.attempts.saturating_add(1);
        let allowed = self.config.attempts_per_step.max(1);
        if self.attempts >= allowed {
            match miss {
                Miss::Timeout => self.end_timeout(out),
                Miss::Invalid => self.end(
                    &["invalid-input", "fail-input_timeout", "goodbye"],
                    CallOutcome::Failed(ResultCode::InputTimeout),
                    out,
                ),
            }
            return;
        }
        let mut media = vec![sound("invalid-input")];
        media.extend(tries_left_media(
            allowed - self.attempts,
            self.call.language,
        ));
        media.extend(self.step_prompt());
        self.play(media, out);
    }
}

/// "You have N tries left".
pub(super) fn tries_left_media(n: u8, lang: Language) -> Vec<String> {
    let mut media = vec![sound("tries-you-have")];
    media.extend(speech::count(u32::from(n), lang));
    media.push(sound("tries-left"));
    media
}
