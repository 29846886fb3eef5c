//! What the two flows whose calls come to us (transfer, inbound) share
//! besides the desk (where they claim their order,
//! `Desk::claim_incoming`): the short prompts and key entry they run
//! before (or instead of) the IVR.

use super::line::{Line, Next};
use crate::ari::{self, AriCommands};
use crate::ivr::order_code::{OrderCode, ORDER_CODE_LEN};
use crate::ivr::speech::sound;
use std::time::Duration;

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

/// Plays the named prompts in one playback on `line`'s channel and waits
/// for its end. Digits keyed meanwhile are dropped (nothing is being
/// asked). A move to a new channel meanwhile (a masquerade) does not end
/// it: the playback's own end still comes.
pub(super) async fn play_prompts<A: AriCommands>(
    ari: &A,
    line: &mut Line<'_>,
    n: u64,
    prompts: &[&str],
    lang: Option<&str>,
) -> Heard {
    let id = ari::playback_id(line.id(), OWN_PLAYBACKS + n);
    let media: Vec<String> = prompts.iter().map(|p| sound(p)).collect();
    if let Err(e) = ari.play(line.id(), &id, &media, lang).await {
        tracing::debug!(error = %e, "play failed");
        return Heard::Played;
    }
    let deadline = tokio::time::Instant::now() + PROMPT_LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, line.next()).await {
            Err(_) => return Heard::Played,
            Ok(None) => return Heard::Gone,
            Ok(Some(Next::Event(e))) if ends_call(&e) => return Heard::Gone,
            Ok(Some(Next::Event(ari::Event::PlaybackFinished { playback })))
                if playback.id == id =>
            {
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
    /// Wait for the first digit once the prompt has ended.
    pub first_digit: Duration,
    /// Wait between two digits.
    pub inter_digit: Duration,
}

/// Plays `prompt` on `line`'s channel and collects digits (on whichever
/// channel the call is on: a masquerade meanwhile keeps what was keyed):
/// a digit during the prompt stops it
/// (barge-in) and counts; `*` clears; `#` or the
/// [`crate::ivr::order_code::ORDER_CODE_LEN`]-th digit ends the entry. A
/// `#` with nothing keyed yet (the terminator a caller adds after a code
/// that was already complete) is ignored: it neither stops the prompt nor
/// counts. The digits go straight into an [`OrderCode`]; nothing here
/// logs them. Repeated reports of one press never get here: the call's
/// [`super::line::Line`] drops them.
pub(super) async fn collect_code<A: AriCommands>(
    ari: &A,
    line: &mut Line<'_>,
    n: u64,
    prompt: &[&str],
    lang: Option<&str>,
    entry: Entry,
) -> Keyed {
    let id = ari::playback_id(line.id(), OWN_PLAYBACKS + n);
    let media: Vec<String> = prompt.iter().map(|p| sound(p)).collect();
    let mut playing = ari.play(line.id(), &id, &media, lang).await.is_ok();
    let mut digits = OrderCode::default();
    let mut deadline = tokio::time::Instant::now()
        + if playing {
            PROMPT_LIMIT + entry.first_digit
        } else {
            entry.first_digit
        };
    loop {
        let event = match tokio::time::timeout_at(deadline, line.next()).await {
            Err(_) => return Keyed::Timeout,
            Ok(None) => return Keyed::Gone,
            Ok(Some(Next::Event(e))) => e,
            Ok(Some(Next::Moved { .. })) => continue,
        };
        let now = tokio::time::Instant::now();
        match event {
            e if ends_call(&e) => return Keyed::Gone,
            ari::Event::PlaybackFinished { playback } if playing && playback.id == id => {
                playing = false;
                deadline = now + entry.first_digit;
            }
            ari::Event::ChannelDtmfReceived { digit, .. } => {
                let Some(c) = digit.expose() else { continue };
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
                        if digits.len() >= ORDER_CODE_LEN {
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
