//! What the two flows whose calls come to us (transfer, inbound) share
//! besides the desk (where they claim their order,
//! `Desk::claim_incoming`): the short prompts and key entry they run
//! before (or instead of) the IVR.

use super::keys::pressed;
use crate::ari::{self, AriCommands};
use crate::ivr::order_code::{OrderCode, ORDER_CODE_LEN};
use crate::ivr::repeat::RepeatGuard;
use crate::ivr::speech::sound;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Playback numbers of prompts played outside the IVR start here, so they
/// never collide with the runner's (1, 2, …) on the same channel.
const OWN_PLAYBACKS: u64 = 1_000_000;

/// The longest a prompt outside the IVR may take before we move on, in case
/// its `PlaybackFinished` never comes.
const PROMPT_LIMIT: Duration = Duration::from_secs(20);

/// What happened to a prompt played outside the IVR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heard {
    /// It played to the end (or failed to play, or took too long).
    Played,
    /// The channel hung up or left the app.
    Gone,
}

/// Whether the event means the channel is no longer ours to drive.
pub(super) fn ends_call(event: &ari::Event) -> bool {
    matches!(
        event,
        ari::Event::StasisEnd { .. }
            | ari::Event::ChannelHangupRequest { .. }
            | ari::Event::ChannelDestroyed { .. }
    )
}

/// Plays the named prompts in one playback and waits for its end. Digits
/// keyed meanwhile are dropped (nothing is being asked).
pub(super) async fn play_prompts<A: AriCommands>(
    ari: &A,
    channel_id: &str,
    n: u64,
    prompts: &[&str],
    lang: Option<&str>,
    events: &mut UnboundedReceiver<ari::Event>,
) -> Heard {
    let id = ari::playback_id(channel_id, OWN_PLAYBACKS + n);
    let media: Vec<String> = prompts.iter().map(|p| sound(p)).collect();
    if let Err(e) = ari.play(channel_id, &id, &media, lang).await {
        tracing::debug!(error = %e, "play failed");
        return Heard::Played;
    }
    let deadline = tokio::time::Instant::now() + PROMPT_LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Heard::Played,
            Ok(None) => return Heard::Gone,
            Ok(Some(e)) if ends_call(&e) => return Heard::Gone,
            Ok(Some(ari::Event::PlaybackFinished { playback })) if playback.id == id => {
                return Heard::Played
            }
            Ok(Some(_)) => {}
        }
    }
}

/// A code keyed by the caller, or why there is none.
#[derive(Debug)]
pub(super) enum Keyed {
    /// The digits, ended by `#` or by reaching the full length; a secret
    /// (wiped on drop, never printed).
    Code(OrderCode),
    /// Nothing (or nothing more) was keyed in time.
    Timeout,
    /// The channel hung up or left the app.
    Gone,
}

/// Timing of [`collect_code`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Digits that complete the entry without `#`.
    pub len: usize,
    /// Wait for the first digit once the prompt has ended.
    pub first_digit: Duration,
    /// Wait between two digits.
    pub inter_digit: Duration,
}

/// The caller's side of a channel while a code is keyed: its ordered
/// events, and the call's repeat guard that every key passes (kept for the
/// whole call, so a press reported again after the entry ended is caught
/// by the next stage too).
pub(super) struct Line<'a> {
    /// The channel's events.
    pub events: &'a mut UnboundedReceiver<ari::Event>,
    /// The call's DTMF repeat guard (`ivr.dtmf_repeat_guard_ms`).
    pub keys: &'a mut RepeatGuard,
}

/// Plays `prompt` and collects digits: a digit during the prompt stops it
/// (barge-in) and counts; `*` clears; `#` or the `len`-th digit ends the
/// entry (at most [`crate::ivr::order_code::ORDER_CODE_LEN`] digits). A
/// `#` with nothing keyed yet (the terminator a caller adds after a code
/// that was already complete) is ignored: it neither stops the prompt nor
/// counts. The digits go straight into an [`OrderCode`]; nothing here
/// logs them.
pub(super) async fn collect_code<A: AriCommands>(
    ari: &A,
    channel_id: &str,
    n: u64,
    prompt: &[&str],
    lang: Option<&str>,
    entry: Entry,
    line: Line<'_>,
) -> Keyed {
    let Line { events, keys } = line;
    let id = ari::playback_id(channel_id, OWN_PLAYBACKS + n);
    let media: Vec<String> = prompt.iter().map(|p| sound(p)).collect();
    let mut playing = ari.play(channel_id, &id, &media, lang).await.is_ok();
    let mut digits = OrderCode::default();
    let mut deadline = tokio::time::Instant::now()
        + if playing {
            PROMPT_LIMIT + entry.first_digit
        } else {
            entry.first_digit
        };
    loop {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Keyed::Timeout,
            Ok(None) => return Keyed::Gone,
            Ok(Some(e)) => e,
        };
        let now = tokio::time::Instant::now();
        match event {
            e if ends_call(&e) => return Keyed::Gone,
            ari::Event::PlaybackFinished { playback } if playing && playback.id == id => {
                playing = false;
                deadline = now + entry.first_digit;
            }
            ari::Event::ChannelDtmfReceived {
                digit,
                duration_ms,
                ended_at_ms,
                ..
            } => {
                let Some(c) = pressed(keys, &digit, duration_ms, ended_at_ms) else {
                    continue;
                };
                if c == '#' && digits.is_empty() {
                    continue;
                }
                if playing {
                    playing = false;
                    let _ = ari.stop_playback(&id).await;
                }
                match c {
                    '#' => return Keyed::Code(digits),
                    '*' => digits.clear(),
                    c if c.is_ascii_digit() => {
                        digits.push(c);
                        if digits.len() >= entry.len.min(ORDER_CODE_LEN) {
                            return Keyed::Code(digits);
                        }
                    }
                    _ => {}
                }
                deadline = now
                    + if digits.is_empty() {
                        entry.first_digit
                    } else {
                        entry.inter_digit
                    };
            }
            _ => {}
        }
    }
}
