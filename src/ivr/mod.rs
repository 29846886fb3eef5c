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

#![warn(missing_docs)]

mod digits;
mod event;
pub mod speech;
#[cfg(test)]
mod tests;

pub use event::{Action, CallOutcome, Event, Outcome, TimerId};

use crate::domain::{
    CardKind, Cvn2, Expiry, Language, PinDigits, ResultCode, Verification, YearMonth,
};
use digits::DigitBuf;
use speech::sound;
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

/// The secret being keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Pin,
    Expiry,
    Cvn2,
}

impl Field {
    fn len(self) -> usize {
        match self {
            Field::Pin => 6,
            Field::Expiry => 4,
            Field::Cvn2 => 3,
        }
    }

    fn prompt(self) -> &'static str {
        match self {
            Field::Pin => "enter-pin",
            Field::Expiry => "enter-expiry",
            Field::Cvn2 => "enter-cvn2",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
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

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    Invalid,
    Timeout,
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
    finished: bool,
}

impl Ivr {
    /// A machine for one call, waiting for [`Event::Start`].
    pub fn new(config: IvrConfig, call: CallInfo) -> Self {
        Self {
            config,
            call,
            phase: Phase::NotStarted,
            attempts: 0,
            submitted: 0,
            buf: DigitBuf::default(),
            expiry: None,
            prompt: None,
            playbacks: 0,
            timers: 0,
            input_timer: None,
            max_timer: None,
            final_timer: None,
            started_at: None,
            expired: false,
            finished: false,
        }
    }

    /// Whether the call is over and no event will produce an action again,
    /// so the runner can drop the machine.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Feeds one event; `now` is the time since the call began (any fixed
    /// origin), used to enforce the maximum call length even if its timer is
    /// lost. Returns the actions to perform, in order.
    pub fn step(&mut self, event: Event, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Done {
            return out;
        }
        if event == Event::Hangup {
            self.on_hangup(&mut out);
            return out;
        }
        if let Some(start) = self.started_at {
            if now.saturating_sub(start) >= self.config.max_call && !self.expired {
                self.expired = true;
                if matches!(self.phase, Phase::Confirm | Phase::Entry(_)) {
                    self.end_timeout(&mut out);
                    return out;
                }
            }
        }
        match event {
            Event::Start => self.on_start(now, &mut out),
            Event::PlaybackFinished { playback_id } => {
                self.on_playback_finished(&playback_id, &mut out)
            }
            Event::Digit(c) => self.on_digit(c, &mut out),
            Event::TimerFired { timer } => self.on_timer(timer, &mut out),
            Event::VerificationResult(o) => self.on_result(o, &mut out),
            Event::Hangup => unreachable!("handled above"),
        }
        out
    }

    fn on_start(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.phase != Phase::NotStarted {
            return;
        }
        self.started_at = Some(now);
        let timer = self.new_timer();
        self.max_timer = Some(timer);
        out.push(Action::StartTimer {
            timer,
            after: self.config.max_call,
        });
        self.phase = Phase::Confirm;
        let mut media = vec![sound("welcome")];
        media.extend(self.confirmation());
        self.play(media, out);
    }

    fn confirmation(&self) -> Vec<String> {
        let lang = self.call.language;
        let mut media = vec![sound("confirm-paying")];
        media.extend(speech::amount(self.call.amount_fen, lang));
        media.push(sound("confirm-card-ending"));
        media.extend(speech::digits(&self.call.card_last4, lang));
        media.push(sound("confirm-press"));
        media
    }

    /// The prompt that asks for the current step's input again.
    fn step_prompt(&self) -> Vec<String> {
        match self.phase {
            Phase::Confirm => self.confirmation(),
            Phase::Entry(field) => vec![sound(field.prompt())],
            _ => Vec::new(),
        }
    }

    fn first_field(&self) -> Field {
        match self.call.card_kind {
            CardKind::Credit => Field::Expiry,
            CardKind::Debit | CardKind::Unknown => Field::Pin,
        }
    }

    fn on_playback_finished(&mut self, id: &str, out: &mut Vec<Action>) {
        if matches!(&self.phase, Phase::Ending { playback_id } if playback_id == id) {
            self.hang_up(out);
            return;
        }
        if self.prompt.as_ref().is_some_and(|p| p.id == id) {
            self.prompt = None;
            if matches!(self.phase, Phase::Confirm | Phase::Entry(_)) {
                self.arm_input_timer(out);
            }
        }
    }

