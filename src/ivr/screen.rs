//! Screening a callback for an answering machine before anything is said.
//!
//! A callback answered by voicemail or a network announcement must not
//! count as reached, and must never hear the order (amount, card ending) or
//! the secret prompt. With [`MachineScreen`] set, the machine plays nothing
//! at [`Event::Start`](super::Event::Start) and listens to the runner's talk
//! events (Asterisk's `TALK_DETECT`, `ChannelTalkingStarted` /
//! `ChannelTalkingFinished`):
//!
//! - no talk within `answer_window`: a person who waits silently; the call
//!   goes on;
//! - talk that starts within the window and ends (`TalkFinished`) before
//!   `machine_talk`: a person who said "hello"; the call goes on;
//! - talk that starts within the window and lasts `machine_talk` with no
//!   key pressed, or a hang-up while it lasts: a machine; the call ends with
//!   [`CallOutcome::NotReached`] and is hung up with nothing played;
//! - any key: a person; the call goes on and the key counts.
//!
//! Talk after screening is ignored (a person talking over a prompt).

use super::speech::sound;
use super::{Action, CallOutcome, Ivr, Phase, TimerId};
use std::time::Duration;

/// The thresholds that tell a machine from a person, from
/// `[telephony.machine_detection]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineScreen {
    /// Talk must start this soon after `Start` to count.
    pub answer_window: Duration,
    /// Continuous talk this long, with no key pressed, is a machine.
    pub machine_talk: Duration,
}

/// Where screening stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Screen {
    /// Not screening (off, or decided).
    Off,
    /// Set up; the call has not started.
    Armed(MachineScreen),
    /// Nothing played; waiting for talk until the timer fires.
    Listening(MachineScreen, TimerId),
    /// Talk began in the window; a machine if the timer fires first.
    Talking(MachineScreen, TimerId),
}

impl Ivr {
    /// Screens this call for an answering machine (callbacks only) before
    /// anything is played; see the module documentation.
    #[must_use]
    pub fn screened(mut self, screen: MachineScreen) -> Self {
        self.screen = Screen::Armed(screen);
        self
    }

    /// At `Start`: begins listening when screening is set; false when the
    /// call should begin at once.
    pub(super) fn start_screening(&mut self, out: &mut Vec<Action>) -> bool {
        let Screen::Armed(cfg) = self.screen else {
            return false;
        };
        let timer = self.new_timer();
        out.push(Action::StartTimer {
            timer,
            after: cfg.answer_window,
        });
        self.screen = Screen::Listening(cfg, timer);
        self.phase = Phase::Screening;
        true
    }

    /// The conversation proper: welcome and confirmation.
    pub(super) fn begin(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Confirm;
        let mut media = vec![sound("welcome")];
        media.extend(self.confirmation());
        self.play(media, out);
    }

    pub(super) fn on_talk_started(&mut self, out: &mut Vec<Action>) {
        if let Screen::Listening(cfg, window) = self.screen {
            out.push(Action::CancelTimer { timer: window });
            let timer = self.new_timer();
            out.push(Action::StartTimer {
                timer,
                after: cfg.machine_talk,
            });
            self.screen = Screen::Talking(cfg, timer);
        }
    }

    /// Talk ended after `duration`: a person's short greeting, or (when the
    /// event beat our timer) a machine's long one.
    pub(super) fn on_talk_finished(&mut self, duration: Duration, out: &mut Vec<Action>) {
        if let Screen::Talking(cfg, _) = self.screen {
            if duration >= cfg.machine_talk {
                self.machine(out);
            } else {
                self.person(out);
            }
        }
    }

    /// A screening timer fired: the window passed in silence (a person), or
    /// the talk lasted too long (a machine). False when it was not ours.
    pub(super) fn on_screen_timer(&mut self, timer: TimerId, out: &mut Vec<Action>) -> bool {
        match self.screen {
            Screen::Listening(_, t) if t == timer => {
                self.screen = Screen::Off;
                self.begin(out);
            }
            Screen::Talking(_, t) if t == timer => {
                self.screen = Screen::Off; // fired: nothing to cancel
                self.machine(out);
            }
            _ => return false,
        }
        true
    }

