//! The machine's boundary: the events the runner feeds in and the actions it
//! must carry out. Kept apart from the machine so the runner's author reads
//! one short file to know the whole contract.

use crate::domain::ResultCode;
use crate::domain::Verification;
use std::time::Duration;

/// A timer the runner arms on [`Action::StartTimer`] and reports back with
/// [`Event::TimerFired`]. Every arming gets a new id, so a timer that fires
/// after it was cancelled or replaced is recognised as stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// The verdict on a submitted secret, as the matcher reports it to the IVR
/// (the issuer's decision and the matcher's own
/// refusals, in what the caller is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Paid.
    Approved,
    /// Wrong PIN or card details; the caller may try again while tries are left.
    WrongSecret {
        /// Tries the bank still allows today.
        tries_left: u8,
    },
    /// A final refusal (insufficient funds, PIN tries exceeded, issuer
    /// unavailable…): the call says so and ends.
    Failed(ResultCode),
}

/// How the call ended, reported once with [`Action::Finish`] so the matcher
/// can settle the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The bank approved and the caller is told so.
    Approved,
    /// No payment: caller_cancelled, input_timeout, caller_hung_up,
    /// wrong_secret (tries exhausted) or the bank's failure code.
    Failed(ResultCode),
    /// The caller hung up after the secret was submitted: the bank's answer,
    /// not the call, decides the order.
    HungUpAwaitingBank,
    /// A machine answered (voicemail, a network announcement: continuous
    /// talk from the answer, no key pressed): nobody was reached, nothing
    /// was played, and the flow retries the callback like an unanswered one.
    NotReached,
}

/// What happens to the call, delivered to the machine in order.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// The answered call entered our Stasis app.
    Start,
    /// One of our playbacks ended: done, stopped or failed alike.
    PlaybackFinished {
        /// The id from [`Action::Play`].
        playback_id: String,
    },
    /// A DTMF digit: 0-9, `*` or `#`; anything else is ignored.
    Digit(char),
    /// A timer from [`Action::StartTimer`] expired.
    TimerFired {
        /// The id it was armed with.
        timer: TimerId,
    },
    /// The matcher's answer to [`Action::Submit`].
    VerificationResult(Verdict),
    /// The caller hung up (or the channel is gone).
    Hangup,
    /// Talk began on the line (`ChannelTalkingStarted`); only screening
    /// ([`Ivr::screened`](super::Ivr::screened)) listens to it.
    TalkStarted,
    /// Talk ended after `duration` of talking (`ChannelTalkingFinished`).
    TalkFinished {
        /// How long the talk lasted.
        duration: Duration,
    },
    /// A call resumed at `authorizing` finds its order still `in_call`:
    /// the previous run stopped before its secret reached the matcher, so
    /// the secret is asked again and the try given back
    /// ([`Ivr::resumed`](super::Ivr::resumed)).
    NotSubmitted,
}

/// Hand-written so that logging events never logs a keyed digit.
impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Start => f.write_str("Start"),
            Event::PlaybackFinished { playback_id } => f
                .debug_struct("PlaybackFinished")
                .field("playback_id", playback_id)
                .finish(),
            Event::Digit(_) => f.write_str("Digit(*)"),
            Event::TimerFired { timer } => {
                f.debug_struct("TimerFired").field("timer", timer).finish()
            }
            Event::VerificationResult(o) => f.debug_tuple("VerificationResult").field(o).finish(),
            Event::Hangup => f.write_str("Hangup"),
            Event::TalkStarted => f.write_str("TalkStarted"),
            Event::NotSubmitted => f.write_str("NotSubmitted"),
            Event::TalkFinished { duration } => f
                .debug_struct("TalkFinished")
                .field("duration", duration)
                .finish(),
        }
    }
}

/// What the runner must do, in order. Only [`Action::Submit`] carries a
/// secret, and its `Debug` prints `***`.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Play the media in one playback (cheaper than one playback each) with
    /// this id, unique within the call; the runner may prefix the channel id.
    Play {
        /// Our id for the playback, "p1", "p2", …
        playback_id: String,
        /// Media URIs: `sound:voicepay/<prompt>`, `number:<n>`.
        media: Vec<String>,
    },
    /// Stop a playback (barge-in, or a prompt superseded). 404 means it
    /// already ended; a `PlaybackFinished` for it may still arrive.
    StopPlayback {
        /// The id from [`Action::Play`].
        playback_id: String,
    },
    /// Arm a timer and send [`Event::TimerFired`] when it expires.
    StartTimer {
        /// The id to report back.
        timer: TimerId,
        /// Delay from now.
        after: Duration,
    },
    /// The timer is no longer wanted (firing it anyway is harmless).
    CancelTimer {
        /// The id from [`Action::StartTimer`].
        timer: TimerId,
    },
    /// Send the secret to the matcher; answer with [`Event::VerificationResult`].
    Submit(Verification),
    /// Hang up the channel (after the closing prompt).
    Hangup,
    /// The call's outcome, emitted exactly once.
    Finish(CallOutcome),
}