    fn on_digit(&mut self, c: char, out: &mut Vec<Action>) {
        if !(c.is_ascii_digit() || c == '*' || c == '#') {
            return;
        }
        if !matches!(self.phase, Phase::Confirm | Phase::Entry(_)) {
            return; // nothing is being asked: keys during please-wait or goodbye
        }
        if let Some(p) = self.prompt.as_mut().filter(|p| !p.stopping) {
            p.stopping = true;
            out.push(Action::StopPlayback {
                playback_id: p.id.clone(),
            });
        }
        self.cancel_input_timer(out);
        match (&self.phase, c) {
            (Phase::Confirm, '1') => {
                let field = self.first_field();
                self.begin_entry(field, Vec::new(), out);
            }
            (Phase::Confirm, '2') => self.end(
                &["fail-caller_cancelled", "goodbye"],
                CallOutcome::Failed(ResultCode::CallerCancelled),
                out,
            ),
            (Phase::Confirm, _) => self.miss(Miss::Invalid, out),
            (Phase::Entry(_), '*') => {
                self.buf.clear();
                self.arm_input_timer(out);
            }
            (Phase::Entry(_), '#') => self.miss(Miss::Invalid, out),
            (Phase::Entry(field), d) => {
                let field = *field;
                self.buf.push(d as u8);
                if self.buf.len() >= field.len() {
                    self.complete(field, out);
                } else {
                    self.arm_input_timer(out);
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, field: Field, out: &mut Vec<Action>) {
        match field {
            Field::Pin => match self.buf.take(PinDigits::parse) {
                Some(pin) => self.submit(Verification::Pin(pin), out),
                None => self.miss(Miss::Invalid, out),
            },
            Field::Expiry => {
                let today = self.call.today;
                match self.buf.take(Expiry::parse) {
                    Some(e) if e.month_ok() && !e.is_past(today) => {
                        self.expiry = Some(e);
                        self.begin_entry(Field::Cvn2, Vec::new(), out);
                    }
                    _ => self.miss(Miss::Invalid, out),
                }
            }
            Field::Cvn2 => match (self.buf.take(Cvn2::parse), self.expiry.take()) {
                (Some(cvn2), Some(expiry)) => self.submit(Verification::Card { expiry, cvn2 }, out),
                // No expiry kept (cannot happen): ask for the card details again.
                _ => self.begin_entry(Field::Expiry, vec![sound("invalid-input")], out),
            },
        }
    }

    fn begin_entry(&mut self, field: Field, mut lead: Vec<String>, out: &mut Vec<Action>) {
        self.phase = Phase::Entry(field);
        self.attempts = 0;
        self.buf.clear();
        lead.push(sound(field.prompt()));
        self.play(lead, out);
    }

    fn submit(&mut self, verification: Verification, out: &mut Vec<Action>) {
        self.phase = Phase::Verifying;
        self.submitted = self.submitted.saturating_add(1);
        self.play(vec![sound("please-wait")], out);
        out.push(Action::Submit(verification));
    }

    /// A failed attempt: re-prompt with the tries left, or end the call.
    fn miss(&mut self, miss: Miss, out: &mut Vec<Action>) {
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

    fn on_timer(&mut self, timer: TimerId, out: &mut Vec<Action>) {
        if self.input_timer.is_some_and(|(t, _)| t == timer) {
            self.input_timer = None;
            self.miss(Miss::Timeout, out);
        } else if self.max_timer == Some(timer) {
            self.max_timer = None;
            self.expired = true;
            match self.phase {
                Phase::Confirm | Phase::Entry(_) => self.end_timeout(out),
                // Verifying: the bank has the secret and its answer ends the
                // call. Ending: the closing prompt has its own limit.
                _ => {}
            }
        } else if self.final_timer == Some(timer) {
            self.final_timer = None;
            self.hang_up(out);
        }
    }

    fn on_result(&mut self, outcome: Outcome, out: &mut Vec<Action>) {
        if self.phase != Phase::Verifying {
            return;
        }
        match outcome {
            // A "failure" that says approved is still money taken: say so.
            Outcome::Approved | Outcome::Failed(ResultCode::Approved) => {
                self.end(&["success", "goodbye"], CallOutcome::Approved, out)
            }
            Outcome::WrongSecret { tries_left } => {
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
            Outcome::Failed(code) => {
                let prompt = fail_prompt(code);
                let names: Vec<&str> = prompt.iter().copied().chain(["goodbye"]).collect();
                self.end(&names, CallOutcome::Failed(code), out);
            }
        }
    }

    fn on_hangup(&mut self, out: &mut Vec<Action>) {
        self.buf.clear();
        self.expiry = None;
        self.prompt = None;
        if !self.finished {
            self.finished = true;
            out.push(Action::Finish(if self.phase == Phase::Verifying {
                CallOutcome::HungUpAwaitingBank
            } else {
                CallOutcome::Failed(ResultCode::CallerHungUp)
            }));
        }
        self.cancel_all_timers(out);
        self.phase = Phase::Done;
    }

    fn end_timeout(&mut self, out: &mut Vec<Action>) {
        self.end(
            &["fail-input_timeout", "goodbye"],
            CallOutcome::Failed(ResultCode::InputTimeout),
            out,
        );
    }

    /// Reports the outcome and plays the closing prompt; the hang-up follows
    /// when it has played, so the caller hears it.
    fn end(&mut self, prompts: &[&str], outcome: CallOutcome, out: &mut Vec<Action>) {
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

    fn hang_up(&mut self, out: &mut Vec<Action>) {
        self.prompt = None;
        out.push(Action::Hangup);
        self.cancel_all_timers(out);
        self.phase = Phase::Done;
    }

    /// Starts a playback; one of ours still playing is stopped first so the
    /// new prompt is heard at once rather than queued behind it.
    fn play(&mut self, media: Vec<String>, out: &mut Vec<Action>) -> String {
        if let Some(p) = self.prompt.take().filter(|p| !p.stopping) {
            out.push(Action::StopPlayback { playback_id: p.id });
        }
        self.playbacks += 1;
        let id = format!("p{}", self.playbacks);
        out.push(Action::Play {
            playback_id: id.clone(),
            media,
        });
        self.prompt = Some(Prompt {
            id: id.clone(),
            stopping: false,
        });
        id
    }

    fn new_timer(&mut self) -> TimerId {
        self.timers += 1;
        TimerId(self.timers)
    }

    /// Arms the digit timer if no prompt is playing: first-digit when nothing
    /// is keyed yet, inter-digit otherwise.
    fn arm_input_timer(&mut self, out: &mut Vec<Action>) {
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

    fn cancel_input_timer(&mut self, out: &mut Vec<Action>) {
        if let Some((timer, _)) = self.input_timer.take() {
            out.push(Action::CancelTimer { timer });
        }
    }

    fn cancel_all_timers(&mut self, out: &mut Vec<Action>) {
        self.cancel_input_timer(out);
        for timer in [self.max_timer.take(), self.final_timer.take()]
            .into_iter()
            .flatten()
        {
            out.push(Action::CancelTimer { timer });
        }
    }
}

/// "You have N tries left".
fn tries_left_media(n: u8, lang: Language) -> Vec<String> {
    let mut media = vec![sound("tries-you-have")];
    media.extend(speech::count(u32::from(n), lang));
    media.push(sound("tries-left"));
    media
}

/// The recorded `fail-<code>` prompt for a code, if prompts.tsv has one.
/// Codes without one (call_failed, merchant_cancelled) end with goodbye only.
fn fail_prompt(code: ResultCode) -> Option<&'static str> {
    use ResultCode::*;
    Some(match code {
        InvalidCard => "fail-invalid_card",
        InsufficientFunds => "fail-insufficient_funds",
        WrongSecret => "fail-wrong_secret",
        IdMismatch => "fail-id_mismatch",
        PinTriesExceeded => "fail-pin_tries_exceeded",
        InputTimeout => "fail-input_timeout",
        CardExpired => "fail-card_expired",
        CardRestricted => "fail-card_restricted",
        OverLimit => "fail-over_limit",
        IssuerUnavailable => "fail-issuer_unavailable",
        NoAnswer => "fail-no_answer",
        Busy => "fail-busy",
        CallerHungUp => "fail-caller_hung_up",
        CallerCancelled => "fail-caller_cancelled",
        OrderExpired => "fail-order_expired",
        Approved | CallFailed | MerchantCancelled => return None,
    })
}