    /// A key while screening: only a person presses one. The call begins
    /// and the key then counts as it would have during the welcome.
    pub(super) fn key_ends_screening(&mut self, out: &mut Vec<Action>) {
        if self.phase == Phase::Screening {
            self.person(out);
        }
    }

    /// The call was hung up while screening: a machine if it was talking
    /// (a network announcement that ends the call), else None (a person who
    /// hung up at once).
    pub(super) fn hangup_outcome_while_screening(&self) -> Option<CallOutcome> {
        matches!(self.screen, Screen::Talking(..)).then_some(CallOutcome::NotReached)
    }

    fn person(&mut self, out: &mut Vec<Action>) {
        if let Screen::Listening(_, t) | Screen::Talking(_, t) = self.screen {
            out.push(Action::CancelTimer { timer: t });
        }
        self.screen = Screen::Off;
        self.begin(out);
    }

    /// A machine answered: reported, then hung up with nothing played.
    fn machine(&mut self, out: &mut Vec<Action>) {
        if let Screen::Listening(_, t) | Screen::Talking(_, t) = self.screen {
            out.push(Action::CancelTimer { timer: t });
        }
        self.screen = Screen::Off;
        if !self.finished {
            self.finished = true;
            out.push(Action::Finish(CallOutcome::NotReached));
        }
        self.hang_up(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardKind, Language, PinDigits, ResultCode, Verification, YearMonth};
    use crate::ivr::{CallInfo, Event, IvrConfig};

    const SCREEN: MachineScreen = MachineScreen {
        answer_window: Duration::from_millis(2000),
        machine_talk: Duration::from_millis(5000),
    };

    fn screened_call() -> Ivr {
        let info = CallInfo {
            language: Language::En,
            amount_fen: 12345,
            card_last4: "0017".into(),
            card_kind: CardKind::Debit,
            bound: false,
            today: YearMonth {
                year: 2025,
                month: 6,
            },
        };
        Ivr::new(IvrConfig::default(), info).screened(SCREEN)
    }

    fn step(ivr: &mut Ivr, event: Event) -> Vec<Action> {
        ivr.step(event, Duration::ZERO)
    }

    fn timer(t: u64, after: Duration) -> Action {
        Action::StartTimer {
            timer: TimerId(t),
            after,
        }
    }

    fn cancel(t: u64) -> Action {
        Action::CancelTimer { timer: TimerId(t) }
    }

    fn fire(t: u64) -> Event {
        Event::TimerFired { timer: TimerId(t) }
    }

    /// The names of the voicepay prompts in the actions' playbacks.
    fn played(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Play { media, .. } => Some(media.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn starts_with_welcome(actions: &[Action]) -> bool {
        played(actions).first() == Some(&sound("welcome"))
    }

    #[test]
    fn a_screened_call_plays_nothing_until_it_knows_who_answered() {
        let mut ivr = screened_call();
        assert_eq!(
            step(&mut ivr, Event::Start),
            [
                timer(1, Duration::from_secs(180)),
                timer(2, SCREEN.answer_window)
            ]
        );
    }

    #[test]
    fn continuous_talk_from_the_answer_is_a_machine_and_nothing_is_played() {
        let mut ivr = screened_call();
        let mut all = step(&mut ivr, Event::Start);
        let talk = step(&mut ivr, Event::TalkStarted);
        assert_eq!(talk, [cancel(2), timer(3, SCREEN.machine_talk)]);
        all.extend(talk);
        let end = step(&mut ivr, fire(3));
        assert_eq!(
            end,
            [
                Action::Finish(CallOutcome::NotReached),
                Action::Hangup,
                cancel(1)
            ]
        );
        all.extend(end);
        assert!(played(&all).is_empty(), "{all:?}");
        assert!(ivr.is_done());
        // A late end of talk or a key changes nothing.
        let late = Event::TalkFinished {
            duration: Duration::from_secs(7),
        };
        assert!(step(&mut ivr, late).is_empty());
        assert!(step(&mut ivr, Event::Digit('1')).is_empty());
    }

    #[test]
    fn a_long_talk_reported_before_our_timer_is_a_machine_too() {
        let mut ivr = screened_call();
        step(&mut ivr, Event::Start);
        step(&mut ivr, Event::TalkStarted);
        let end = step(
            &mut ivr,
            Event::TalkFinished {
                duration: SCREEN.machine_talk,
            },
        );
        assert_eq!(
            end[..2],
            [cancel(3), Action::Finish(CallOutcome::NotReached)]
        );
        assert!(end.contains(&Action::Hangup));
        assert!(played(&end).is_empty());
    }

    #[test]
    fn an_announcement_that_hangs_up_while_talking_is_not_reached() {
        let mut ivr = screened_call();
        step(&mut ivr, Event::Start);
        step(&mut ivr, Event::TalkStarted);
        let end = step(&mut ivr, Event::Hangup);
        assert_eq!(end[0], Action::Finish(CallOutcome::NotReached));
    }

    #[test]
    fn a_hang_up_before_any_talk_is_the_callers() {
        let mut ivr = screened_call();
        step(&mut ivr, Event::Start);
        let end = step(&mut ivr, Event::Hangup);
        assert_eq!(
            end[0],
            Action::Finish(CallOutcome::Failed(ResultCode::CallerHungUp))
        );
    }

    #[test]
    fn a_short_hello_then_1_and_the_pin_pays() {
        let mut ivr = screened_call();
        step(&mut ivr, Event::Start);
        step(&mut ivr, Event::TalkStarted);
        let hello = step(
            &mut ivr,
            Event::TalkFinished {
                duration: Duration::from_millis(700),
            },
        );
        assert_eq!(hello[0], cancel(3));
        assert!(starts_with_welcome(&hello), "{hello:?}");
        // Talk over the prompt after screening is ignored.
        assert!(step(&mut ivr, Event::TalkStarted).is_empty());
        let one = step(&mut ivr, Event::Digit('1'));
        assert_eq!(played(&one), [sound("enter-pin")]);
        let pin: Vec<Action> = "805137"
            .chars()
            .flat_map(|c| step(&mut ivr, Event::Digit(c)))
            .collect();
        assert!(pin.contains(&Action::Submit(Verification::Pin(
            PinDigits::parse("805137").unwrap()
        ))));
    }

    #[test]
    fn silence_through_the_window_is_a_person_waiting() {
        let mut ivr = screened_call();
        step(&mut ivr, Event::Start);
        let go = step(&mut ivr, fire(2));
        assert!(starts_with_welcome(&go), "{go:?}");
        // Talk after the window does not make the call a machine's.
        assert!(step(&mut ivr, Event::TalkStarted).is_empty());
        assert!(step(&mut ivr, fire(3)).is_empty());
        assert!(!ivr.is_done());
    }

    #[test]
    fn a_key_while_screening_is_a_person_and_counts() {
        for talking in [false, true] {
            let mut ivr = screened_call();
            step(&mut ivr, Event::Start);
            let screen_timer = if talking {
                step(&mut ivr, Event::TalkStarted);
                3
            } else {
                2
            };
            let one = step(&mut ivr, Event::Digit('1'));
            assert_eq!(one[0], cancel(screen_timer));
            assert!(starts_with_welcome(&one), "{one:?}");
            // The 1 confirmed: the welcome is cut and the PIN is asked.
            assert_eq!(played(&one).last(), Some(&sound("enter-pin")));
            assert!(one.contains(&Action::StopPlayback {
                playback_id: "p1".into()
            }));
        }
    }

    #[test]
    fn talk_events_mean_nothing_to_an_unscreened_call() {
        let info = screened_call().call.clone();
        let mut ivr = Ivr::new(IvrConfig::default(), info);
        assert!(starts_with_welcome(&step(&mut ivr, Event::Start)));
        assert!(step(&mut ivr, Event::TalkStarted).is_empty());
        let long = Event::TalkFinished {
            duration: Duration::from_secs(60),
        };
        assert!(step(&mut ivr, long).is_empty());
        assert!(!ivr.is_done());
    }
}
