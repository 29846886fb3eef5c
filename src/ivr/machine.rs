//! The machine's entry points: building it, feeding it one event, and the
//! handlers that route each event to the step the call is in.

use super::retry::Miss;
use super::screen::Screen;
use super::{Action, CallInfo, CallOutcome, DigitBuf, Event, Ivr, IvrConfig, Phase, TimerId};
use crate::domain::ResultCode;
use std::time::Duration;

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
            screen: Screen::Off,
            finished: false,
            bank_tries_left: None,
            resume: None,
            burst_last: None,
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
            Event::Digit(c) => self.on_digit(c, now, &mut out),
            Event::TalkStarted => self.on_talk_started(&mut out),
            Event::TalkFinished { duration } => self.on_talk_finished(duration, &mut out),
            Event::TimerFired { timer } => self.on_timer(timer, &mut out),
            Event::VerificationResult(o) => self.on_result(o, &mut out),
            Event::NotSubmitted => self.on_not_submitted(&mut out),
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
        if let Some(r) = self.resume {
            self.start_resumed(r, out);
        } else if !self.start_screening(out) {
            self.begin(out);
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

    fn on_digit(&mut self, c: char, now: Duration, out: &mut Vec<Action>) {
        if !(c.is_ascii_digit() || c == '*' || c == '#') {
            return;
        }
        self.key_ends_screening(out);
        if !matches!(self.phase, Phase::Confirm | Phase::Entry(_)) {
            return; // nothing is being asked: keys during please-wait or goodbye
        }
        if c == '#' && self.buf.is_empty() {
            // The terminator a caller adds after an entry that was already
            // complete at its fixed length (order code, confirmation, MMYY,
            // a PIN re-asked), or a lone `#`: no error, no barge-in, no timer
            // change. The confirmation never buffers, so it always ignores `#`.
            return;
        }
        if self.phase == Phase::Confirm && self.in_wrong_burst(now) {
            // The rest of a wrong entry already counted: it neither counts
            // again nor cuts the "invalid input" prompt short.
            return;
        }
        if let Some(p) = self.prompt.as_mut().filter(|p| !p.stopping) {
            p.stopping = true;
            out.push(Action::StopPlayback {
                playback_id: p.id.clone(),
            });
        }
        self.cancel_input_timer(out);
        match self.phase {
            Phase::Confirm => self.on_confirm_digit(c, now, out),
            Phase::Entry(field) => self.on_entry_digit(field, c, out),
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: TimerId, out: &mut Vec<Action>) {
        if self.on_screen_timer(timer, out) {
            return;
        }
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

    fn on_hangup(&mut self, out: &mut Vec<Action>) {
        self.buf.clear();
        self.expiry = None;
        self.prompt = None;
        if !self.finished {
            self.finished = true;
            out.push(Action::Finish(if self.phase == Phase::Verifying {
                CallOutcome::HungUpAwaitingBank
            } else if let Some(o) = self.hangup_outcome_while_screening() {
                o
            } else {
                CallOutcome::Failed(ResultCode::CallerHungUp)
            }));
        }
        self.cancel_all_timers(out);
        self.phase = Phase::Done;
    }
}
